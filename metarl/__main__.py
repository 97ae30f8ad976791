"""`python -m metarl ...` (also what `torchrun -m metarl` runs). Ctrl-C while the package
and the command line import is one line and exit code 130 (metarl/startup.py)."""

from metarl.cli import main

main()
