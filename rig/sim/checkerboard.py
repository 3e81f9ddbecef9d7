"""A blinking checkerboard at random (seeded) poses: the calibration scene of the simulated rig.

The board is what a monitor shows for `rig calibrate --show-pattern`: a chessboard of
`(pattern[0] + 1) x (pattern[1] + 1)` squares inside a white margin. It blinks: during the "on"
part of each period the pattern is lit, during the "off" part the whole board is at the black
level, so the event camera sees both polarities on the white squares and the margin and nothing
on the black squares, which is the image the corner detector gets. The lit part of each period
is centred in it; the board holds each pose for `hold_periods` blink periods and jumps to the
next pose in the middle of the dark part, against a wall as dark as the unlit board, so a move
makes no events: every pose gets clean ON and OFF edges. The rig stays still at the origin.

Board coordinates (metres): x along the rows of `pattern[0]` inner corners, y down the columns,
origin at the first inner corner, so inner corner (i, j) sits at (i * square_m, j * square_m, 0),
the object points a calibration uses. Rendering is anti-aliased with a box filter over each
pixel's footprint on the board (a symmetric filter keeps edges and corners where they are), so
corner positions in the images are sub-pixel exact up to the cameras' noise.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.sim.optics import RigGeometry, default_rig, rotation_from_euler_deg
from rig.sim.scene_api import RenderResult, SceneFeatures


@dataclass
class CheckerboardParams:
    """Settings of the calibration scene (defaults fit the default simulated rig)."""

    pattern: tuple[int, int] = (9, 6)  # inner corners per row, per column
    square_m: float = 0.025
    margin_squares: float = 0.75  # white margin around the squares, in squares
    blink_hz: float = 5.0
    duty: float = 0.5  # fraction of each blink period the pattern is lit (centred in the period)
    blink_phase_s: float = 0.0  # start of the first period
    hold_periods: int = 1  # blink periods per pose; the board moves in the dark mid-off time
    n_poses: int = 64  # poses cycle after this many
    distance_m: tuple[float, float] = (0.42, 0.85)  # board centre distance from the frame camera
    max_tilt_deg: float = 35.0
    max_roll_deg: float = 20.0
    white: float = 0.5  # radiance of lit white squares (a monitor in a lit room)
    black: float = 0.12  # radiance of black squares and of the board when off
    background: float = 0.12  # the wall behind (= black: moves in the dark make no events)
    edge_margin_px: float = 8.0  # board (with margin) stays this far inside both images


def _triangle(x: np.ndarray, period: float) -> np.ndarray:
    """Antiderivative of the +-1 square wave of half-period `period / 2` (a triangle wave)."""
    half = period / 2.0
    u = np.mod(x, period)
    return half - np.abs(u - half)


def _filtered_square(x: np.ndarray, width: np.ndarray, square: float) -> np.ndarray:
    """Box-filtered square wave (+1 on even squares, -1 on odd) over windows of `width`."""
    w = np.maximum(width, 1e-9)
    return (_triangle(x + w / 2, 2 * square) - _triangle(x - w / 2, 2 * square)) / w


def _filtered_inside(x: np.ndarray, lo: float, hi: float, width: np.ndarray) -> np.ndarray:
    """Box-filtered indicator of lo <= x < hi (coverage of the footprint by the interval)."""
    w = np.maximum(width, 1e-9)
    a = np.clip((x - lo) / w + 0.5, 0.0, 1.0)
    b = np.clip((hi - x) / w + 0.5, 0.0, 1.0)
    return np.clip(a + b - 1.0, 0.0, 1.0)


class CheckerboardScene:
    """Implements `rig.sim.scene_api.Scene` for calibration (see the module docstring)."""

    name = "checkerboard"
    features = SceneFeatures()  # blinks and pose jumps are sampled by the rig's big-change check
    max_object_speed_mps = 0.0  # the board only moves in the dark, between two poses

    def __init__(self, seed: int = 0, params: CheckerboardParams | None = None,
                 geometry: RigGeometry | None = None) -> None:
        self.seed = int(seed)
        self.params = params or CheckerboardParams()
        self.geometry = geometry or default_rig()
        rng = np.random.default_rng(self.seed)
        self.poses = [self._sample_pose(rng) for _ in range(self.params.n_poses)]
        self._cache: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    # ---- board geometry -------------------------------------------------------------------
    def object_points(self) -> np.ndarray:
        """(N, 3) inner corners in board coordinates, row-major (x fastest), metres."""
        cols, rows = self.params.pattern
        jj, ii = np.mgrid[0:rows, 0:cols]
        pts = np.zeros((rows * cols, 3))
        pts[:, 0] = ii.ravel() * self.params.square_m
        pts[:, 1] = jj.ravel() * self.params.square_m
        return pts

    def board_extent_m(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of the whole board including its margin."""
        p, s = self.params, self.params.square_m
        m = (1.0 + p.margin_squares) * s
        return (-m, (p.pattern[0] - 1) * s + m, -m, (p.pattern[1] - 1) * s + m)

    def _outline(self) -> np.ndarray:
        x0, x1, y0, y1 = self.board_extent_m()
        xs, ys = np.linspace(x0, x1, 9), np.linspace(y0, y1, 7)
        edge = [np.column_stack([xs, np.full_like(xs, y)]) for y in (y0, y1)]
        edge += [np.column_stack([np.full_like(ys, x), ys]) for x in (x0, x1)]
        pts = np.vstack(edge)
        return np.column_stack([pts, np.zeros(len(pts))])

    def _sample_pose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A pose (R_world_board, t_world_board_m) with the whole board inside both cameras."""
        p, g = self.params, self.geometry
        x0, x1, y0, y1 = self.board_extent_m()
        centre_b = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
        outline = self._outline()
        for _ in range(5000):
            z = rng.uniform(*p.distance_m)
            u = rng.uniform(0.15, 0.85) * g.event.width
            v = rng.uniform(0.15, 0.85) * g.event.height
            ray_ev = np.append(g.event.undistort_pixels(np.array([[u, v]]))[0], 1.0)
            centre_fr = (ray_ev * z - g.T_ev_fr_m) @ g.R_ev_fr
            R = rotation_from_euler_deg(rng.uniform(-1, 1) * p.max_tilt_deg,
                                        rng.uniform(-1, 1) * p.max_tilt_deg,
                                        rng.uniform(-1, 1) * p.max_roll_deg)
            t = centre_fr - R @ centre_b
            if R[2, 2] < 0.45:  # seen too obliquely
                continue
            pts_fr = outline @ R.T + t
            pts_ev = pts_fr @ g.R_ev_fr.T + g.T_ev_fr_m
            if np.any(pts_fr[:, 2] < 0.1) or np.any(pts_ev[:, 2] < 0.1):
                continue
            if self._inside(g.frame.project(pts_fr), g.frame.size) and \
                    self._inside(g.event.project(pts_ev), g.event.size):
                return R, t
        raise RuntimeError("checkerboard scene: no board pose fits both cameras; "
                           "check distance_m against the board size")

    def _inside(self, px: np.ndarray, size: tuple[int, int]) -> bool:
        m = self.params.edge_margin_px
        return bool(np.all((px[:, 0] >= m) & (px[:, 0] <= size[0] - 1 - m)
                           & (px[:, 1] >= m) & (px[:, 1] <= size[1] - 1 - m)))

    # ---- time ------------------------------------------------------------------------------
    @property
    def hold_s(self) -> float:
        """How long the board stays at one pose."""
        return self.params.hold_periods / self.params.blink_hz

    def pose_index(self, t_s: float) -> int:
        k = int(np.floor((t_s - self.params.blink_phase_s) / self.hold_s))
        return k % len(self.poses)

    def lit_interval_s(self, period: int) -> tuple[float, float]:
        """(start, end) of the lit part of blink period `period`."""
        p = self.params
        t0 = p.blink_phase_s + period / p.blink_hz
        return t0 + 0.5 * (1 - p.duty) / p.blink_hz, t0 + 0.5 * (1 + p.duty) / p.blink_hz

    def board_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(R_world_board, t_world_board_m) at time t."""
        return self.poses[self.pose_index(t_s)]

    def is_on(self, t_s: float) -> bool:
        """Whether the pattern is lit at time t."""
        phase = ((t_s - self.params.blink_phase_s) * self.params.blink_hz) % 1.0
        return bool(abs(phase - 0.5) < 0.5 * self.params.duty)

    def rig_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        return np.eye(3), np.zeros(3)

    def describe(self) -> dict[str, Any]:
        """Empty, as checkerboard sessions have always stored it (readers of scenario.json fall
        back to the default parameters); kept so that recordings stay byte-identical."""
        return {}

    # ---- rendering -------------------------------------------------------------------------
    def _coverage(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
                  pose_idx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel: board coverage, lit-state whiteness, z-depth (cached per rays and pose)."""
        h, w = rays_cam.shape[:2]
        key = (id(rays_cam), rays_cam.shape, float(rays_cam[0, 0, 0]), float(rays_cam[-1, -1, 1]),
               float(rays_cam[h // 2, w // 2, 0]), np.asarray(R_world_cam, np.float64).tobytes(),
               np.asarray(centre_world_m, np.float64).tobytes(), pose_idx)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        R_wb, t_wb = self.poses[pose_idx]
        rays = rays_cam.reshape(-1, 3).astype(np.float64)
        # board plane in camera coordinates: n . X = d
        R_cb = np.asarray(R_world_cam).T @ R_wb
        t_cb = np.asarray(R_world_cam).T @ (t_wb - np.asarray(centre_world_m, np.float64))
        n = R_cb[:, 2]
        d = float(n @ t_cb)
        denom = rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            s = d / denom  # rays have z = 1, so s is the z-depth
        valid = np.isfinite(s) & (s > 0)
        s = np.where(valid, s, np.nan)
        pts_b = (rays * s[:, None] - t_cb) @ R_cb  # R_cb^T (X - t)
        bx = pts_b[:, 0].reshape(h, w)
        by = pts_b[:, 1].reshape(h, w)
        wx, wy = self._footprint(bx, by)
        p, sq = self.params, self.params.square_m
        x0, x1, y0, y1 = self.board_extent_m()
        cov = _filtered_inside(bx, x0, x1, wx) * _filtered_inside(by, y0, y1, wy)
        # squares area: corners of the outer squares at -sq and (pattern-1)*sq + sq
        sx0, sx1, sy0, sy1 = -sq, p.pattern[0] * sq, -sq, p.pattern[1] * sq
        inner = _filtered_inside(bx, sx0, sx1, wx) * _filtered_inside(by, sy0, sy1, wy)
        # square (i, j) with i = floor(x / sq) is black when i + j is even (black board corners)
        # the filter window must not reach past the squares area (it would blend in a virtual
        # square of the other colour and draw a dark seam along the margin)
        cx = np.clip(bx, sx0 + wx / 2, sx1 - wx / 2)
        cy = np.clip(by, sy0 + wy / 2, sy1 - wy / 2)
        checker = 0.5 - 0.5 * _filtered_square(cx, wx, sq) * _filtered_square(cy, wy, sq)
        white = inner * checker + (1.0 - inner)
        cov = np.nan_to_num(cov).astype(np.float32)
        white = np.nan_to_num(white).astype(np.float32)
        depth = s.reshape(h, w).astype(np.float32)
        out = (cov, white, depth)
        self._cache[key] = out
        while len(self._cache) > 16:
            self._cache.popitem(last=False)
        return out

    @staticmethod
    def _footprint(bx: np.ndarray, by: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Width of each pixel's footprint along board x and y (metres)."""
        if bx.shape[0] < 2 or bx.shape[1] < 2:
            zero = np.zeros_like(bx)
            return zero, zero
        gxv, gxu = np.gradient(bx)
        gyv, gyu = np.gradient(by)
        wx = np.abs(gxu) + np.abs(gxv)
        wy = np.abs(gyu) + np.abs(gyv)
        return np.nan_to_num(wx), np.nan_to_num(wy)

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False) -> RenderResult:
        cov, white, depth = self._coverage(rays_cam, R_world_cam, centre_world_m,
                                           self.pose_index(t_s))
        p = self.params
        lit = (p.white - p.black) * white if self.is_on(t_s) else 0.0
        board = p.black + lit
        rad = p.background * (1.0 - cov) + cov * board
        radiance = np.repeat(np.asarray(rad, np.float32)[..., None], 3, axis=2)
        if not want_labels:
            return RenderResult(radiance=radiance)
        h, w = cov.shape
        far = np.float32(5.0)  # the wall behind the board
        depth_out = np.where(cov > 0.5, depth, far).astype(np.float32)
        return RenderResult(radiance=radiance, label=np.full((h, w), 255, np.uint8),
                            depth_m=depth_out, instance=np.zeros((h, w), np.uint16))


def make_scene(seed: int, **params) -> CheckerboardScene:
    """The simulator's scenario table entry "checkerboard": `params` are `CheckerboardParams`
    fields (unknown names raise TypeError), plus optional `geometry` (a RigGeometry)."""
    geometry = params.pop("geometry", None)
    if "pattern" in params:
        params["pattern"] = tuple(int(v) for v in params["pattern"])
    return CheckerboardScene(seed, CheckerboardParams(**params), geometry)
