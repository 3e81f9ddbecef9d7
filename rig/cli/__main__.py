"""`python -m rig.cli` runs the `rig` command."""

from rig.cli import main

main()
