"""The `rig` command: record sessions, calibrate, drive the trigger MCU, list devices."""

from __future__ import annotations

import click

from rig import __version__
from rig.lazycli import LazyGroup

# name -> "module:click command"; each module owns one command and is imported only when used.
LAZY = {
    "record": "rig.cli_record:record",
    "calibrate": "rig.cli_calibrate:calibrate",
    "trigger": "rig.cli_trigger:trigger",
    "devices": "rig.cli_devices:devices",
}


@click.group(cls=LazyGroup, lazy_commands=LAZY, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rig")
def main() -> None:
    """Drive the coaxial event + frame camera rig, real or simulated (--sim).

    \b
    Examples:
      rig record --duration 60                # simulated rig unless hardware is configured
      rig record --sim --duration 10 --out S  # a short simulated session in folder S
      rig calibrate --checkerboard --sim --out calib/
      rig trigger status --port /dev/ttyACM0
    """


if __name__ == "__main__":
    main()
