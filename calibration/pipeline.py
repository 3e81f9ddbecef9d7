"""From pairs of views to a `Calibration` and its report: detect, calibrate each camera, relate
them, build the aligned grid, measure the alignment on held-out views (and against ground truth
when the simulator provides it)."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from tqdm import tqdm

from calibration.accuracy import corner_alignment_error, truth_alignment_error
from calibration.board import Board
from calibration.detect import detect_corners
from calibration.io import Calibration
from calibration.mirror import MirrorDecision, decide_mirroring, mirrored_corners
from calibration.mono import MonoResult, calibrate_mono
from calibration.relation import (
    Extrinsics,
    Relation,
    choose_model,
    grid_scale,
    homography_relation,
    stereo_extrinsics,
    stereo_relation,
)
from rig.geometry import RigGeometry

MODEL_CHOICES = ("homography", "stereo", "auto")


@dataclass
class CalibOptions:
    board: Board
    model: str = "homography"  # homography | stereo | auto
    min_depth_m: float = 1.0  # depths the alignment should serve: [min_depth_m, max_depth_m]
    max_depth_m: float = 10.0  # (inf allowed)
    plane_depth_m: float | None = None  # Z0 of the homography (default: from the depth range)
    max_parallax_px: float = 1.0  # auto: largest homography residual still called aligned
    holdout_every: int = 5  # every n-th view pair is held out from calibration ...
    holdout_min_pairs: int = 30  # ... when there are this many pairs (fewer: all calibrate)
    min_views: int = 6
    truth_depths_m: tuple[float, ...] = (1.0, 10.0)
    refine: bool = True  # joint refinement after the fixed-intrinsics stereo stage
    grid: str | float = "event"  # the aligned grid's sampling (calibration.relation.GRID_CHOICES)

    def __post_init__(self) -> None:
        if self.model not in MODEL_CHOICES:
            raise ValueError(f"model must be one of {MODEL_CHOICES}, got {self.model!r}")

    @property
    def z0_m(self) -> float:
        """Z0 that minimises the worst parallax over [min, max] depth: 1/Z0 is the mean of
        1/min and 1/max (2 x min for an unbounded range)."""
        if self.plane_depth_m:
            return self.plane_depth_m
        return 2.0 / (1.0 / self.min_depth_m + 1.0 / self.max_depth_m)


@dataclass
class ViewSet:
    """Detected corners of all views (view id -> (N, 2)), with what was rejected and why."""

    frame_size: tuple[int, int]
    event_size: tuple[int, int]
    frame_corners: dict[int, np.ndarray] = field(default_factory=dict)
    event_corners: dict[int, np.ndarray] = field(default_factory=dict)
    methods: dict[str, dict[int, str]] = field(default_factory=lambda: {"frame": {}, "event": {}})
    rejected: dict[str, dict[int, str]] = field(default_factory=lambda: {"frame": {}, "event": {}})
    labels: dict[int, str] = field(default_factory=dict)  # view id -> file name / time
    images: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # for report
    truth: RigGeometry | None = None
    source: str = ""
    # each detection as it is on the mirrored image ("frame"/"event" -> view id -> corners):
    # what calibration uses for the camera it finds mirrored (calibration.mirror)
    unmirrored: dict[str, dict[int, np.ndarray]] = field(
        default_factory=lambda: {"frame": {}, "event": {}})
    reflected_arm: str | None = None  # the rig's mirrored camera, when the source says
    reflected_arm_source: str = ""  # where reflected_arm came from

    @property
    def pair_ids(self) -> list[int]:
        return sorted(set(self.frame_corners) & set(self.event_corners))


View = tuple[int, str, np.ndarray | None, np.ndarray | None]
#: Told after each view is detected (then None, once all are): the live preview's tap.
ViewReport = Callable[[View | None, ViewSet], None]


def _reported(views: Iterable[View], on_view: ViewReport, vs: ViewSet) -> Iterator[View]:
    """`views`, telling `on_view` about each one once it was detected (when the next is asked
    for), and None after the last."""
    previous: View | None = None
    for item in views:
        if previous is not None:
            on_view(previous, vs)
        previous = item
        yield item
    if previous is not None:
        on_view(previous, vs)
    on_view(None, vs)


def detect_views(views: Iterable[View],
                 board: Board, frame_size: tuple[int, int], event_size: tuple[int, int], *,
                 dedupe_px: float | None = None, keep_images: int = 2, total: int | None = None,
                 progress: bool = True, on_view: ViewReport | None = None) -> ViewSet:
    """Detect the board in (id, label, frame grey, event image) views. With `dedupe_px`,
    consecutive views whose frame corners moved less than that are one pose: only its first
    complete pair is kept (a recording holds each pose for several triggers). `on_view` hears
    of each view after its detection (calibration.preview)."""
    vs = ViewSet((int(frame_size[0]), int(frame_size[1])), (int(event_size[0]), int(event_size[1])))
    last_pair: np.ndarray | None = None
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    bar = tqdm(views if on_view is None else _reported(views, on_view, vs), total=total,
               desc="detecting boards", unit="view", disable=None if progress else True)
    for vid, label, fgray, eimg in bar:
        vs.labels[vid] = label
        fd = detect_corners(fgray, board) if fgray is not None else None
        if fd is not None and not fd.ok:
            vs.rejected["frame"][vid] = fd.reason
        if (dedupe_px and fd is not None and fd.ok and last_pair is not None
                and np.max(np.linalg.norm(fd.corners - last_pair, axis=1)) < dedupe_px):
            vs.rejected["frame"][vid] = "same pose as the previous view"
            continue
        if dedupe_px and (fd is None or not fd.ok):
            continue  # without a frame board the event image cannot be paired
        ed = detect_corners(eimg, board) if eimg is not None else None
        if ed is not None and not ed.ok:
            vs.rejected["event"][vid] = ed.reason
        if fd is not None and fd.ok and fd.corners is not None:
            vs.frame_corners[vid] = fd.corners
            vs.methods["frame"][vid] = fd.method
            vs.unmirrored["frame"][vid] = mirrored_corners(fd.corners, board, fgray,
                                                           vs.frame_size[0])
        if ed is not None and ed.ok and ed.corners is not None:
            vs.event_corners[vid] = ed.corners
            vs.methods["event"][vid] = ed.method
            vs.unmirrored["event"][vid] = mirrored_corners(ed.corners, board, eimg,
                                                           vs.event_size[0])
        if fd is not None and fd.ok and ed is not None and ed.ok:
            last_pair = fd.corners
            if len(vs.images) < keep_images:
                vs.images[vid] = (fgray, eimg)
        bar.set_postfix(pairs=len(vs.pair_ids), refresh=False)
    return vs


def _resolve_mirroring(vs: ViewSet) -> tuple[ViewSet, MirrorDecision]:
    """Find whether one camera sees a mirror image (calibration.mirror); if so, that camera's
    corners become (in place: the report draws them) the mirrored detections in sensor
    coordinates and physical corner order, corner k the same board corner in both cameras."""
    from rig.geometry import mirror_x

    decision = decide_mirroring(vs.frame_corners, vs.event_corners, vs.unmirrored["event"],
                                vs.event_size[0], vs.pair_ids, vs.reflected_arm,
                                vs.reflected_arm_source)
    if decision.camera == "none":
        return vs, decision
    cam = decision.camera
    width = vs.event_size[0] if cam == "event" else vs.frame_size[0]
    physical = {i: mirror_x(c, width).astype(np.float32) for i, c in vs.unmirrored[cam].items()}
    setattr(vs, f"{cam}_corners", physical)
    return vs, decision


def _holdout(ids: list[int], every: int, min_pairs: int) -> list[int]:
    """Pairs kept out of calibration to measure alignment on views it never saw: only from a
    set large enough to spare them (a 20-pair image set calibrates on all 20, as OpenCV's
    recipe does; a 40-pose simulated session holds out one in five)."""
    if every <= 1 or len(ids) < min_pairs:
        return []
    return ids[every // 2::every]


def _mono_report(m: MonoResult, vs: ViewSet, cam: str) -> dict:
    return {"rms_px": m.rms_px, "K": m.K.tolist(), "dist": m.dist.tolist(),
            "k3": "fixed at 0" if m.flags & cv2.CALIB_FIX_K3 else "estimated",
            "rms_k3_free_px": m.rms_k3_free_px,
            "views_used": len(m.view_ids),
            "per_view_rms_px": {str(i): float(e)
                                for i, e in zip(m.view_ids, m.per_view_rms_px, strict=True)},
            "dropped": {str(i): r for i, r in m.dropped.items()},
            "rejected": {str(i): r for i, r in vs.rejected[cam].items()},
            "detector": {str(i): s for i, s in vs.methods[cam].items()}}


def calibrate_views(vs: ViewSet, opts: CalibOptions) -> tuple[Calibration, dict]:
    """The whole calibration from detected views; returns the calibration and the report."""
    board = opts.board
    vs, mirror = _resolve_mirroring(vs)
    pairs = vs.pair_ids
    held = _holdout(pairs, opts.holdout_every, max(opts.holdout_min_pairs, 2 * opts.min_views))
    # what K and dist describe: the mirrored camera's detections as they are on its unmirrored
    # image (the same corners as its sensor-coordinate ones, reflected back)
    lens_fr = vs.unmirrored["frame"] if mirror.camera == "frame" else vs.frame_corners
    lens_ev = vs.unmirrored["event"] if mirror.camera == "event" else vs.event_corners
    train_fr = {i: c for i, c in lens_fr.items() if i not in held}
    train_ev = {i: c for i, c in lens_ev.items() if i not in held}
    obj = board.object_points()
    try:
        mono_fr = calibrate_mono(obj, train_fr, vs.frame_size, min_views=opts.min_views)
    except ValueError as e:
        raise ValueError(f"frame camera: {e}") from None
    try:
        mono_ev = calibrate_mono(obj, train_ev, vs.event_size, min_views=opts.min_views)
    except ValueError as e:
        raise ValueError(f"event camera: {e}") from None
    ext: Extrinsics = stereo_extrinsics(obj, train_fr, train_ev, mono_fr, mono_ev,
                                        refine=opts.refine)
    cam_fr = replace(mono_fr, K=ext.K_frame, dist=ext.dist_frame)
    cam_ev = replace(mono_ev, K=ext.K_event, dist=ext.dist_event)
    model, reason = opts.model, f"chosen with --model {opts.model}"
    if model == "auto":
        model, reason = choose_model(cam_fr, cam_ev, ext.T, opts.min_depth_m, opts.max_depth_m,
                                     opts.z0_m, opts.max_parallax_px)
    scale = grid_scale(opts.grid, ext.K_frame, ext.K_event)
    if model == "homography":
        rel: Relation = homography_relation(cam_fr, cam_ev, ext.R, ext.T, opts.z0_m, reason,
                                            scale)
    else:
        rel = stereo_relation(cam_fr, cam_ev, ext.R, ext.T, reason, scale)
    calib = Calibration(
        K_frame=ext.K_frame, dist_frame=ext.dist_frame, size_frame=vs.frame_size,
        K_event=ext.K_event, dist_event=ext.dist_event, size_event=vs.event_size, R=ext.R,
        T=ext.T, model=rel.model, H=rel.H, output_size=rel.output_size,
        valid_roi=rel.valid_roi, rms_frame=ext.rms_frame_px, rms_event=ext.rms_event_px,
        rms_stereo=ext.rms_px, K_aligned=rel.K_aligned,
        R_rect_frame=rel.R_rect_frame, plane_depth_m=rel.plane_depth_m, stereo=rel.stereo,
        mirror=mirror.camera)
    err = _alignment_errors(calib, vs, held, ext, board)
    if vs.truth is not None:
        err.update(truth_alignment_error(calib, vs.truth, opts.truth_depths_m))
    calib.alignment_error_px = {k: v for k, v in err.items() if isinstance(v, float)}
    calib.info = {
        "pattern": f"{board.cols}x{board.rows}", "square_mm": board.square_m * 1000.0,
        "views_frame": len(mono_fr.view_ids), "views_event": len(mono_ev.view_ids),
        "views_stereo": len(ext.view_ids), "views_heldout": len(held),
        "model_reason": rel.reason, "source": vs.source, "grid": str(opts.grid),
        "mirror_attributed_by": mirror.attributed_by or "no mirrored camera found",
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "opencv_version": cv2.__version__, "tool_version": _tool_version()}
    report = {
        "source": vs.source, "pattern": calib.info["pattern"], "square_mm": calib.info["square_mm"],
        "model": calib.model, "model_reason": rel.reason, "mirror": mirror.to_dict(),
        "plane_depth_m": rel.plane_depth_m if math.isfinite(rel.plane_depth_m) else None,
        "frame": _mono_report(mono_fr, vs, "frame"), "event": _mono_report(mono_ev, vs, "event"),
        "stereo": {"rms_px": ext.rms_px, "rms_fixed_intrinsics_px": ext.rms_fixed_intrinsics_px,
                   "joint_refinement": ext.refined, "note": ext.note,
                   "rms_frame_px": ext.rms_frame_px, "rms_event_px": ext.rms_event_px,
                   "R": ext.R.tolist(), "T_m": ext.T.tolist(),
                   "baseline_mm": 1000.0 * float(np.linalg.norm(ext.T)),
                   "per_view_rms_px": {str(i): [float(a), float(b)]
                                       for i, (a, b) in zip(ext.view_ids, ext.per_view_rms_px,
                                                            strict=True)},
                   "dropped": {str(i): r for i, r in ext.dropped.items()}},
        "aligned_grid": {"output_size": list(rel.output_size), "valid_roi": list(rel.valid_roi),
                         "grid": str(opts.grid), "focal_scale_vs_frame": scale,
                         "K_aligned": rel.K_aligned.tolist(), "H": rel.H.tolist(),
                         **_coverage(calib)},
        "heldout_views": [int(i) for i in held],
        "heldout_policy": (f"every {opts.holdout_every}th of {len(pairs)} pairs held out" if held
                           else f"none held out: {len(pairs)} pairs, fewer than "
                                f"{opts.holdout_min_pairs} (all calibrate)"),
        "alignment_error_px": err,
        "labels": {str(i): s for i, s in vs.labels.items() if i in set(pairs)},
        "views": _view_table(vs, mono_fr, mono_ev, ext, held),
    }
    if vs.truth is not None:
        report["truth"] = _truth_report(calib, vs.truth)
    return calib, report


def _coverage(calib: Calibration) -> dict[str, float]:
    """`grid_coverage` of every event pixel's position on the aligned grid (the grid is the
    crop both cameras see, so all of it is in view)."""
    from calibration.align import event_to_aligned, grid_coverage

    we, he = (int(v) for v in calib.size_event)
    u, v = np.meshgrid(np.arange(we, dtype=np.float64), np.arange(he, dtype=np.float64))
    pos = event_to_aligned(calib, np.stack([u.ravel(), v.ravel()], axis=1))
    return grid_coverage(pos, calib.output_size)


def _view_table(vs: ViewSet, mono_fr: MonoResult, mono_ev: MonoResult, ext: Extrinsics,
                held: list[int]) -> dict[str, dict[str, str]]:
    """Every view seen, per camera: "used", "held out", or why not (rejected by detection with
    its reason, dropped as an outlier, or unpaired because the other camera lost the board)."""
    table: dict[str, dict[str, str]] = {}
    for i, label in vs.labels.items():
        row = {"label": label}
        for cam, corners, mono in (("frame", vs.frame_corners, mono_fr),
                                   ("event", vs.event_corners, mono_ev)):
            if i in vs.rejected[cam]:
                status = f"rejected: {vs.rejected[cam][i]}"
            elif i not in corners:
                status = "not detected"
            elif i in held:
                status = "held out"
            elif i in mono.dropped:
                status = f"dropped: {mono.dropped[i]}"
            elif i in ext.dropped:
                status = f"dropped: {ext.dropped[i]}"
            elif i in ext.view_ids:
                status = "used"
            elif i in mono.view_ids:
                status = "used for this camera's intrinsics only (no pair)"
            else:
                status = "not used"
            row[cam] = status
        table[str(i)] = row
    return table


def _alignment_errors(calib: Calibration, vs: ViewSet, held: list[int],
                      ext: Extrinsics, board: Board) -> dict:
    out: dict = {}
    per_view = {}
    groups = {"heldout": held, "train": ext.view_ids}
    for name, ids in groups.items():
        errs = []
        for i in ids:
            e = corner_alignment_error(calib, vs.frame_corners[i], vs.event_corners[i])
            errs.append(e)
            if name == "heldout":
                per_view[str(i)] = float(np.median(e))
        if errs:
            allerr = np.concatenate(errs)
            out[f"{name}_median"] = float(np.median(allerr))
            out[f"{name}_p95"] = float(np.percentile(allerr, 95))
            out[f"{name}_max"] = float(allerr.max())
    depths = [_board_depth_m(calib, vs.frame_corners[i], board) for i in held]
    if depths:
        out["heldout_board_depth_m"] = float(np.median(depths))
    out["heldout_per_view_median"] = per_view
    return out


def _board_depth_m(calib: Calibration, frame_corners: np.ndarray, board: Board) -> float:
    """z of the board centre in the frame camera (solvePnP with the calibrated frame camera)."""
    obj = board.object_points()
    lens = calib.sensor_to_lens("frame", frame_corners)
    ok, _rvec, tvec = cv2.solvePnP(obj, lens.reshape(-1, 1, 2), calib.K_frame, calib.dist_frame)
    if not ok:
        return float("nan")
    R = cv2.Rodrigues(_rvec)[0]
    return float((R @ obj.mean(axis=0) + tvec.ravel())[2])


def _truth_report(calib: Calibration, g: RigGeometry) -> dict:
    return {"K_frame": g.frame.K.tolist(), "dist_frame": g.frame.dist.tolist(),
            "K_event": g.event.K.tolist(), "dist_event": g.event.dist.tolist(),
            "R": g.R_ev_fr.tolist(), "T_m": g.T_ev_fr_m.tolist(),
            "K_frame_error": (calib.K_frame - g.frame.K).tolist(),
            "K_event_error": (calib.K_event - g.event.K).tolist(),
            "T_error_mm": (1000.0 * (calib.T - g.T_ev_fr_m)).tolist()}


def _tool_version() -> str:
    try:
        from rig import __version__
        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"
