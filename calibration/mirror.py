"""A mirrored camera: the beam splitter's reflected arm sees a mirror image of the scene.

Why this needs care: both OpenCV detectors return corners in one image-space handedness
(row direction x column direction is the same sign on an image and on its mirror image, measured
on real images), so corner k of a mirrored view is a *different* board corner than corner k of
the direct view, and no per-view sign test can tell. What does tell is the relation between the
two cameras: with the right correspondence it is one fixed mapping for every pose (for a coaxial
rig nearly one homography), with the wrong one it changes with each pose. `decide_mirroring`
fits each pair's homography under both hypotheses (as detected; the second camera mirrored)
and keeps the one whose homographies agree across views.

A checkerboard cannot say *which* camera is the mirrored one (a board and its mirror image
differ by a rotation), so that comes from the rig (`optics.reflected_arm` in rig.yaml, stored in
each session; the simulator's `--mirror`), by default the event camera as in the README's rig.
The calibration then describes the mirrored camera's unmirrored lens (K, dist) and records
`mirror` in calib.yaml; the aligners reflect its sensor pixels first (`rig.geometry.mirror_x`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import Board
from calibration.detect import normalise_order
from rig.geometry import apply_homography, mirror_x

#: A hypothesis wins when its cross-view error is below this share of the other's.
DECISIVE_RATIO = 0.5
_MAX_VIEWS = 24  # pairs used for the cross-view test (n^2 homography checks)


def mirrored_corners(corners: np.ndarray, board: Board, gray: np.ndarray | None,
                     width: int) -> np.ndarray:
    """The corners of a view as they are on the unmirrored image: in that image's coordinates
    (x -> width-1 - x) and in the order the detector plus `normalise_order` give there (the
    mirrored detection reversed along each row, then the board's start corner chosen on the
    flipped image)."""
    flipped = mirror_x(np.asarray(corners, np.float64).reshape(-1, 2), width)
    grid = flipped.reshape(board.rows, board.cols, 2)[:, ::-1].reshape(-1, 2)
    # a reversed view, not a copy: normalise_order only averages two small patches of it
    return normalise_order(grid.astype(np.float32), board, None if gray is None else gray[:, ::-1])


def cross_view_error_px(src: dict[int, np.ndarray], dst: dict[int, np.ndarray],
                        ids: list[int]) -> float:
    """Median over pairs of views (i, j) of the median distance between dst_j and src_j mapped
    by the homography fitted to view i: small when one relation serves all poses."""
    if len(ids) > _MAX_VIEWS:
        ids = [ids[k] for k in np.linspace(0, len(ids) - 1, _MAX_VIEWS).round().astype(int)]
    homographies = {}
    for i in ids:
        H, _ = cv2.findHomography(np.asarray(src[i], np.float64), np.asarray(dst[i], np.float64), 0)
        if H is not None:
            homographies[i] = H
    errs = [float(np.median(np.linalg.norm(apply_homography(H, src[j]) - dst[j], axis=1)))
            for i, H in homographies.items() for j in ids if j != i]
    return float(np.median(errs)) if errs else float("nan")


@dataclass
class MirrorDecision:
    """Whether one camera of the pair sees a mirror image, and the evidence."""

    camera: str  # "none", "event" or "frame": the camera whose views were mirrored
    error_direct_px: float  # cross-view error with the corners as detected
    error_mirrored_px: float  # ... with one camera's views mirrored
    pairs: int
    attributed_by: str  # where the camera's name came from
    note: str = ""

    def to_dict(self) -> dict:
        return {"camera": self.camera, "detected": self.camera != "none",
                "cross_view_error_direct_px": self.error_direct_px,
                "cross_view_error_mirrored_px": self.error_mirrored_px, "pairs": self.pairs,
                "attributed_by": self.attributed_by, "note": self.note}


def decide_mirroring(frame_corners: dict[int, np.ndarray], event_corners: dict[int, np.ndarray],
                     event_unmirrored: dict[int, np.ndarray], event_width: int, ids: list[int],
                     reflected_arm: str | None, source_of_arm: str) -> MirrorDecision:
    """Compare the two correspondences (event corners as detected, or mirrored) across the
    paired views; name the mirrored camera from `reflected_arm` (default: the event camera)."""
    arm = reflected_arm if reflected_arm in ("event", "frame") else "event"
    attributed = source_of_arm if reflected_arm in ("event", "frame") else \
        "default: the event camera, as in the README's rig"
    if len(ids) < 2:
        return MirrorDecision("none", float("nan"), float("nan"), len(ids), "",
                              "fewer than 2 pairs: mirroring not tested")
    direct = cross_view_error_px(frame_corners, event_corners, ids)
    # the event views reflected back, in sensor coordinates and physical corner order
    physical = {i: mirror_x(event_unmirrored[i], event_width) for i in ids}
    mirrored = cross_view_error_px(frame_corners, physical, ids)
    if np.isfinite(mirrored) and mirrored < DECISIVE_RATIO * direct:
        note = ""
        if reflected_arm == "none":
            note = ("the rig says no camera is mirrored, but the views are a mirrored pair: "
                    "taking the event camera as the mirrored one")
        return MirrorDecision(arm, direct, mirrored, len(ids), attributed, note)
    return MirrorDecision("none", direct, mirrored, len(ids), "")
