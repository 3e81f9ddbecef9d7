"""One calibration run end to end: a view source -> detection -> calibration -> calib.yaml,
report.json, report.png in an output folder. The CLI (`rig calibrate`) is a thin shell on this."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from calibration.board import Board
from calibration.io import Calibration, save_calibration
from calibration.pipeline import CalibOptions, ViewReport, calibrate_views, detect_views
from calibration.report import write_report_json, write_report_png
from calibration.sources import ViewSource


@dataclass
class RunResult:
    calib: Calibration
    report: dict
    out_dir: Path
    elapsed_s: float


def run_calibration(source: ViewSource, opts: CalibOptions, out_dir: str | Path, *,
                    progress: bool = True, on_view: ViewReport | None = None) -> RunResult:
    """Detect, calibrate, write the three files; returns the calibration and report.
    `on_view`: told of each view once detected (the live preview)."""
    t0 = time.monotonic()
    out = Path(out_dir)
    vs = detect_views(source.views, opts.board, source.frame_size, source.event_size,
                      dedupe_px=source.dedupe_px, total=source.total, progress=progress,
                      on_view=on_view)
    vs.truth = source.truth
    vs.source = source.source
    vs.reflected_arm, vs.reflected_arm_source = source.reflected_arm, source.reflected_arm_source
    if len(vs.pair_ids) < opts.min_views:
        raise ValueError(
            f"{source.source}: only {len(vs.pair_ids)} views with the board found by both cameras "
            f"(frame: {len(vs.frame_corners)}, event: {len(vs.event_corners)}); need at least "
            f"{opts.min_views}. Check --pattern (inner corners, e.g. 9x6) and the images.")
    calib, report = calibrate_views(vs, opts)
    if source.recorded_utc:  # `rpea build` warns about sessions recorded before it
        calib.info["recorded_utc"] = source.recorded_utc
    report["notes"] = list(source.notes)
    report["detection"] = {"views_seen": len(vs.labels), "pairs": len(vs.pair_ids),
                           "frame_boards": len(vs.frame_corners),
                           "event_boards": len(vs.event_corners)}
    out.mkdir(parents=True, exist_ok=True)
    save_calibration(calib, out / "calib.yaml")
    report["elapsed_s"] = time.monotonic() - t0
    write_report_json(report, out / "report.json")
    write_report_png(calib, vs, report, opts.board, out / "report.png")
    return RunResult(calib, report, out, time.monotonic() - t0)


def summary_lines(res: RunResult) -> list[str]:
    """What `rig calibrate` prints: RMS values, model, grid, alignment errors, files."""
    c, err = res.calib, res.calib.alignment_error_px
    lines = [
        f"model         {c.model}  ({c.info.get('model_reason', '')})",
        f"views         frame {c.info.get('views_frame')}, event {c.info.get('views_event')}, "
        f"both {c.info.get('views_stereo')}, held out {c.info.get('views_heldout')}",
        f"RMS (px)      frame {c.rms_frame:.3f}   event {c.rms_event:.3f}   "
        f"stereo {c.rms_stereo:.3f}",
        f"baseline      {1000 * float((c.T ** 2).sum() ** 0.5):.2f} mm   T = "
        f"[{', '.join(f'{1000 * v:.2f}' for v in c.T)}] mm",
        f"aligned grid  {c.output_size[0]}x{c.output_size[1]} (crop {tuple(c.valid_roi)} of the "
        f"frame's undistorted view)"
        + (f", Z0 = {c.plane_depth_m:.2f} m" if math.isfinite(c.plane_depth_m) else ""),
    ]
    mirror = res.report.get("mirror", {})
    if mirror.get("detected"):
        lines.append(f"mirrored      the {mirror['camera']} camera sees a mirror image (cross-view "
                     f"error {mirror['cross_view_error_direct_px']:.1f} px as detected, "
                     f"{mirror['cross_view_error_mirrored_px']:.2f} px mirrored; which camera: "
                     f"{mirror['attributed_by']}); calib.yaml mirror: {mirror['camera']}")
    grid = res.report.get("aligned_grid", {})
    if "event_coverage" in grid:
        lines.append(f"event reach   {100 * grid['event_coverage']:.1f} % of the grid's pixels "
                     f"(sub-pixel splat; nearest pixel would reach "
                     f"{100 * grid['event_coverage_nearest']:.1f} %)")
    if "heldout_median" in err:
        lines.append(f"held-out      corner alignment median {err['heldout_median']:.3f} px, "
                     f"p95 {err['heldout_p95']:.3f} px (boards at "
                     f"~{err.get('heldout_board_depth_m', float('nan')):.2f} m"
                     + ("; the stereo model leaves each board's disparity in it)"
                        if c.model == "stereo" else ")"))
    depths = sorted({k.split("_")[1] for k in err if k.startswith("truth_")},
                    key=lambda d: float(d[:-1].replace("p", ".")))
    for d in depths:
        lines.append(f"vs truth {d:>4} median {err[f'truth_{d}_median']:.3f} px, p95 "
                     f"{err[f'truth_{d}_p95']:.3f} px (stored map: median "
                     f"{err[f'truth_{d}_stored_median']:.3f}, p95 {err[f'truth_{d}_stored_p95']:.3f}; "
                     f"rounded to whole pixels it would be median "
                     f"{err[f'rounded_{d}_median']:.3f}, p95 {err[f'rounded_{d}_p95']:.3f})")
    lines.append(f"wrote         {res.out_dir / 'calib.yaml'}, report.json, report.png "
                 f"({res.elapsed_s:.0f} s)")
    return lines


def board_from_cli(pattern: str, square_mm: float) -> Board:
    from calibration.board import parse_pattern

    cols, rows = parse_pattern(pattern)
    return Board(cols, rows, square_mm / 1000.0)
