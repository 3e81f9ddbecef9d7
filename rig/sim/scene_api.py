"""What a simulated scene must provide, so that any scene (driving, checkerboard) can be seen by
both simulated cameras through their own optics.

Radiance is linear and high dynamic range, in units where a white diffuse surface under an
overcast daytime sky is 1.0 (direct sun on white ~ 5-10, the sun disk ~ 1e4, a night street lit
by lamps ~ 1e-3 .. 1e-2, headlights in view ~ 10-100).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass
class RenderResult:
    radiance: np.ndarray  # (H, W, 3) float32, linear RGB radiance
    label: np.ndarray | None = None  # (H, W) uint8 Cityscapes train ids, 255 = ignore
    depth_m: np.ndarray | None = None  # (H, W) float32 z-depth in the rendering camera's frame
    instance: np.ndarray | None = None  # (H, W) uint16 instance ids, 0 = none


@dataclass(frozen=True)
class SceneFeatures:
    """The optional parts of the scene API a scene implements: the simulator asks a scene for
    nothing it has not declared here (no probing of signatures or attributes)."""

    fast_render: bool = False
    """`render` takes `luminance=True` (radiance is (H, W) float32 luminance: the event camera's
    path) and `labels_only=True` (labels, depth and instances only, radiance empty): see
    `FastRenderScene`. Without it the rig converts RGB to luminance itself (Rec. 709 weights)."""

    tiles: bool = False
    """`render(..., luminance=True, tile_mask=, out=)` renders only the 16x16 tiles marked 1 into
    `out` (see `TiledScene`), so the event camera re-renders only the tiles whose content moves.
    Without it every sample renders the whole image."""

    object_motion: bool = False
    """`object_image_motion` gives each object's image speed and box (see `ObjectMotionScene`):
    the tiles an object crosses are sampled faster, the others are not."""

    image_speed: bool = False
    """`max_image_speed_px_s` bounds the image speed of moving content over the whole view (see
    `ImageSpeedScene`); used when `object_motion` is off."""

    change_times: bool = False
    """`change_times` lists abrupt changes (blinks, brightness steps) so the event camera gets a
    sample just before and one at each (see `ChangingScene`)."""

    flicker: bool = False
    """Light sources modulated at `flicker_hz` (mains-powered lamps): the event camera samples
    the tiles bright enough to see the flicker several times per cycle (the others get the
    mean light, `light_window_s` over a whole cycle), and frames pass
    `render(..., light_window_s=(t0, t1))` so the light is averaged exactly over each
    sub-sample's share of the exposure (see `FlickerScene`)."""


class Scene(Protocol):
    """A time-varying world, rendered along per-pixel rays of any camera.

    `features` declares which optional methods and render options (the protocols below) the
    scene has; `max_object_speed_mps` bounds how fast anything in it moves (metres per second),
    the rig's motion bound for scenes with neither `object_motion` nor `image_speed`.
    """

    name: str
    features: SceneFeatures
    max_object_speed_mps: float

    def rig_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Pose of the rig's reference (the frame camera) at time t: (R_world_cam (3, 3),
        camera centre in world coordinates (3,), metres)."""
        ...

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False) -> RenderResult:
        """Render along `rays_cam` ((H, W, 3) float32, camera frame, from `CameraModel.pixel_rays`)
        from the given camera pose at time t. Labels, depth and instances only if asked."""
        ...

    def describe(self) -> dict[str, Any]:
        """The scene's parameters (JSON-able), stored in ground_truth/scenario.json."""
        ...


class FastRenderScene(Scene, Protocol):
    """A scene with `features.fast_render`."""

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False, luminance: bool = False,
               labels_only: bool = False) -> RenderResult: ...


class TiledScene(Scene, Protocol):
    """A scene with `features.tiles`."""

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False, luminance: bool = False,
               tile_mask: np.ndarray | None = None, out: np.ndarray | None = None) -> RenderResult: ...


#: (R_world_cam, centre_world_m) of a camera at t0 and at t1
PosePair = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class ObjectMotionScene(Scene, Protocol):
    """A scene with `features.object_motion`."""

    def object_image_motion(self, poses: PosePair, t0_s: float, t1_s: float, fx_px: float,
                            fov_tan: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Per object in view between t0 and t1: image speed (px/s) and the box (x0, x1, y0, y1,
        normalised image coordinates) it covers, for a camera at `poses` with focal length
        `fx_px` and half field of view `fov_tan`."""
        ...


class ImageSpeedScene(Scene, Protocol):
    """A scene with `features.image_speed`."""

    def max_image_speed_px_s(self, poses: PosePair, t0_s: float, t1_s: float, fx_px: float,
                             fov_tan: tuple[float, float]) -> float:
        """Fastest image motion (px/s) of anything in view between t0 and t1."""
        ...


class ChangingScene(Scene, Protocol):
    """A scene with `features.change_times`."""

    def change_times(self, t0_s: float, t1_s: float) -> list[float]:
        """Times in (t0, t1] where the scene changes abruptly."""
        ...


class FlickerScene(Scene, Protocol):
    """A scene with `features.flicker`."""

    flicker_hz: float  # the light's modulation frequency (twice the mains frequency)
    flicker_depth: float  # its modulation depth, (max - min) / (max + min)

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False, luminance: bool = False,
               tile_mask: np.ndarray | None = None, out: np.ndarray | None = None,
               light_window_s: tuple[float, float] | None = None) -> RenderResult:
        """As `Scene.render` (and `TiledScene.render` when the scene has `tiles`), with the
        modulated light averaged over `light_window_s` (geometry still at `t_s`) instead of
        taken at `t_s`."""
        ...
