"""Scenes declare their optional features (`SceneFeatures`); the simulated rig asks a scene for
exactly what it declared: nothing undeclared is ever called, everything declared is used."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rig.sim.checkerboard import CheckerboardScene
from rig.sim.scene import DrivingScene
from rig.sim.scene_api import RenderResult, Scene, SceneFeatures
from rig.sim.testscenes import PlaneScene
from rig.sim.world import SimConfig, SimRig

SCALE = 0.125
OPTIONAL_METHODS = {"object_motion": "object_image_motion", "image_speed": "max_image_speed_px_s",
                    "change_times": "change_times"}


def _render_options(cls: Any) -> set[str]:
    return set(inspect.signature(cls.render).parameters)


@pytest.mark.parametrize("cls", [DrivingScene, CheckerboardScene, PlaneScene])
def test_declared_features_match_what_the_scene_implements(cls: Any) -> None:
    features: SceneFeatures = cls.features
    assert isinstance(features, SceneFeatures) and isinstance(cls.name, str)
    assert callable(cls.describe)
    for flag, method in OPTIONAL_METHODS.items():
        assert getattr(features, flag) == hasattr(cls, method), (cls.__name__, flag)
    options = _render_options(cls)
    assert features.fast_render == ({"luminance", "labels_only"} <= options)
    assert features.tiles == ({"luminance", "tile_mask", "out"} <= options)


def test_scene_features_are_frozen_and_off_by_default() -> None:
    features = SceneFeatures()
    assert not any(vars(features).values())
    with pytest.raises(AttributeError):
        features.tiles = True  # type: ignore[misc]


class StrictScene:
    """A grey wall declaring no optional feature: every optional call fails the simulation."""

    name = "strict"
    features = SceneFeatures()
    max_object_speed_mps = 0.0

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def rig_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        return np.eye(3), np.zeros(3)

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False, **options: Any) -> RenderResult:
        assert not options, f"undeclared render options asked for: {sorted(options)}"
        self.calls["render"] += 1
        h, w = rays_cam.shape[:2]
        grey = np.full((h, w, 3), 0.3 + 0.1 * np.sin(t_s), np.float32)
        if not want_labels:
            return RenderResult(grey)
        return RenderResult(grey, np.full((h, w), 255, np.uint8), np.full((h, w), 5.0, np.float32),
                            np.zeros((h, w), np.uint16))

    def describe(self) -> dict[str, Any]:
        return {"wall": "grey"}

    def object_image_motion(self, *args: Any) -> Any:
        raise AssertionError("object_image_motion called without features.object_motion")

    def max_image_speed_px_s(self, *args: Any) -> Any:
        raise AssertionError("max_image_speed_px_s called without features.image_speed")

    def change_times(self, *args: Any) -> Any:
        raise AssertionError("change_times called without features.change_times")


def _run(scene: Scene, tmp_path: Path, pulses: int = 2) -> SimRig:
    rig = SimRig(SimConfig(scenario=scene.name, scale=SCALE, seed=1), scene=scene)
    try:
        rig.attach_ground_truth(tmp_path)
        frames = rig.run_pulses(pulses)
    finally:
        rig.close()
    assert len(frames) == pulses
    return rig


def test_a_scene_without_features_is_never_asked_for_them(tmp_path: Path) -> None:
    scene = StrictScene()
    _run(scene, tmp_path)
    assert scene.calls["render"] > 0
    scenario = json.loads((tmp_path / "scenario.json").read_text())
    assert scenario["scene"] == "strict" and scenario["scene_params"] == {"wall": "grey"}


class _Recording:
    """Mixin counting the render options and optional methods the rig asks for (calls a scene
    makes to itself, e.g. driving's image-speed bound built on its object motion, not counted)."""

    calls: Counter[str]
    _inside = False

    def _count(self, name: str, method: Any, *args: Any, **kw: Any) -> Any:
        if self._inside:
            return method(*args, **kw)
        self.calls[name] += 1
        self._inside = True
        try:
            return method(*args, **kw)
        finally:
            self._inside = False

    def render(self, *args: Any, **kw: Any) -> RenderResult:
        if not self._inside:
            self.calls.update(k for k, v in kw.items()
                              if k != "want_labels" and v is not None and v is not False)
        return super().render(*args, **kw)  # type: ignore[misc]

    def object_image_motion(self, *args: Any) -> Any:
        return self._count("object_image_motion", super().object_image_motion, *args)  # type: ignore[misc]

    def max_image_speed_px_s(self, *args: Any) -> Any:
        return self._count("max_image_speed_px_s", super().max_image_speed_px_s, *args)  # type: ignore[misc]

    def change_times(self, *args: Any) -> Any:
        return self._count("change_times", super().change_times, *args)  # type: ignore[misc]


class RecordingDriving(_Recording, DrivingScene):
    def __init__(self, features: SceneFeatures) -> None:
        super().__init__(seed=2)
        self.features = features
        self.calls = Counter()


ALL_DRIVING = DrivingScene.features


@pytest.mark.parametrize(("features", "used", "unused"), [
    (ALL_DRIVING, {"luminance", "labels_only", "tile_mask", "out", "object_image_motion"},
     {"max_image_speed_px_s"}),  # per-object motion is the finer bound: the whole-view one is not needed
    (SceneFeatures(image_speed=True), {"max_image_speed_px_s"},
     {"luminance", "labels_only", "tile_mask", "out", "object_image_motion"}),
    (SceneFeatures(), set(),
     {"luminance", "labels_only", "tile_mask", "out", "object_image_motion", "max_image_speed_px_s"}),
], ids=["all", "image-speed-only", "none"])
def test_the_rig_uses_exactly_the_declared_features(features: SceneFeatures, used: set[str],
                                                      unused: set[str], tmp_path: Path) -> None:
    scene = RecordingDriving(features)
    _run(scene, tmp_path, pulses=1)
    assert {k for k in used if scene.calls[k] == 0} == set()
    assert {k for k in unused if scene.calls[k] > 0} == set()


class RecordingPlane(_Recording, PlaneScene):
    def __init__(self) -> None:
        super().__init__(seed=0)
        self.p.steps = [(0.03, 2.0)]
        self.calls = Counter()


def test_change_times_are_asked_for_when_declared(tmp_path: Path) -> None:
    scene = RecordingPlane()
    _run(scene, tmp_path, pulses=1)
    assert scene.calls["change_times"] > 0 and scene.calls["max_image_speed_px_s"] > 0
    assert scene.calls["luminance"] == 0  # the plane's luminance render is not the fast path
