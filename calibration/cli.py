"""`rig calibrate`: checkerboard calibration of both cameras and the event-to-frame alignment;
`rig calibrate export`: calib.yaml for Kalibr or ROS.

`calibrate` is a click group that calibrates when no subcommand follows
(`invoke_without_command`), so every invocation from before the exports works unchanged."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from common.clierrors import Number, positive

if TYPE_CHECKING:
    from calibration.board import Board
    from calibration.preview import CalibrationPreview
    from common.workspace import Workspace


@click.group("calibrate", invoke_without_command=True, subcommand_metavar="[export ...]")
@click.option("--checkerboard", is_flag=True, help="Calibrate from checkerboard views.")
@click.option("--pattern", default="9x6", show_default=True,
              help="Inner corners per row x per column.")
@click.option("--square-mm", type=positive(float, "mm"), default=25.0, show_default=True,
              help="Side of one square in millimetres.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for calib.yaml, report.json, report.png [default: the workspace's "
                   "calib/].")
@click.option("--sim/--hardware", "sim", default=None,
              help="Record a calibration session now: on the simulated rig, or on real devices "
                   "(a monitor showing --show-pattern in view).")
@click.option("--session", "session_dir", type=click.Path(exists=True, file_okay=False,
                                                         path_type=Path),
              default=None, help="Calibrate from a recorded checkerboard session.")
@click.option("--frame-images", default=None,
              help="Glob (or folder) of camera-1 images, paired by sorted order.")
@click.option("--event-images", default=None,
              help="Glob (or folder) of camera-2 images (event accumulations or a 2nd camera).")
@click.option("--events", "events_glob", default=None, metavar="GLOB",
              help="Event-only calibration: glob (or folder) of event recordings of a blinking "
                   "board, one pose each (any format rig events reads); writes K_event, "
                   "dist_event, rms_event.")
@click.option("--model", type=click.Choice(["homography", "stereo", "auto"]),
              default="homography", show_default=True,
              help="homography: coaxial beam-splitter rig; stereo: side-by-side rig; auto: pick "
                   "by the estimated baseline.")
@click.option("--grid", default="event", show_default=True,
              help="Sampling of the aligned grid: event (the event camera's focal length, "
                   "coarser than the frame camera's, as the paper's 1034x617 grid), frame (the "
                   "frame camera's), or a scale of the frame camera's focal length (e.g. 0.5).")
@click.option("--min-depth-m", type=positive(float, "m"), default=1.0, show_default=True,
              help="Nearest depth the alignment should serve.")
@click.option("--max-depth-m", type=positive(float, "m", allow_inf=True), default=10.0, show_default=True,
              help="Farthest depth the alignment should serve (inf allowed).")
@click.option("--plane-depth-m", type=positive(float, "m", allow_inf=True), default=None,
              help="Z0 of the homography [default: 1/Z0 = mean of 1/min and 1/max depth].")
@click.option("--blink-hz", type=positive(float, "Hz"), default=None,
              help="Blink frequency of the board [default: from the session, else estimated "
                   "from the events; 5 for --show-pattern].")
@click.option("--views", "n_views", type=positive(int), default=40, show_default=True,
              help="(--sim) board poses to record.")
@click.option("--duration", "duration_s", type=positive(float, "s"), default=None,
              help="(--hardware) seconds to record [default 60].")
@click.option("--seed", type=int, default=0, show_default=True, help="(--sim) simulator seed.")
@click.option("--rate", "rate_hz", type=positive(float, "Hz"), default=20.0, show_default=True,
              help="(--sim/--hardware) trigger rate in Hz.")
@click.option("--full-res", is_flag=True, help="(--sim) full sensor resolutions.")
@click.option("--mirror", type=click.Choice(["none", "event", "frame"]), default=None,
              help="The camera on the beam splitter's reflected arm (it sees a mirror image). "
                   "With --sim: the simulated rig's [default: event, as in the README's rig]. "
                   "Otherwise: which camera to un-mirror when the views turn out to be a "
                   "mirrored pair [default: the session's rig.yaml optics.reflected_arm, else "
                   "event]; mirroring itself is detected.")
@click.option("--optics", type=click.Choice(["ideal", "real"]), default=None,
              help="(--sim) ideal lenses, or real ones: 50 % light per beam-splitter arm, cos^4 "
                   "vignetting, 3.5 um blur [default: ideal].")
@click.option("--rig-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="(--hardware) rig.yaml with backends and settings.")
@click.option("--keep-session/--no-keep-session", default=True, show_default=True,
              help="(--sim/--hardware) keep the recorded session in OUT/session.")
@click.option("--no-joint-refine", is_flag=True,
              help="Keep the fixed-intrinsics stereo result (skip the joint refinement).")
@click.option("--show-pattern", is_flag=True,
              help="Show a full-screen blinking checkerboard (OpenCV window) and exit.")
@click.option("--screen", default="1920x1080", show_default=True,
              help="(--show-pattern) screen size WxH in pixels.")
@click.option("--preview", is_flag=True,
              help="Serve a live page: the recording with the boards found and how well the poses "
                   "cover the image, then each view as detected (docs/hardware.md, \"Live preview\").")
@click.option("--preview-port", type=Number(int, min=0, max=65535), default=None,
              help="(--preview) TCP port of the page [default: 8765; 0: any free port].")
@click.option("--preview-host", default=None,
              help="(--preview) address the page listens on [default: 127.0.0.1, this machine "
                   "only].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def calibrate(ctx: click.Context, checkerboard: bool, pattern: str, square_mm: float, out_dir: Path | None,
              sim: bool | None, session_dir: Path | None, frame_images: str | None,
              event_images: str | None, events_glob: str | None, model: str, grid: str,
              min_depth_m: float,
              max_depth_m: float,
              plane_depth_m: float | None, blink_hz: float | None, n_views: int,
              duration_s: float | None, seed: int, rate_hz: float, full_res: bool,
              mirror: str | None, optics: str | None, rig_config: Path | None,
              keep_session: bool, no_joint_refine: bool,
              show_pattern: bool, screen: str, preview: bool, preview_port: int | None,
              preview_host: str | None, quiet: bool) -> None:
    """Calibrate both cameras and pixel-align events to frames.

    Writes OUT/calib.yaml (OpenCV FileStorage), OUT/report.json and OUT/report.png, and prints
    the reprojection RMS and the alignment errors (held-out views; ground truth on --sim).

    With no source of views given, it calibrates from the newest calibration session in the
    workspace's recordings/ (`rig record --calibration`), or records one there: on the hardware
    when it is configured (rig.yaml), else on the simulated rig.

    With --events GLOB it calibrates the event camera alone from recordings of a blinking board
    (one pose per recording): OUT/calib.yaml then holds K_event, dist_event, rms_event only
    [default OUT: the workspace's calib/event_only/].

    \b
    Examples:
      rig calibrate --checkerboard                               # the workspace's way
      rig calibrate --checkerboard --sim --out calib/            # simulated rig, 40 poses
      rig calibrate --checkerboard --sim --mirror frame --optics real   # frame camera on the
                                                       # reflected arm, real lenses and splitter
      rig calibrate --checkerboard --session recordings/cal01 --out calib/
      rig calibrate --checkerboard --frame-images 'left/*.png' \\
                    --event-images 'right/*.png' --model stereo --out calib_lr/
      rig calibrate --checkerboard --events 'rec/calibration_*.aedat' \\
                    --pattern 8x4 --square-mm 55 --out calib_ev/   # event camera alone
      rig calibrate --show-pattern --blink-hz 5 --screen 2560x1440   # on the rig's monitor
      rig calibrate --checkerboard --hardware --preview    # watch http://127.0.0.1:8765/
      rig calibrate export --format kalibr                       # calib/camchain.yaml

    `rig calibrate export` writes calib.yaml in another tool's format (see its --help).
    """
    if ctx.invoked_subcommand is not None:
        typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        given = sorted(p.opts[0] for p in ctx.command.params
                       if p.name and ctx.get_parameter_source(p.name) in typed)
        if given:
            raise click.UsageError(f"{', '.join(given)}: options of the calibration itself; "
                                   f"`rig calibrate {ctx.invoked_subcommand}` takes its own")
        return
    from calibration.run import board_from_cli

    try:
        board = board_from_cli(pattern, square_mm)
    except ValueError as e:
        raise click.BadParameter(f"{pattern!r}: {e}", param_hint="--pattern") from None
    if show_pattern:
        from calibration.pattern import show_pattern as show

        w, h = _screen_size(screen)
        try:
            show(board, blink_hz or 5.0, w, h)
        except (ValueError, RuntimeError) as e:
            raise click.ClickException(str(e)) from None
        return
    if not checkerboard:
        raise click.UsageError("say how to calibrate: --checkerboard (or --show-pattern)")
    if not preview:
        for name, value in (("--preview-port", preview_port), ("--preview-host", preview_host)):
            if value is not None:
                raise click.UsageError(f"{name}: only with --preview (the live page); add --preview "
                                       f"or leave {name} out")
    sources = [sim is not None, session_dir is not None, bool(frame_images or event_images)]
    if sum(sources) + (events_glob is not None) > 1:
        raise click.UsageError("give one source of views: --sim/--hardware, --session DIR, "
                               "--frame-images GLOB --event-images GLOB, or --events GLOB "
                               "(or none: the workspace's)")
    if sim and rig_config is not None:
        raise click.UsageError(f"--rig-config {rig_config}: the simulated rig (--sim) reads no rig "
                               "config; leave --rig-config out, or record with --hardware")
    if events_glob is not None:
        if preview:
            raise click.UsageError("--preview: not with --events (the page follows a two-camera "
                                   "calibration: a recording and its views)")
        _calibrate_events(events_glob, board, out_dir, blink_hz, quiet)
        return
    if bool(frame_images) != bool(event_images):
        raise click.UsageError("--frame-images and --event-images go together")
    from common.workspace import WorkspaceError, load_workspace, show_path

    try:
        ws = load_workspace()
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    if out_dir is None:
        out_dir = ws.calib
        click.echo(f"calibration: {ws.show(out_dir)} ({ws.origin('calib')})", err=True)
    record_into: Path | None = None
    if not any(sources):
        session_dir, record_into, sim, rig_config = _workspace_views(ws, rig_config)

    from calibration.pipeline import CalibOptions
    from calibration.run import run_calibration, summary_lines
    from calibration.sources import folder_views, record_calibration, session_views

    if grid not in ("event", "frame"):
        try:
            float(grid)
        except ValueError:
            raise click.BadParameter(f"{grid!r}: use event, frame or a number such as 0.5",
                                     param_hint="--grid") from None
    opts = CalibOptions(board, model=model, min_depth_m=min_depth_m, max_depth_m=max_depth_m,
                        plane_depth_m=plane_depth_m, refine=not no_joint_refine, grid=grid)
    from common.atomic import removed_on_failure

    live = _open_preview(board, preview_host, preview_port) if preview else None
    # a failed calibration leaves no half-written OUT (a recorded session in it is kept)
    try:
        with removed_on_failure(out_dir, keep=lambda folder: any(folder.rglob("session.json"))):
            if sim is not None:
                tmp = None
                if record_into is not None:
                    rec_dir = record_into
                elif keep_session:
                    rec_dir = out_dir / "session"
                else:
                    tmp = tempfile.TemporaryDirectory(prefix="rig-calib-")
                    rec_dir = Path(tmp.name) / "session"
                click.echo(f"recording a checkerboard session ({'simulated' if sim else 'hardware'}) "
                           f"into {show_path(rec_dir)} ...", err=True)
                record_calibration(rec_dir, sim=sim, n_views=n_views, seed=seed, rate_hz=rate_hz,
                                   duration_s=duration_s, full_res=full_res, rig_config=rig_config,
                                   show_status=not quiet, mirror=mirror if sim else None,
                                   optics=optics if sim else None,
                                   preview=live.feed if live is not None else None)
                session_dir = rec_dir
            if session_dir is not None:
                source = session_views(session_dir, blink_hz=blink_hz, progress=not quiet)
            else:
                assert frame_images and event_images  # checked above: they go together
                source = folder_views(frame_images, event_images)
            if mirror is not None and not sim:
                source.reflected_arm, source.reflected_arm_source = mirror, f"--mirror {mirror}"
            for note in source.notes:
                click.echo(f"note: {note}", err=True)
            if live is not None:
                live.start_detection(source.frame_size, source.event_size, source.total,
                                     source.reflected_arm)
            res = run_calibration(source, opts, out_dir, progress=not quiet,
                                  on_view=live.on_view if live is not None else None)
    except (ValueError, RuntimeError, OSError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        if live is not None:
            live.close()
    for line in summary_lines(res):
        click.echo(line)


def _open_preview(board: Board, host: str | None, port: int | None) -> CalibrationPreview:
    """The live page, listening before anything is recorded or written (a busy port is an
    error that leaves nothing behind)."""
    from calibration.preview import CalibrationPreview
    from rig.preview import DEFAULT_HOST, DEFAULT_PORT, PreviewError

    try:
        live = CalibrationPreview(board, host=host or DEFAULT_HOST,
                                  port=DEFAULT_PORT if port is None else port)
    except PreviewError as exc:
        raise click.ClickException(str(exc)) from None
    live.start()
    click.echo(f"preview: {live.url}", err=True)
    if live.server.host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"note: the preview listens on {live.server.host}: everyone who can reach this "
                   "machine can watch the rig", err=True)
    return live


def _screen_size(screen: str) -> tuple[int, int]:
    """--screen WxH: two whole numbers of pixels."""
    try:
        w, h = (int(v) for v in screen.lower().split("x"))
    except ValueError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise click.BadParameter(f"{screen!r}: expected the screen size WxH in pixels, e.g. "
                                 "1920x1080", param_hint="--screen")
    return w, h


def _calibrate_events(events_glob: str, board: Board, out_dir: Path | None,
                      blink_hz: float | None, quiet: bool) -> None:
    """`--events GLOB`: the event camera's intrinsics alone, from blinking-board recordings."""
    from calibration.event_only import calibrate_event_only, expand_event_glob, summary_lines
    from rig.evt.errors import EventFileError

    if out_dir is None:
        from common.workspace import WorkspaceError, load_workspace

        try:
            ws = load_workspace()
        except WorkspaceError as exc:
            raise click.ClickException(str(exc)) from None
        out_dir = ws.calib / "event_only"  # not calib/calib.yaml: the builder needs a full one
        click.echo(f"calibration: {ws.show(out_dir)} (event only)", err=True)
    from common.atomic import removed_on_failure

    try:
        paths = expand_event_glob(events_glob)
        if not quiet:
            click.echo(f"event-only calibration from {len(paths)} recording(s) ...", err=True)
        with removed_on_failure(out_dir):
            res = calibrate_event_only(paths, board, out_dir, blink_hz=blink_hz)
    except EventFileError as e:
        raise click.ClickException(f"not an event file: {e}") from None
    except (ValueError, RuntimeError, OSError) as e:
        raise click.ClickException(str(e)) from None
    for line in summary_lines(res, out_dir):
        click.echo(line)


def _workspace_views(ws: Workspace, rig_config: Path | None
                     ) -> tuple[Path | None, Path | None, bool | None, Path | None]:
    """(session to calibrate from, or folder to record a new one into, and on which rig): the
    newest calibration session under the workspace's recordings/, else a new recording there
    on the rig `rig record` would choose (saying so the same way)."""
    from common.workspace import new_folder_name
    from rig.rigconfig import choose_rig
    from rig.session import find_sessions

    found = [e for e in find_sessions(ws.recordings) if e.usable_as("calibration")]
    if found:
        click.echo(f"views: the newest calibration session under {ws.show(ws.recordings)}: "
                   f"{ws.show(found[-1].path)} (record a new one with: rig record --calibration)",
                   err=True)
        return found[-1].path, None, None, None
    choice = choose_rig(None, rig_config, backends_named=False, workspace_root=ws.root)
    click.echo(choice.note, err=True)
    return None, new_folder_name(ws.recordings, "calib"), choice.sim, choice.rig_config


@calibrate.command("export")
@click.option("--format", "fmt", type=click.Choice(["kalibr", "ros"]), required=True,
              help="kalibr: one camchain YAML (cam0 frame, cam1 event, cam1.T_cn_cnm1); ros: one "
                   "camera_info YAML per camera (camera_calibration_parsers).")
@click.argument("calib_yaml", required=False,
                type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(), default=None,
              help="kalibr: the file (a folder gets camchain.yaml); ros: the folder for "
                   "<name>.yaml [default: beside CALIB_YAML].")
@click.option("--frame-name", default="frame_camera", show_default=True,
              help="ROS camera_name (and file name) of the frame camera.")
@click.option("--event-name", default="event_camera", show_default=True,
              help="ROS camera_name (and file name) of the event camera.")
@click.option("--frame-topic", default=None,
              help="(kalibr) rostopic of cam0 [default: /<frame-name>/image_raw].")
@click.option("--event-topic", default=None,
              help="(kalibr) rostopic of cam1 [default: /<event-name>/image_raw].")
def export(fmt: str, calib_yaml: Path | None, out: str | None, frame_name: str, event_name: str,
           frame_topic: str | None, event_topic: str | None) -> None:
    """Write calib.yaml in another tool's format: Kalibr or ROS.

    CALIB_YAML is a calib.yaml (or the folder holding one) [default: the workspace's
    calib/calib.yaml]. Kalibr's radtan model has no k3: a nonzero k3 is dropped and the note says
    how far that moves the image border. The ROS files are monocular camera_info (R = I,
    P = [K | 0]); the rig's relative pose is in the Kalibr file.

    \b
    Examples:
      rig calibrate export --format kalibr                 # calib/camchain.yaml
      rig calibrate export --format ros                    # calib/frame_camera.yaml, event_camera.yaml
      rig calibrate export --format kalibr calib_lr/calib.yaml -o kalibr/camchain.yaml
      rig calibrate export --format ros -o ~/.ros/camera_info/
    """
    from calibration.export import default_topic, export_kalibr, export_ros
    from calibration.io import CalibrationFileError, load_calibration
    from common.workspace import WorkspaceError, load_workspace, show_path

    if calib_yaml is None:
        try:
            ws = load_workspace()
        except WorkspaceError as exc:
            raise click.ClickException(str(exc)) from None
        calib_yaml = ws.calib_file
        if not calib_yaml.is_file():
            raise click.ClickException(f"no calibration at {ws.show(calib_yaml)} ({ws.origin('calib')}): "
                                       "make one with rig calibrate --checkerboard, or give CALIB_YAML")
        click.echo(f"calibration: {ws.show(calib_yaml)} ({ws.origin('calib')})", err=True)
    if calib_yaml.is_dir():
        calib_yaml = calib_yaml / "calib.yaml"
    target = Path(out) if out is not None else calib_yaml.parent
    if fmt == "ros" and target.suffix in (".yaml", ".yml"):
        raise click.BadParameter(f"{out}: --format ros writes one file per camera; give a folder",
                                 param_hint="-o/--out")
    try:
        calib = load_calibration(calib_yaml)  # read before anything is created
        source = show_path(calib_yaml)
        if out is not None and out.endswith(("/", os.sep)):  # a folder, maybe not there yet
            target.mkdir(parents=True, exist_ok=True)
        if fmt == "kalibr":
            res = export_kalibr(calib, target, frame_topic=frame_topic or default_topic(frame_name),
                                event_topic=event_topic or default_topic(event_name), source=source)
        else:
            res = export_ros(calib, target, frame_name=frame_name, event_name=event_name,
                             source=source)
    except (CalibrationFileError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    for note in res.notes:
        click.echo(f"note: {note}", err=True)
    for path in res.paths:
        click.echo(f"wrote {show_path(path)}")
