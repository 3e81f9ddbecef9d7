"""The scenario table: a name -> the scene to build and the camera settings that suit it.

Scenes are imported lazily by "module:function" (`function(seed, **params) -> Scene`), so a
scenario whose module is missing or slow to import costs nothing until it is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from rig.sim.scene_api import Scene


@dataclass(frozen=True)
class Scenario:
    name: str
    factory: str  # "package.module:function"
    description: str
    scene_params: dict[str, Any] = field(default_factory=dict)
    exposure_us: float = 1000.0
    gain_db: float = 0.0
    event_params: dict[str, Any] = field(default_factory=dict)
    frame_params: dict[str, Any] = field(default_factory=dict)


_DRIVING = "rig.sim.scene:make_scene"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("day", _DRIVING, "sunny street at 29 km/h, short exposure, moving traffic",
                 {}, exposure_us=1000.0),
        Scenario("night", _DRIVING,
                 "night street: street lamps, headlights, lit windows; long exposure, high gain, "
                 "noisy dark frames, fewer and later events",
                 {"time_of_day": "night", "speed_mps": 6.0}, exposure_us=20000.0, gain_db=12.0),
        Scenario("overexposed", _DRIVING,
                 "tunnel exit into low sun: exposure set for the tunnel, so the daylight clips "
                 "(about half the pixels at V > 0.9) while the events still see the street",
                 {"tunnel": True, "tunnel_exit_s": 1.5, "sun_elevation_deg": 7.0,
                  "sun_azimuth_deg": 8.0, "tunnel_lamp_irradiance": 0.15},
                 # 20 ms at +9 dB is 56x the day's exposure (a lamp-lit tunnel wall is ~1/10 of
                 # the street's radiance); 10 ms clipped little more than the sky
                 exposure_us=20000.0, gain_db=9.0),
        Scenario("motion_blur", _DRIVING,
                 "overcast dusk, fast driving on a shaky mount with a long exposure: blurred frames",
                 {"speed_mps": 15.0, "shake_yaw_deg": 0.8, "shake_pitch_deg": 0.4, "shake_hz": 2.5,
                  "sun_irradiance": 0.0, "sky_ambient": 0.25, "clouds": 0.8, "shadows": False},
                 exposure_us=12000.0, gain_db=6.0),
        Scenario("static", _DRIVING, "parked ego car in a frozen street: only noise events",
                 {"speed_mps": 0.0, "moving_objects": False}, exposure_us=1000.0),
        Scenario("checkerboard", "rig.sim.checkerboard:make_scene",
                 "blinking checkerboard at random poses (calibration)", {}, exposure_us=5000.0),
        Scenario("plane", "rig.sim.testscenes:make_plane_scene",
                 "a flat test chart in front of a still rig (edges, spots, brightness steps)",
                 {}, exposure_us=2000.0),
    )
}


def scenario_names() -> list[str]:
    return sorted(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(scenario_names())}") from None


def make_scene(scenario: Scenario, seed: int, params: dict[str, Any] | None = None) -> Scene:
    """Build the scenario's scene (scenario defaults overridden by `params`)."""
    module_name, _, func_name = scenario.factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"scenario {scenario.name!r} needs {module_name}, which cannot be "
                         f"imported: {exc}") from None
    factory = getattr(module, func_name)
    return factory(int(seed), **{**scenario.scene_params, **(params or {})})
