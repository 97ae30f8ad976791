"""`python -m metarl ...` (also what `torchrun -m metarl` runs)."""

import sys

try:
    from metarl.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line's modules import: one line, no trace
    sys.stderr.write("interrupted\n")
    sys.exit(130)

main()
