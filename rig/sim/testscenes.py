"""A flat test chart in front of a still rig: the scene the simulator's physics tests use.

The rig stays at the world origin looking along +z (world = frame-camera coordinates); the chart
is the plane z = `distance_m`. On it: an optional vertical edge (dark left, bright right) that
moves sideways at `edge_speed_mps`, an optional bright spot (a disc) whose centre is a known 3-D
point, and brightness steps in time over the whole chart or a rectangle of it. Everything is
anti-aliased over each pixel's footprint, so edge and spot positions are sub-pixel exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from rig.sim.scene_api import RenderResult, SceneFeatures


@dataclass
class PlaneParams:
    distance_m: float = 2.0
    background: float = 0.2  # radiance of the chart (and of the dark side of the edge)
    edge: bool = False
    edge_x_m: float = 0.0  # edge position on the chart at t = 0 (chart x, metres)
    edge_speed_mps: float = 0.0
    bright: float = 1.0  # radiance right of the edge
    spot: bool = False
    spot_xy_m: tuple[float, float] = (0.1, -0.05)
    spot_radius_m: float = 0.004
    spot_radiance: float = 2.0
    spot_on_s: float = 0.0  # the spot lights up at this time (before: background)
    # brightness steps: (t_s, factor) pairs; the factor of the last step at or before t applies
    steps: list = field(default_factory=list)
    step_region_m: tuple[float, float, float, float] | None = None  # x0, x1, y0, y1 on the chart
    label: int = 2

    @classmethod
    def from_dict(cls, d: dict) -> PlaneParams:
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown plane-scene parameter(s) {bad}; known: {sorted(known)}")
        return cls(**d)


def _box_coverage(x: np.ndarray, lo: float, hi: float, w: np.ndarray) -> np.ndarray:
    """Fraction of [x - w/2, x + w/2] inside [lo, hi]."""
    a = np.maximum(x - w / 2, lo)
    b = np.minimum(x + w / 2, hi)
    return np.clip(b - a, 0.0, None) / w


class PlaneScene:
    """Implements `rig.sim.scene_api.Scene`: the chart of the module docstring.

    Its `render(luminance=True)` is not the rig's fast path (no `labels_only`): the rig converts
    the grey RGB itself, as it always has for this scene."""

    name = "plane"
    features = SceneFeatures(image_speed=True, change_times=True)

    def __init__(self, seed: int = 0, params: PlaneParams | None = None) -> None:
        self.seed = seed
        self.p = params or PlaneParams()
        self.max_object_speed_mps = abs(self.p.edge_speed_mps)

    def rig_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        return np.eye(3), np.zeros(3)

    def edge_x_at(self, t_s: float) -> float:
        return self.p.edge_x_m + self.p.edge_speed_mps * t_s

    def step_factor(self, t_s: float) -> float:
        f = 1.0
        for t_step, factor in sorted(self.p.steps):
            if t_s >= t_step:
                f = factor
        return f

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False, luminance: bool = False) -> RenderResult:
        p = self.p
        h, w = rays_cam.shape[:2]
        d = rays_cam.reshape(-1, 3).astype(np.float64) @ np.asarray(R_world_cam).T
        c = np.asarray(centre_world_m, dtype=np.float64)
        t = (p.distance_m - c[2]) / d[:, 2]
        x = c[0] + t * d[:, 0]
        y = c[1] + t * d[:, 1]
        # footprint of a pixel on the chart (from the ray spacing at the image centre)
        pix = float(abs(rays_cam[h // 2, min(w // 2 + 1, w - 1), 0] - rays_cam[h // 2, w // 2, 0]))
        fp = np.maximum(t * pix, 1e-9)
        rad = np.full(x.shape, p.background)
        if p.edge:
            cov = _box_coverage(x, self.edge_x_at(t_s), np.inf, fp)
            rad = rad + (p.bright - p.background) * cov
        if p.spot and t_s >= p.spot_on_s:
            sx, sy = p.spot_xy_m
            r = np.hypot(x - sx, y - sy)
            cov = np.clip((p.spot_radius_m - r) / fp + 0.5, 0.0, 1.0)
            rad = rad + (p.spot_radiance - p.background) * cov
        f = self.step_factor(t_s)
        if f != 1.0:
            if p.step_region_m is None:
                rad = rad * f
            else:
                x0, x1, y0, y1 = p.step_region_m
                cov = _box_coverage(x, x0, x1, fp) * _box_coverage(y, y0, y1, fp)
                rad = rad * (1.0 + (f - 1.0) * cov)
        rad = rad.reshape(h, w).astype(np.float32)
        out = rad if luminance else np.repeat(rad[:, :, None], 3, axis=2)
        if not want_labels:
            return RenderResult(out)
        return RenderResult(out, np.full((h, w), p.label, np.uint8),
                            t.reshape(h, w).astype(np.float32), np.zeros((h, w), np.uint16))

    def change_times(self, t0_s: float, t1_s: float) -> list[float]:
        """Times in (t0, t1] where the chart changes abruptly (steps, the spot lighting up)."""
        times = [t for t, _ in self.p.steps] + ([self.p.spot_on_s] if self.p.spot else [])
        return sorted(t for t in times if t0_s < t <= t1_s)

    def max_image_speed_px_s(self, poses: tuple, t0_s: float, t1_s: float, fx_px: float,
                             fov_tan: tuple[float, float]) -> float:
        return fx_px * abs(self.p.edge_speed_mps) / self.p.distance_m if self.p.edge else 0.0

    def describe(self) -> dict:
        return {"seed": self.seed, **asdict(self.p)}


def make_plane_scene(seed: int, **params) -> PlaneScene:
    return PlaneScene(seed, PlaneParams.from_dict(params))
