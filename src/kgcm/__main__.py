"""``python -m kgcm``: the command line, as the ``kgcm`` script (used by DDP launchers)."""

from kgcm.cli import main

main()
