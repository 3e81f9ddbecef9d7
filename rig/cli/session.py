"""`rig session`: look after session folders (`rig session recover DIR`)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("session")
def session() -> None:
    """Look after recorded session folders.

    \b
    Examples:
      rig session recover recordings/session_0001            # after a crash or power cut
      rig session recover recordings/session_0001 --dry-run  # say what would be kept
    """


@session.command("recover")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and report; change nothing.")
@click.option("--force", is_flag=True,
              help="Recover even though the recording's process still seems to run (a process "
                   "that took over its id).")
def recover(folder: Path, dry_run: bool, force: bool) -> None:
    """Keep what a crashed or failed recording wrote, and make it buildable.

    A recording killed hard (crash, kill -9, power cut) still says 'recording' in its
    session.json; one whose camera, trigger or disk gave out says 'failed'. This checks
    frames.h5, events.raw and triggers.csv, keeps the longest readable part of each (cutting
    a half-written frame row, event word or CSV line), and marks the session 'recovered'
    with counts of what was kept; `rpea build` and `rig calibrate` then take it.

    \b
    Examples:
      rig session recover recordings/session_0001
      rig session recover recordings/session_0001 --dry-run
    """
    from rig.recover import recover_session

    report = recover_session(folder, dry_run=dry_run, force=force)
    click.echo(report.format())
    if report.status == "failed":
        raise click.ClickException(
            f"{folder}: nothing buildable to recover ({'; '.join(report.problems)})"
            + ("" if dry_run else "; the session is marked 'failed'"))
