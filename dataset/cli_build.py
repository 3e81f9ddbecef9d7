"""`rpea build`: recorded sessions -> RPEA HDF5 (see dataset/builder.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from common.clierrors import Number, positive

if TYPE_CHECKING:
    from common.workspace import Workspace


@click.command("build")
@click.option("--split", "split", required=True, type=click.Choice(["train", "val", "test", "all"]),
              help="Which split to build (sessions are assigned to splits whole).")
@click.option("--sessions", "sessions", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Session folders: --sessions rec/* (more folders may follow) or repeated "
                   "[default: every complete data session under the workspace's recordings/].")
@click.argument("more_sessions", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--calib", "calib", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Calibration file (calib.yaml from `rig calibrate`) "
                                 "[default: the workspace's calib/calib.yaml].")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder; writes <out>/<split>/<sequence>.h5 and index.json "
                   "[default: the workspace's data/].")
@click.option("--window-ms", "window_ms", type=positive(float, "ms"), default=None,
              help="Event window per pair in ms, centred on the exposure mid-time [default: 50].")
@click.option("--window", "window", type=click.Choice(["ms", "exposure"]), default=None,
              help="'exposure': the events during the exposure; 'ms': see --window-ms.")
@click.option("--labels", "labels", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Annotation PNGs: <labels>/<sequence>/frame_<id>*.png.")
@click.option("--label-ids", type=click.Choice(["label", "train"]), default="label", show_default=True,
              help="What the annotation PNGs hold: Cityscapes label ids or train ids.")
@click.option("--label-mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="YAML {source id: train id} for other annotation tools.")
@click.option("--splits", "splits", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="YAML {split: [session folder names]}; default: seeded, balanced.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split assignment.")
@click.option("--workers", type=positive(int), default=1, show_default=True,
              help="Sessions built in parallel.")
@click.option("--resume", is_flag=True, help="Skip sequences already built with the same inputs.")
@click.option("--alpha", type=Number(float, min=0, max=1), default=0.1, show_default=True,
              help="HSV V below this is under-exposed (condition tag).")
@click.option("--beta", type=Number(float, min=0, max=1), default=0.9, show_default=True,
              help="HSV V above this is over-exposed (condition tag).")
@click.option("--serial", is_flag=True,
              help="One process per session (default: two image processes per session while "
                   "the events stream).")
@click.option("--trust-first-frame", is_flag=True,
              help="Assume the camera's first frame id answers pulse 0 (rescues recordings that "
                   "lost frames at the end; wrong if the camera missed the first pulse).")
@click.option("--trigger-delay-us", type=Number(int, min=0, max=100_000, unit="us"), default=0,
              show_default=True,
              help="The frame camera's trigger-to-exposure-start delay, added to each trigger edge "
                   "(measure it with `rig check --exposure-offset`, docs/hardware.md; the "
                   "simulated BFS has 10). Not used when ExposureActive drives the trigger input.")
@click.option("--no-masks", is_flag=True, help="Do not store instance masks (simulated sessions).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(split: str, sessions: tuple[Path, ...], more_sessions: tuple[Path, ...], calib: Path | None,
          out: Path | None, window_ms: float | None, window: str | None, labels: Path | None,
          label_ids: str, label_mapping: Path | None,
          splits: Path | None, seed: int, workers: int, resume: bool, alpha: float, beta: float,
          serial: bool, trust_first_frame: bool, trigger_delay_us: int, no_masks: bool,
          quiet: bool) -> None:
    """Build the RPEA dataset (pixel-aligned image / events / label pairs) from sessions.

    Frames are paired with trigger edges through the MCU's pulse reports; anything that cannot
    be paired unambiguously is dropped and reported (<out>/<split>/build_report.json).

    Typed bare, it builds every complete session under the workspace's recordings/ (not the
    calibration sessions) with its calib/calib.yaml into its data/ (docs/workspace.md).

    \b
    Examples:
      rpea build --split train                     # the workspace's sessions and calibration
      rpea build --split val
      rpea build --split train --sessions rec/day_01 --sessions rec/night_01 \\
          --calib calib/calib.yaml --out data/
      rpea build --split all --sessions rec/* --calib calib.yaml --out data/ --workers 2
      rpea build --split val --sessions rec/* --calib calib.yaml --out data/ --window exposure
    """
    from common.atomic import removed_on_failure
    from common.workspace import WorkspaceError, load_workspace
    from dataset.builder import BuildError, BuildOptions, index_summary
    from dataset.builder import build as run_build
    from dataset.labels import LabelError
    from dataset.splits import SplitError
    from rig.sync import SyncConfig

    try:
        ws = load_workspace()
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    session_list = [*sessions, *more_sessions]
    if not session_list:
        session_list = _workspace_sessions(ws)
    if calib is None:
        try:
            calib = ws.default_calibration()
        except WorkspaceError as exc:
            raise click.ClickException(str(exc)) from None
    if out is None:
        out = ws.data
        click.echo(f"dataset: {ws.show(out)} ({ws.origin('data')})", err=True)
    if window is None:
        window = "ms"
    if window == "exposure" and window_ms is not None:
        raise click.UsageError("--window exposure and --window-ms exclude each other")
    opts = BuildOptions(calib_path=calib, out_dir=out, window=window,
                        window_ms=window_ms if window_ms is not None else 50.0, labels_dir=labels,
                        label_ids=label_ids, label_mapping=label_mapping, alpha=alpha, beta=beta,
                        splits_file=splits, seed=seed, workers=workers, resume=resume,
                        write_masks=not no_masks, image_workers=0 if serial else 2,
                        trigger_delay_us=trigger_delay_us,
                        sync=SyncConfig(first_exposure_on_first_pulse=trust_first_frame),
                        progress=not quiet)
    if alpha >= beta:
        raise click.BadParameter(f"--alpha {alpha:g} must be below --beta {beta:g}",
                                 param_hint="--alpha")
    try:  # an output folder this build created goes again when it fails with no sequence built
        with removed_on_failure(out, keep=lambda folder: any(folder.rglob("*.h5"))):
            result = run_build(split, session_list, opts, log=lambda s: click.echo(s, err=True))
            if result["failed"] and not result["sequences"]:
                name, why = result["failed"][0]
                raise BuildError(f"no sequence built, {len(result['failed'])} session(s) failed; "
                                 f"the first, {name}: {why}")
    except (BuildError, LabelError, SplitError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    for line in index_summary(out):
        click.echo(line)
    if result["failed"]:
        click.echo(f"{len(result['failed'])} session(s) failed: "
                   + ", ".join(n for n, _ in result["failed"]), err=True)
        sys.exit(1)


def _workspace_sessions(ws: Workspace) -> list[Path]:
    """Every complete (or interrupted) data session under the workspace's recordings/, saying
    what it found and what it left out."""
    from collections import Counter

    from rig.session import find_sessions

    found = find_sessions(ws.recordings)
    data = [e.path for e in found if e.usable_as("data")]
    skipped = Counter("calibration" if e.manifest is not None and e.manifest.purpose == "calibration"
                      else "unreadable" if e.manifest is None else e.manifest.status
                      for e in found if e.path not in data)
    left_out = f" (left out: {', '.join(f'{n} {k}' for k, n in sorted(skipped.items()))})" \
        if skipped else ""
    click.echo(f"sessions: {len(data)} complete under {ws.show(ws.recordings)} "
               f"({ws.origin('recordings')}){left_out}", err=True)
    from rig.session import RECOVERABLE_STATUSES

    crashed = [e.path for e in found if e.manifest is not None and e.path not in data
               and e.manifest.purpose == "data" and e.manifest.status in RECOVERABLE_STATUSES]
    if crashed:
        click.echo(f"note: {len(crashed)} session(s) crashed or failed while recording "
                   f"({', '.join(p.name for p in crashed)}): `rig session recover DIR` keeps what "
                   "they wrote and makes them buildable", err=True)
    if not data:
        raise click.ClickException(
            f"no session to build under {ws.show(ws.recordings)}: record one with "
            "rig record --duration 60, or give --sessions DIR...")
    return data
