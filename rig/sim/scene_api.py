"""What a simulated scene must provide, so that any scene (driving, checkerboard) can be seen by
both simulated cameras through their own optics.

Radiance is linear and high dynamic range, in units where a white diffuse surface under an
overcast daytime sky is 1.0 (direct sun on white ~ 5-10, the sun disk ~ 1e4, a night street lit
by lamps ~ 1e-3 .. 1e-2, headlights in view ~ 10-100).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class RenderResult:
    radiance: np.ndarray  # (H, W, 3) float32, linear RGB radiance
    label: np.ndarray | None = None  # (H, W) uint8 Cityscapes train ids, 255 = ignore
    depth_m: np.ndarray | None = None  # (H, W) float32 z-depth in the rendering camera's frame
    instance: np.ndarray | None = None  # (H, W) uint16 instance ids, 0 = none


class Scene(Protocol):
    """A time-varying world, rendered along per-pixel rays of any camera."""

    name: str

    def rig_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Pose of the rig's reference (the frame camera) at time t: (R_world_cam (3, 3),
        camera centre in world coordinates (3,), metres)."""
        ...

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False) -> RenderResult:
        """Render along `rays_cam` ((H, W, 3) float32, camera frame, from `CameraModel.pixel_rays`)
        from the given camera pose at time t. Labels, depth and instances only if asked."""
        ...
