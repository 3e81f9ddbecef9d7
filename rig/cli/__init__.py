"""The `rig` command: record sessions, calibrate, drive the trigger MCU, list devices."""

from __future__ import annotations

import click

from common.clierrors import CommandGroup
from rig import __version__

# name -> "module:click command"; each module owns one command and is imported only when used.
# `rig calibrate` is calibration's own command (calibration.cli): named here by string, so the
# rig package never imports calibration (docs/architecture.md).
LAZY = {
    "record": "rig.cli.record:record",
    "calibrate": "calibration.cli:calibrate",
    "trigger": "rig.cli.trigger:trigger",
    "devices": "rig.cli.devices:devices",
    "check": "rig.cli.check:check",
    "session": "rig.cli.session:session",
}


@click.group(cls=CommandGroup, lazy_commands=LAZY, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rig")
def main() -> None:
    """Drive the coaxial event + frame camera rig, real or simulated (--sim).

    \b
    Examples:
      rig record --duration 60                # simulated rig unless hardware is configured
      rig record --sim --duration 10 --out S  # a short simulated session in folder S
      rig calibrate --checkerboard --sim --out calib/
      rig trigger status --port /dev/ttyACM0
      rig session recover recordings/session_0001   # after a crash: keep what was written
    """

