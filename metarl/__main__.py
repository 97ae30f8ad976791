"""`python -m metarl ...` (also what `torchrun -m metarl` runs)."""

from metarl.cli import main

main()
