"""`rig record`: record a synchronised event + frame session (simulated rig by default)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from common.clierrors import Number, positive, pulse_indices
from rig.geometry import MIRROR_CHOICES
from rig.recorder import RecordError, RecordOptions, calibration_duration_s, record_session

if TYPE_CHECKING:
    from common.workspace import Workspace
    from rig.preview import PreviewAlignment, PreviewFeed, PreviewServer

SCENARIOS = ["day", "night", "overexposed", "motion_blur", "checkerboard"]
#: What turns a calib.yaml into the preview's look-up tables: calibration's, named by string
#: and imported only when a preview uses a calibration, so rig never imports calibration (as
#: the rig group names `rig calibrate`; docs/architecture.md).
ALIGNMENT_LOADER = "calibration.preview:load_alignment"


@click.command("record")
@click.option("--duration", "duration_s", type=positive(float, "s"), default=None,
              help="Seconds to record (simulated seconds on the simulated rig) [default: 60; "
                   "with --calibration: the board's poses on the simulated rig, 60 on hardware].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Session folder to create [default: <workspace>/recordings/session_<time>, "
                   "calib_<time> with --calibration].")
@click.option("--calibration", is_flag=True,
              help="Record a blinking checkerboard for `rig calibrate` (the simulated board, or "
                   "a monitor showing `rig calibrate --show-pattern` in front of the rig).")
@click.option("--views", "n_views", type=positive(int), default=40, show_default=True,
              help="(--calibration on the simulated rig) board poses; sets the duration.")
@click.option("--rate", "rate_hz", type=positive(float, "Hz"), default=None,
              help="Trigger rate in Hz, one frame per pulse [default: rig.yaml's, else 20].")
@click.option("--exposure-us", type=positive(float, "us"), default=None,
              help="Frame exposure in microseconds [default: the scenario's, 5000 on hardware].")
@click.option("--gain-db", type=Number(float, min=0, unit="dB"), default=None,
              help="Frame gain [default: the scenario's on the simulated rig (night 12, "
                   "overexposed 9), rig.yaml's, else 0].")
@click.option("--pixel-format", type=click.Choice(["BayerRG8", "RGB8"]), default="BayerRG8",
              show_default=True)
@click.option("--sim/--hardware", "sim", default=None,
              help="Simulated rig (default when no hardware is configured) or real devices.")
@click.option("--scenario", type=click.Choice(SCENARIOS), default="day", show_default=True,
              help="Simulated scene and lighting.")
@click.option("--seed", type=int, default=0, show_default=True, help="Simulator seed.")
@click.option("--full-res", is_flag=True, help="Simulate 1280x720 events and 2048x1536 frames.")
@click.option("--mirror", type=click.Choice(MIRROR_CHOICES), default=None,
              help="(sim) The camera on the beam splitter's reflected arm, whose sensor sees a "
                   "mirror image [default: event, as in the README's rig].")
@click.option("--optics", type=click.Choice(["ideal", "real"]), default=None,
              help="(sim) ideal: sharp, even, all the light; real: 50 % per beam-splitter arm, "
                   "cos^4 vignetting, 3.5 um blur [default: ideal].")
@click.option("--realtime", is_flag=True,
              help="Pace the simulator to the wall clock (a slow writer then drops frames).")
@click.option("--trigger", "trigger_port", default=None,
              help="Trigger MCU port or URL (/dev/ttyACM0, socket://127.0.0.1:5678).")
@click.option("--event-backend", default=None, help="Event camera backend (e.g. metavision).")
@click.option("--frame-backend", default=None, help="Frame camera backend (pyspin, aravis).")
@click.option("--rig-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="rig.yaml with backends, serials, wiring and settings.")
@click.option("--drop-frames", default=None, callback=pulse_indices,
              help="(sim) comma-separated pulse indices to drop.")
@click.option("--incomplete-frames", default=None, callback=pulse_indices,
              help="(sim) comma-separated pulse indices delivered incomplete.")
@click.option("--overwrite", is_flag=True, help="Replace an existing session in --out.")
@click.option("--preview", is_flag=True,
              help="Serve a live page while recording: the frame with the events drawn over it, "
                   "event rate, histogram, counters (docs/hardware.md, \"Live preview\").")
@click.option("--preview-port", type=Number(int, min=0, max=65535), default=None,
              help="(--preview) TCP port of the page [default: 8765; 0: any free port].")
@click.option("--preview-host", default=None,
              help="(--preview) address the page listens on [default: 127.0.0.1, this machine "
                   "only; another address shows the rig to everyone who can reach it].")
@click.option("--calib", "calib_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="(--preview) calib.yaml (or its folder) that puts the events on the frame "
                   "[default: the workspace's calib/calib.yaml when there; none: side by side].")
@click.option("--quiet", is_flag=True, help="No live status line.")
def record(duration_s: float | None, out_dir: Path | None, calibration: bool, n_views: int,
           rate_hz: float | None, exposure_us: float | None,
           gain_db: float | None, pixel_format: str, sim: bool | None, scenario: str, seed: int,
           full_res: bool, mirror: str | None, optics: str | None, realtime: bool,
           trigger_port: str | None,
           event_backend: str | None, frame_backend: str | None, rig_config: Path | None,
           drop_frames: list[int] | None,
           incomplete_frames: list[int] | None, overwrite: bool, preview: bool,
           preview_port: int | None, preview_host: str | None, calib_path: Path | None,
           quiet: bool) -> None:
    """Record a synchronised event + frame session into a session folder.

    Sessions go to the workspace's recordings/ folder (docs/workspace.md), where `rig
    calibrate` and `rpea build` find them.

    \b
    Examples:
      rig record --duration 60                      # simulated rig, 60 s of day driving
      rig record --calibration                      # a blinking-board session for rig calibrate
      rig record --sim --duration 10 --out S --scenario night --seed 3
      rig record --hardware --rig-config rig.yaml --duration 120 --out drive01
      rig record --sim --trigger socket://127.0.0.1:5678   # emulated firmware as the trigger
      rig record --preview                          # and watch http://127.0.0.1:8765/
      rig record --hardware --preview --preview-port 8800 --calib calib/calib.yaml

    Ctrl-C stops the recording early; the session keeps everything received and is marked
    'interrupted'. A camera, trigger or disk that gives out ends it as 'failed' (exit 1), and
    a crash leaves it 'recording': `rig session recover DIR` keeps what was written.
    """
    from common.workspace import WorkspaceError, load_workspace, new_folder_name
    from rig.rigconfig import RIG_CONFIG_FILE, RigConfigError, choose_rig, load_rig_config

    if not preview:
        for name, value in (("--preview-port", preview_port), ("--preview-host", preview_host),
                            ("--calib", calib_path)):
            if value is not None:
                raise click.UsageError(f"{name}: only with --preview (the live page); add --preview "
                                       f"or leave {name} out")
    if sim and rig_config is not None:
        raise click.UsageError(f"--rig-config {rig_config}: the simulated rig (--sim) reads no rig "
                               "config; leave --rig-config out, or record on the hardware with "
                               "--hardware")
    try:
        ws = load_workspace()
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    backends_named = bool(event_backend or frame_backend)
    choice = choose_rig(sim, rig_config, backends_named=backends_named, workspace_root=ws.root)
    sim, rig_config = choice.sim, choice.rig_config
    if calibration:
        if scenario != "day":
            raise click.UsageError("--calibration records the blinking board: leave --scenario out")
        scenario = "checkerboard"
    faults = {}
    if drop_frames:
        faults["drop_frames"] = drop_frames
    if incomplete_frames:
        faults["incomplete_frames"] = incomplete_frames
    if faults and not sim:
        raise click.UsageError("--drop-frames/--incomplete-frames only apply to the simulated rig")
    if optics is not None and not sim:
        raise click.UsageError("--optics only applies to the simulated rig")
    if mirror is not None and not sim:
        raise click.UsageError("--mirror only applies to the simulated rig (a real rig states its "
                               "mirrored camera in rig.yaml, optics.reflected_arm)")
    if not sim and rig_config is None and not backends_named:
        raise click.ClickException(
            f"{ws.show(ws.root / RIG_CONFIG_FILE)}: no rig config for --hardware; copy "
            f"configs/rig.example.yaml there and name your cameras, or give --rig-config FILE "
            "(or --event-backend, --frame-backend and --trigger)")
    if not sim and rig_config is not None:
        try:  # checked before anything is created: a broken rig.yaml leaves no session behind
            load_rig_config(rig_config)
        except RigConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if choice.note:
        click.echo(choice.note, err=True)
    if out_dir is None:
        out_dir = new_folder_name(ws.recordings, "calib" if calibration else "session")
        click.echo(f"session: {ws.show(out_dir)} (recordings folder: {ws.origin('recordings')})",
                   err=True)
    if duration_s is None:
        duration_s = calibration_duration_s(n_views, sim) if calibration else 60.0
    opts = RecordOptions(
        out_dir=out_dir, duration_s=duration_s, rate_hz=rate_hz,
        purpose="calibration" if calibration else "data",
        exposure_us=exposure_us, gain_db=gain_db, pixel_format=pixel_format, sim=sim,
        scenario=scenario, seed=seed, full_res=full_res, mirror=mirror, optics=optics,
        realtime=realtime,
        sim_faults=faults,
        trigger_port=trigger_port, event_backend=event_backend, frame_backend=frame_backend,
        rig_config=rig_config, show_status=not quiet, overwrite=overwrite)
    feed, server = _open_preview(ws, calib_path, preview_host, preview_port) if preview else (None, None)
    try:
        summary = record_session(opts, preview=feed)
    except RecordError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # a backend's own error class: one clear line
        from rig.registry import BackendUnavailable

        if isinstance(exc, BackendUnavailable):
            raise click.ClickException(str(exc)) from None
        raise
    finally:
        if server is not None:
            server.close()
    click.echo(summary.format())
    if summary.status == "failed":  # a device or the disk gave out: what arrived is kept
        raise click.ClickException(
            f"{summary.out_dir}: recording failed: {summary.detail}; what was received is kept "
            f"(`rig session recover {summary.out_dir}` checks it and makes it buildable)")
    if summary.status == "interrupted":
        raise SystemExit(130)


def _open_preview(ws: Workspace, calib_path: Path | None, host: str | None, port: int | None
                  ) -> tuple[PreviewFeed, PreviewServer]:
    """The live page, listening before the recording starts (a busy port is an error, with
    nothing recorded), with the events on the calibration's aligned grid when there is one."""
    from rig.preview import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        OverlayRenderer,
        PreviewError,
        PreviewFeed,
        PreviewServer,
    )

    alignment = None
    calib_file = calib_path
    if calib_file is None and ws.calib_file.is_file():
        calib_file = ws.calib_file
    if calib_file is not None:
        try:
            alignment = load_preview_alignment(calib_file)
        except ValueError as exc:  # calibration.io.CalibrationFileError: `file: problem; what to do`
            if calib_path is not None:
                raise click.ClickException(str(exc)) from None
            click.echo(f"note: preview: side by side, the workspace's calibration is unreadable ({exc})",
                       err=True)
    feed = PreviewFeed()
    try:
        server = PreviewServer(feed, OverlayRenderer(alignment), host=host or DEFAULT_HOST,
                               port=DEFAULT_PORT if port is None else port, title="rig record")
    except PreviewError as exc:
        raise click.ClickException(str(exc)) from None
    server.start()
    how = f"events on the aligned grid of {ws.show(calib_file)}" if alignment is not None and calib_file \
        else "frame and events side by side: no calibration"
    click.echo(f"preview: {server.url} ({how})", err=True)
    if server.host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"note: the preview listens on {server.host}: everyone who can reach this machine "
                   "can watch the rig", err=True)
    return feed, server


def load_preview_alignment(calib_file: Path) -> PreviewAlignment:
    """calib.yaml -> the preview's look-up tables, by calibration's own loader (ALIGNMENT_LOADER);
    a broken file raises ValueError (`file: problem; what to do`)."""
    module_name, _, attr = ALIGNMENT_LOADER.partition(":")
    loader = getattr(importlib.import_module(module_name), attr)
    alignment: PreviewAlignment = loader(calib_file)
    return alignment
