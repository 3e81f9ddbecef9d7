"""The `rpea` command: build, check and inspect RPEA datasets; event file tools."""

from __future__ import annotations

import click

from common.clierrors import CommandGroup
from rig import __version__

# name -> "module:click command"; each module owns its commands and is imported only when used.
LAZY = {
    "events": "dataset.cli_events:events",
    "build": "dataset.cli_build:build",
    "check": "dataset.cli_tools:check",
    "stats": "dataset.cli_tools:stats",
    "show": "dataset.cli_tools:show",
    "export-annotation": "dataset.cli_tools:export_annotation",
    "import-labels": "dataset.cli_tools:import_labels",
    "export": "dataset.cli_export:export",
}


@click.group(cls=CommandGroup, lazy_commands=LAZY, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rpea")
def main() -> None:
    """Build pixel-aligned RGB + event datasets (RPEA HDF5) from recorded sessions.

    \b
    Examples:
      rpea build --split train --sessions rec/* --calib calib/calib.yaml --out data/
      rpea check data/
      rpea events info session/events.raw
    """


if __name__ == "__main__":
    main()
