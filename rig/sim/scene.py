"""The procedural 2.5-D driving scene: a street with Cityscapes labels in HDR linear radiance.

What is in it (all generated from the seed, periodic along the road so it never ends):
road with lane markings and crosswalks, sidewalks, terrain, three layers of facades per side
(buildings with windows, vegetation, walls, fences), street lamps, trees, traffic signs and
lights, parked and moving cars, buses and trucks, pedestrians, cyclists and motorcyclists, the sky
with the sun; by night street lamps, headlights, tail lights and lit windows; optionally a tunnel
the ego car drives out of. The ego car drives along the road with a little sway, road-bump pitch
and optional camera shake. Rendering is done by the kernels in `rig.sim.render`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from rig.sim import render as rk
from rig.sim.scene_api import RenderResult, SceneFeatures

# Cityscapes train ids used here
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TLIGHT, TSIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)
IGNORE = 255


@dataclass
class DrivingParams:
    """Settings of the driving scene (every one can be passed as a scene parameter)."""

    time_of_day: str = "day"  # "day" | "night"
    speed_mps: float = 8.0  # ego speed along the road
    lane_x_m: float = 1.75  # ego lane centre
    cam_height_m: float = 1.4
    z_start_m: float = 0.0
    sway_m: float = 0.2  # slow lateral wander in the lane
    sway_hz: float = 0.05
    bump_pitch_deg: float = 0.12  # road bumps
    bump_hz: float = 1.3
    shake_yaw_deg: float = 0.0  # hand-held / loose-mount shake (motion blur scenario)
    shake_pitch_deg: float = 0.0
    shake_hz: float = 2.5
    moving_objects: bool = True  # cars, people, blinking traffic lights; False = frozen world
    sun_elevation_deg: float = 35.0
    sun_azimuth_deg: float = 55.0  # from straight ahead (+z) towards the right (+x)
    sun_irradiance: float = 5.0  # on a surface facing the sun (white diffuse -> radiance 5)
    sky_ambient: float = 1.0  # irradiance from the sky on a horizontal surface
    sun_radiance: float = 1.0e4
    clouds: float = 0.5
    shadows: bool = True
    tunnel: bool = False  # the ego car starts in a tunnel and drives out of it
    tunnel_exit_s: float = 2.0  # when the camera passes the exit
    tunnel_length_m: float = 200.0
    tunnel_lamp_irradiance: float = 0.03
    night_ambient: float = 2.0e-4
    lamp_intensity: float = 0.6  # street lamp: irradiance 0.6/r^2 below it (~0.015 at 6.4 m)
    lamp_spacing_m: float = 28.0
    headlight_intensity: float = 8.0  # ego low beams: ~0.03 on the road 15 m ahead
    window_lit_radiance: float = 0.05
    tail_light_radiance: float = 3.0
    headlight_radiance: float = 60.0
    traffic_light_radiance: float = 15.0
    lamp_head_radiance: float = 30.0
    # street lamps on the mains flicker at twice its frequency (50 Hz -> 100 Hz, 60 Hz -> 120 Hz):
    # light = mean x (1 + depth x cos(2 pi 2 mains_hz t + phase)), at night only; 0: steady
    mains_hz: float = 50.0
    lamp_flicker_depth: float = 0.3
    lamp_flicker_phase_deg: float = 0.0
    period_m: int = 1024  # the world repeats after this many metres
    crosswalk_period_m: float = 160.0
    people_per_100m: float = 8.0
    oncoming_cars_per_100m: float = 2.5
    parked_cars_per_100m: float = 7.0
    cyclists_per_100m: float = 0.8
    lead_car: bool = True
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> DrivingParams:
        known = {f for f in cls.__dataclass_fields__}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown driving-scene parameter(s) {bad}; known: {sorted(known)}")
        return cls(**d)


def _tileable_noise(rng: np.random.Generator, n: int = 256, sigma: float = 2.0) -> np.ndarray:
    """Smooth tileable noise in about [-1, 1] (white noise low-passed in Fourier space)."""
    white = rng.standard_normal((n, n))
    f = np.fft.fftfreq(n)
    g = np.exp(-2.0 * (math.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    smooth = np.real(np.fft.ifft2(np.fft.fft2(white) * g))
    smooth /= 2.5 * smooth.std()
    return np.clip(smooth, -1.0, 1.0).astype(np.float32)


class _ObjectList:
    def __init__(self) -> None:
        self.f: list[list[float]] = []
        self.i: list[list[int]] = []
        self.next_inst = 1

    def add(self, kind: int, cls: int, sub: int, box: tuple, color: tuple, *, inst: int = 0,
            vx: float = 0.0, vz: float = 0.0, amp: float = 0.0, omega: float = 0.0,
            phase: float = 0.0, param: float = 0.0, emit: int = rk.EMIT_NONE) -> None:
        row = [0.0] * rk.N_OBJ_F
        row[rk.OX0:rk.OZ1 + 1] = list(box)
        row[rk.OVX], row[rk.OVZ], row[rk.OAMP], row[rk.OOMEGA], row[rk.OPHASE] = vx, vz, amp, omega, phase
        row[rk.OR], row[rk.OG], row[rk.OB] = color
        row[rk.OPARAM] = param
        irow = [0] * rk.N_OBJ_I
        irow[rk.OKIND], irow[rk.OCLS], irow[rk.OSUB], irow[rk.OINST], irow[rk.OEMIT] = (
            kind, cls, sub, inst, emit)
        self.f.append(row)
        self.i.append(irow)

    def new_instance(self) -> int:
        self.next_inst += 1
        return self.next_inst - 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.f:
            return np.zeros((0, rk.N_OBJ_F)), np.zeros((0, rk.N_OBJ_I), np.int32)
        return np.array(self.f, dtype=np.float64), np.array(self.i, dtype=np.int32)


_BUILDING_COLOURS = ((0.45, 0.40, 0.32), (0.34, 0.34, 0.34), (0.40, 0.21, 0.15),
                     (0.58, 0.57, 0.54), (0.20, 0.20, 0.22), (0.50, 0.44, 0.36))
_CAR_COLOURS = ((0.55, 0.55, 0.56), (0.05, 0.05, 0.06), (0.45, 0.05, 0.04), (0.08, 0.12, 0.35),
                (0.6, 0.6, 0.6), (0.25, 0.25, 0.27), (0.5, 0.45, 0.3))


class DrivingScene:
    """A seeded procedural street; implements `rig.sim.scene_api.Scene`."""

    name = "driving"
    features = SceneFeatures(fast_render=True, tiles=True, object_motion=True, image_speed=True)

    def __init__(self, seed: int = 0, params: DrivingParams | None = None) -> None:
        self.seed = int(seed)
        self.p = params or DrivingParams()
        if self.p.time_of_day not in ("day", "night"):
            raise ValueError(f"time_of_day must be 'day' or 'night', not {self.p.time_of_day!r}")
        if self.p.period_m < 64 or self.p.period_m & (self.p.period_m - 1):
            raise ValueError(f"period_m must be a power of two >= 64, not {self.p.period_m}")
        rng = np.random.default_rng([self.seed, 0x5CE7E])
        self.noise = _tileable_noise(rng)
        self.plane_x = np.array([[-8.5, -22.0, -45.0], [10.0, 24.0, 47.0]])
        self._build_blocks(rng)
        self._build_objects(rng)
        self._prm_base = self._base_params()
        self._ctx_cache: dict[int, tuple] = {}
        self.max_object_speed_mps = 14.0 if self.p.moving_objects else 0.0
        p = self.p
        if p.mains_hz < 0 or not 0.0 <= p.lamp_flicker_depth <= 1.0:
            raise ValueError(f"mains_hz must be >= 0 and lamp_flicker_depth in [0, 1], not "
                             f"{p.mains_hz}, {p.lamp_flicker_depth}")
        lit = p.time_of_day == "night" and p.lamp_flicker_depth > 0
        self.flicker_hz = 2.0 * p.mains_hz if lit else 0.0
        self.flicker_depth = float(p.lamp_flicker_depth)
        if self.flicker_hz > 0:
            self.features = replace(DrivingScene.features, flicker=True)

    # ----- world generation -----
    def _build_blocks(self, rng: np.random.Generator) -> None:
        p = self.p
        ncell = int(p.period_m)
        cells = -np.ones((6, ncell), np.int32)
        blk_f: list[list[float]] = []
        blk_i: list[list[int]] = []
        # (type, class, height range, prob) per layer
        mix: list[list[tuple[int, int, tuple[float, float], float]]] = [
            [(rk.BT_BUILDING, BUILDING, (6, 22), 0.5), (rk.BT_VEG, VEGETATION, (2.0, 5.0), 0.2),
             (rk.BT_WALL, WALL, (1.5, 2.6), 0.1), (rk.BT_FENCE, FENCE, (1.2, 2.0), 0.08),
             (-1, 0, (0, 0), 0.12)],
            [(rk.BT_BUILDING, BUILDING, (10, 30), 0.72), (rk.BT_VEG, VEGETATION, (4, 9), 0.18),
             (-1, 0, (0, 0), 0.10)],
            [(rk.BT_BUILDING, BUILDING, (15, 45), 0.75), (rk.BT_VEG, VEGETATION, (8, 14), 0.25)],
        ]
        cp = p.crosswalk_period_m
        for side in range(2):
            for layer in range(3):
                z = 0
                choices = mix[layer]
                probs = np.array([c[3] for c in choices])
                probs = probs / probs.sum()
                while z < ncell:
                    length = int(rng.integers(8, 30))
                    c = choices[int(rng.choice(len(choices), p=probs))]
                    z1 = min(ncell, z + length)
                    if c[0] >= 0:
                        b = len(blk_f)
                        h = float(rng.uniform(*c[2]))
                        if c[0] == rk.BT_BUILDING:
                            col = np.array(_BUILDING_COLOURS[int(rng.integers(len(_BUILDING_COLOURS)))])
                            col = col * rng.uniform(0.8, 1.1)
                        elif c[0] == rk.BT_VEG:
                            col = np.array((0.06, 0.13, 0.04)) * rng.uniform(0.8, 1.2)
                        elif c[0] == rk.BT_WALL:
                            col = np.array((0.35, 0.34, 0.32)) * rng.uniform(0.7, 1.2)
                        else:
                            col = np.array((0.2, 0.22, 0.2)) * rng.uniform(0.7, 1.3)
                        wp = float(rng.uniform(2.6, 3.6))
                        blk_f.append([h, *col.tolist(), wp, float(rng.uniform(1.0, min(1.7, wp - 0.6))),
                                      float(rng.uniform(3.0, 3.4)), float(rng.uniform(1.3, 1.8)),
                                      float(rng.uniform(0.15, 0.5)), float(z)])
                        blk_i.append([c[0], c[1], int(rng.integers(1, 1 << 30))])
                        cells[side * 3 + layer, z:z1] = b
                    z = z1
            # side streets at crosswalks: a gap in the front layer
            if cp > 0:
                for zc in np.arange(0.0, ncell, cp):
                    cells[side * 3, int(zc) - 6 if zc >= 6 else 0:int(zc) + 12] = -1
        self.blk_cell = cells
        self.blk_f = np.array(blk_f, dtype=np.float32).reshape(-1, rk.N_BLK_F)
        self.blk_i = np.array(blk_i, dtype=np.int32).reshape(-1, rk.N_BLK_I)

    def _build_objects(self, rng: np.random.Generator) -> None:
        p = self.p
        L = float(p.period_m)
        ol = _ObjectList()
        moving = p.moving_objects
        box, bb = rk.KIND_BOX, rk.KIND_BILLBOARD
        grey = (0.32, 0.32, 0.33)
        # street lamps (their light is computed analytically in the kernel at the same places)
        for side, (pole_x, head_x) in enumerate(((-3.8, -2.8), (5.8, 4.8))):
            z0 = 5.0 + (0.5 * p.lamp_spacing_m if side == 0 else 0.0)
            for z in np.arange(z0, L, p.lamp_spacing_m):
                ol.add(box, POLE, rk.SUB_POLE,
                       (pole_x - 0.08, -6.6, z - 0.08, pole_x + 0.08, 0.0, z + 0.08), grey)
                lo, hi = sorted((pole_x, head_x))
                ol.add(box, POLE, rk.SUB_POLE, (lo, -6.62, z - 0.05, hi, -6.52, z + 0.05), grey)
                ol.add(box, POLE, rk.SUB_LAMP, (head_x - 0.3, -6.55, z - 0.15, head_x + 0.3, -6.4, z + 0.15),
                       (0.5, 0.5, 0.5))
        # trees along the terrain strips
        for tx in (-7.6, 9.2):
            z = float(rng.uniform(0, 10))
            while z < L:
                th = float(rng.uniform(2.2, 3.4))
                ol.add(box, VEGETATION, rk.SUB_PLAIN, (tx - 0.15, -th, z - 0.15, tx + 0.15, 0.0, z + 0.15),
                       (0.12, 0.09, 0.06))
                cw, ch = float(rng.uniform(2.8, 4.5)), float(rng.uniform(2.8, 4.2))
                col = np.array((0.06, 0.14, 0.04)) * rng.uniform(0.7, 1.3)
                ol.add(bb, VEGETATION, rk.SUB_CROWN,
                       (tx - cw / 2, -th - ch + 0.4, z, tx + cw / 2, -th + 0.4, z),
                       tuple(col), param=float(rng.uniform()))
                z += float(rng.uniform(12, 30))
        # traffic signs
        z = float(rng.uniform(10, 40))
        while z < L:
            sx = 6.1 if rng.uniform() < 0.7 else -4.1
            ol.add(box, POLE, rk.SUB_POLE, (sx - 0.04, -2.9, z - 0.04, sx + 0.04, 0.0, z + 0.04), grey)
            ol.add(bb, TSIGN, rk.SUB_SIGN, (sx - 0.35, -3.3, z - 0.06, sx + 0.35, -2.6, z - 0.06),
                   (0.7, 0.7, 0.7), param=float(rng.uniform()))
            z += float(rng.uniform(40, 110))
        # traffic lights at the crosswalks
        if p.crosswalk_period_m > 0:
            for zc in np.arange(0.0, L, p.crosswalk_period_m):
                phase = float(rng.uniform())
                for sx in (5.9, -3.9):
                    zl = zc - 1.0
                    ol.add(box, POLE, rk.SUB_POLE,
                           (sx - 0.07, -4.2, zl - 0.07, sx + 0.07, 0.0, zl + 0.07), grey)
                    ol.add(bb, TLIGHT, rk.SUB_TLIGHT, (sx - 0.18, -4.2, zl - 0.1, sx + 0.18, -3.2, zl - 0.1),
                           (0.03, 0.03, 0.03), param=phase)
        # parked cars in the parking lane
        z = float(rng.uniform(0, 10))
        step = 100.0 / max(p.parked_cars_per_100m, 1e-3)
        while z < L:
            if rng.uniform() < 0.85:
                self._add_car(ol, rng, x=4.5, z=z, vz=0.0, emit=rk.EMIT_NONE, kind="car")
            z += float(rng.uniform(5.2, 5.2 + 2 * (step - 5.2) if step > 5.2 else 6.0))
        # oncoming traffic
        n = int(L / 100.0 * p.oncoming_cars_per_100m)
        for z in np.sort(rng.uniform(0, L, n)):
            kind = rng.choice(["car", "car", "car", "car", "car", "car", "bus", "truck"])
            v = -float(rng.uniform(8, 13)) if moving else 0.0
            self._add_car(ol, rng, x=-1.75, z=float(z), vz=v, emit=rk.EMIT_HEAD, kind=str(kind))
        # lead cars in the ego lane (they keep their distance, more or less)
        if p.lead_car:
            for d, amp in ((17.0, 4.0), (42.0, 8.0)):
                self._add_car(ol, rng, x=p.lane_x_m, z=p.z_start_m + d, vz=p.speed_mps, emit=rk.EMIT_TAIL,
                              kind="car", amp=amp if moving else 0.0, omega=0.21 if moving else 0.0)
        # pedestrians on both sidewalks
        n = int(L / 100.0 * p.people_per_100m)
        for _ in range(n):
            sx = float(rng.uniform(6.0, 8.0)) if rng.uniform() < 0.5 else float(rng.uniform(-6.2, -4.0))
            z = float(rng.uniform(0, L))
            walk = rng.uniform() < 0.65 and moving
            v = float(rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 1.6)) if walk else 0.0
            h = float(rng.uniform(1.55, 1.9))
            w = 0.62 * h / 1.75
            clothes = tuple(rng.uniform(0.05, 0.6, 3).tolist())
            ol.add(bb, PERSON, rk.SUB_PERSON, (sx - w / 2, -h, z, sx + w / 2, 0.0, z), clothes,
                   inst=ol.new_instance(), vz=v, omega=abs(v) * 2.2 if walk else 0.0,
                   phase=float(rng.uniform(0, 6.28)))
        # cyclists at the right edge of the ego lane, motorcyclists in the oncoming lane
        n = int(L / 100.0 * p.cyclists_per_100m)
        for _ in range(n):
            z = float(rng.uniform(0, L))
            clothes = tuple(rng.uniform(0.05, 0.6, 3).tolist())
            if rng.uniform() < 0.7:
                v = float(rng.uniform(3.5, 6.0)) if moving else 0.0
                ol.add(bb, RIDER, rk.SUB_CYCLIST, (3.0 - 0.33, -1.75, z, 3.0 + 0.33, 0.0, z), clothes,
                       inst=ol.new_instance(), vz=v)
            else:
                v = -float(rng.uniform(8, 12)) if moving else 0.0
                ol.add(bb, RIDER, rk.SUB_MOTO, (-1.2 - 0.4, -1.6, z, -1.2 + 0.4, 0.0, z), clothes,
                       inst=ol.new_instance(), vz=v)
        self.obj_f, self.obj_i = ol.arrays()
        self.n_instances = ol.next_inst - 1

    def _add_car(self, ol: _ObjectList, rng: np.random.Generator, *, x: float, z: float, vz: float,
                 emit: int, kind: str, amp: float = 0.0, omega: float = 0.0) -> None:
        col = np.array(_CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))]) * rng.uniform(0.85, 1.1)
        inst = ol.new_instance()
        phase = float(rng.uniform(0, 6.28))
        kw: dict[str, Any] = dict(inst=inst, vz=vz, amp=amp, omega=omega, phase=phase)
        if kind == "bus":
            w, ln, h = 2.5, 11.0, 3.1
            ol.add(rk.KIND_BOX, BUS, rk.SUB_BUS, (x - w / 2, -h, z, x + w / 2, -0.25, z + ln),
                   (0.7, 0.6, 0.15), emit=emit, **kw)
            return
        if kind == "truck":
            w = 2.4
            ol.add(rk.KIND_BOX, TRUCK, rk.SUB_TRUCK, (x - w / 2, -2.6, z, x + w / 2, -0.3, z + 2.2),
                   tuple(col), emit=emit, **kw)
            ol.add(rk.KIND_BOX, TRUCK, rk.SUB_PLAIN, (x - w / 2, -3.4, z + 2.4, x + w / 2, -0.5, z + 8.5),
                   (0.7, 0.7, 0.68), **kw)
            return
        w = float(rng.uniform(1.7, 1.9))
        ln = float(rng.uniform(4.0, 4.8))
        hb = float(rng.uniform(0.85, 1.0))
        hc = float(rng.uniform(0.45, 0.6))
        ol.add(rk.KIND_BOX, CAR, rk.SUB_CAR_BODY, (x - w / 2, -hb, z, x + w / 2, -0.12, z + ln),
               tuple(col), emit=emit, **kw)
        ol.add(rk.KIND_BOX, CAR, rk.SUB_CAR_CABIN,
               (x - w / 2 + 0.12, -hb - hc, z + 0.25 * ln, x + w / 2 - 0.12, -hb, z + 0.8 * ln),
               tuple(col), **kw)

    def _base_params(self) -> np.ndarray:
        p = self.p
        prm = np.zeros(rk.N_PRM)
        day = p.time_of_day == "day"
        el, az = math.radians(p.sun_elevation_deg), math.radians(p.sun_azimuth_deg)
        sun = np.array([math.cos(el) * math.sin(az), -math.sin(el), math.cos(el) * math.cos(az)])
        prm[rk.SUN_X:rk.SUN_Z + 1] = sun
        prm[rk.SKY_AMB] = p.sky_ambient if day else 0.0
        prm[rk.SUN_E] = p.sun_irradiance if day else 0.0
        prm[rk.NIGHT] = 0.0 if day else 1.0
        prm[rk.AMB_NIGHT] = p.night_ambient
        prm[rk.LAMP_I] = p.lamp_intensity
        prm[rk.LAMP_SPACING] = p.lamp_spacing_m
        prm[rk.LAMP_Z0] = 5.0
        prm[rk.LAMP_H] = 6.4
        prm[rk.LAMP_XR], prm[rk.LAMP_XL] = 4.8, -2.8
        prm[rk.HEAD_I] = p.headlight_intensity
        if day:
            prm[rk.ZEN_R:rk.ZEN_B + 1] = np.array((0.35, 0.55, 1.1)) * p.sky_ambient
            prm[rk.HOR_R:rk.HOR_B + 1] = np.array((1.3, 1.4, 1.6)) * p.sky_ambient
        else:
            prm[rk.ZEN_R:rk.ZEN_B + 1] = (2e-4, 2.5e-4, 5e-4)
            prm[rk.HOR_R:rk.HOR_B + 1] = (1.6e-3, 1.2e-3, 0.9e-3)  # urban sky glow
        prm[rk.SUN_RAD] = p.sun_radiance
        prm[rk.SUN_COS] = math.cos(math.radians(0.27))
        prm[rk.GLOW] = 0.6 * p.sun_irradiance if day else 0.0
        prm[rk.CLOUDS] = p.clouds if day else 0.0
        prm[rk.SHADOWS] = 1.0 if (p.shadows and day) else 0.0
        if p.tunnel:
            z_exit = p.z_start_m + p.speed_mps * p.tunnel_exit_s
            prm[rk.TUN_ON] = 1.0
            prm[rk.TUN_Z0], prm[rk.TUN_Z1] = z_exit - p.tunnel_length_m, z_exit
            prm[rk.TUN_XL], prm[rk.TUN_XR], prm[rk.TUN_H] = -4.5, 6.0, 5.5
            prm[rk.TUN_E] = p.tunnel_lamp_irradiance
        prm[rk.WIN_LIT_E] = p.window_lit_radiance
        prm[rk.TAIL_RAD] = p.tail_light_radiance if not day else 0.6 * p.tail_light_radiance
        prm[rk.HEADL_RAD] = p.headlight_radiance if not day else 0.1 * p.headlight_radiance
        prm[rk.TL_RAD] = p.traffic_light_radiance
        prm[rk.LAMPHEAD_RAD] = p.lamp_head_radiance
        prm[rk.ROAD_L], prm[rk.ROAD_R] = -3.5, 5.5
        prm[rk.SW_L], prm[rk.SW_R] = -6.5, 8.5
        prm[rk.TERR_L], prm[rk.TERR_R] = -8.5, 10.0
        prm[rk.PERIOD] = float(p.period_m)
        prm[rk.CROSS_PERIOD] = p.crosswalk_period_m
        return prm

    # ----- Scene protocol -----
    def rig_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        w_sway = 2 * math.pi * p.sway_hz
        sway = p.sway_m if p.speed_mps > 0 else 0.0
        x = p.lane_x_m + sway * math.sin(w_sway * t_s)
        # heading follows the sway (the car steers), plus shake
        yaw = math.atan2(sway * w_sway * math.cos(w_sway * t_s), max(p.speed_mps, 1e-3))
        ws = 2 * math.pi * p.shake_hz
        yaw += math.radians(p.shake_yaw_deg) * math.sin(ws * t_s)
        wb = 2 * math.pi * p.bump_hz
        pitch = math.radians(p.bump_pitch_deg) * (math.sin(wb * t_s) + 0.5 * math.sin(2.7 * wb * t_s + 1.0))
        pitch += math.radians(p.shake_pitch_deg) * math.sin(1.37 * ws * t_s + 0.5)
        if p.speed_mps == 0.0:
            pitch = math.radians(p.shake_pitch_deg) * math.sin(1.37 * ws * t_s + 0.5)
        cy_, sy_ = math.cos(yaw), math.sin(yaw)
        cp, sp = math.cos(pitch), math.sin(pitch)
        r_yaw = np.array([[cy_, 0.0, sy_], [0.0, 1.0, 0.0], [-sy_, 0.0, cy_]])
        r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        centre = np.array([x, -p.cam_height_m, p.z_start_m + p.speed_mps * t_s])
        return r_yaw @ r_pitch, centre

    def _context(self, rays: np.ndarray) -> tuple:
        key = id(rays)
        ctx = self._ctx_cache.get(key)
        if ctx is None or ctx[0] is not rays:
            h, w = rays.shape[:2]
            ntx, nty = -(-w // rk.TILE), -(-h // rk.TILE)
            bounds = rk.tile_ray_bounds(rays, ntx, nty)
            cy, cx = h // 2, w // 2
            pix = float(abs(rays[cy, min(cx + 1, w - 1), 0] - rays[cy, cx, 0])) or 1e-3
            ctx = (rays, ntx, nty, bounds, pix)
            if len(self._ctx_cache) > 8:
                self._ctx_cache.clear()
            self._ctx_cache[key] = ctx
        return ctx

    def lamp_factor(self, t_s: float, window_s: tuple[float, float] | None = None) -> float:
        """The street lamps' light relative to its mean: at `t_s`, or averaged over `window_s`."""
        if self.flicker_hz <= 0:
            return 1.0
        w = 2.0 * math.pi * self.flicker_hz
        ph = math.radians(self.p.lamp_flicker_phase_deg)
        m = self.p.lamp_flicker_depth
        if window_s is not None and window_s[1] - window_s[0] > 1e-9:
            a, b = window_s
            return 1.0 + m * (math.sin(w * b + ph) - math.sin(w * a + ph)) / (w * (b - a))
        return 1.0 + m * math.cos(w * t_s + ph)

    def params_at(self, t_s: float, pix: float,
                  light_window_s: tuple[float, float] | None = None) -> np.ndarray:
        prm = self._prm_base.copy()
        if self.flicker_hz > 0:
            k = self.lamp_factor(t_s, light_window_s)
            prm[rk.LAMP_I] *= k
            prm[rk.LAMPHEAD_RAD] *= k
        R, c = self.rig_pose(t_s)
        origin = c + R @ np.array([0.0, 0.75, 0.3])
        d = R @ np.array([0.0, 0.07, 1.0])
        prm[rk.HEAD_OX:rk.HEAD_OZ + 1] = origin
        prm[rk.HEAD_DX:rk.HEAD_DZ + 1] = d / np.linalg.norm(d)
        prm[rk.PIX_ANGLE] = pix
        prm[rk.T_NOW] = t_s if self.p.moving_objects else 0.0
        return prm

    def render(self, rays_cam: np.ndarray, R_world_cam: np.ndarray, centre_world_m: np.ndarray,
               t_s: float, *, want_labels: bool = False, luminance: bool = False,
               labels_only: bool = False, tile_mask: np.ndarray | None = None,
               out: np.ndarray | None = None,
               light_window_s: tuple[float, float] | None = None) -> RenderResult:
        """Render along `rays_cam`; with `luminance=True` the radiance is (H, W) luminance (the
        event camera's fast path); with `labels_only=True` only labels, depth and instances are
        computed (radiance is an empty array). `tile_mask` (uint8 per 16x16 tile, row-major)
        renders only the tiles marked 1 into `out` (the rest of `out` is left as it was).
        `light_window_s`: flickering lamps averaged over that window (a frame's exposure)."""
        if labels_only:
            want_labels = True
        rays, ntx, nty, bounds, pix = self._context(rays_cam)
        h, w = rays.shape[:2]
        prm = self.params_at(t_s, pix, light_window_s)
        R = np.ascontiguousarray(R_world_cam, dtype=np.float64)
        C = np.ascontiguousarray(centre_world_m, dtype=np.float64)
        nmax = max(1, len(self.obj_f))
        vbox = np.empty((nmax, 10))
        vidx = np.empty(nmax, np.int32)
        tile_cnt = np.zeros(ntx * nty, np.int32)
        tile_list = np.empty((ntx * nty, rk.MAX_PER_TILE), np.int32)
        rk.bin_objects(prm, self.obj_f, self.obj_i, R, C, float(t_s), bounds, 250.0, vbox, vidx,
                       tile_cnt, tile_list)
        dummy2 = np.empty((1, 1), np.float32)
        rgb = dummy2.reshape(1, 1, 1) if (luminance or labels_only) else np.empty((h, w, 3), np.float32)
        lum = np.empty((h, w), np.float32) if (luminance and not labels_only) else dummy2
        if out is not None:
            if luminance and not labels_only and out.shape == (h, w) and out.dtype == np.float32:
                lum = out
            elif not luminance and not labels_only and out.shape == (h, w, 3):
                rgb = out
            else:
                raise ValueError(f"render: out must be float32 {(h, w) if luminance else (h, w, 3)}")
        if tile_mask is None:
            tile_mask = np.ones(ntx * nty, np.uint8)
        elif tile_mask.shape != (ntx * nty,):
            raise ValueError(f"render: tile_mask needs {ntx * nty} entries, not {tile_mask.shape}")
        if want_labels:
            label = np.empty((h, w), np.uint8)
            depth = np.empty((h, w), np.float32)
            inst = np.empty((h, w), np.uint16)
        else:
            label, depth, inst = np.empty((1, 1), np.uint8), dummy2, np.empty((1, 1), np.uint16)
        rk.render_kernel(rays, R, C, prm, self.noise, self.plane_x, self.blk_cell, self.blk_f,
                         self.blk_i, self.obj_f, self.obj_i, vbox, vidx, tile_cnt, tile_list, ntx,
                         tile_mask,
                         luminance, want_labels, labels_only, rgb, lum, label, depth, inst)
        if labels_only:
            return RenderResult(np.empty((0,), np.float32), label, depth, inst)
        return RenderResult(lum if luminance else rgb, label if want_labels else None,
                            depth if want_labels else None, inst if want_labels else None)

    def object_boxes_at(self, t_s: float, near_z_m: float) -> np.ndarray:
        """(N, 6) world boxes of all objects at time t, wrapped to the period nearest z."""
        f = self.obj_f
        zs = f[:, rk.OVZ] * t_s + f[:, rk.OAMP] * np.sin(f[:, rk.OOMEGA] * t_s + f[:, rk.OPHASE])
        xs = f[:, rk.OVX] * t_s
        boxes = np.stack([f[:, rk.OX0] + xs, f[:, rk.OY0], f[:, rk.OZ0] + zs,
                          f[:, rk.OX1] + xs, f[:, rk.OY1], f[:, rk.OZ1] + zs], axis=1)
        period = float(self.p.period_m)
        zc = 0.5 * (boxes[:, 2] + boxes[:, 5])
        shift = period * np.floor((zc - near_z_m) / period + 0.5)
        boxes[:, 2] -= shift
        boxes[:, 5] -= shift
        return boxes

    def max_image_speed_px_s(self, poses: tuple, t0_s: float, t1_s: float, fx_px: float,
                             fov_tan: tuple[float, float]) -> float:
        """Fastest image motion of any object corner in view between t0 and t1 (px/s), for a
        camera whose world poses at t0 and t1 are `poses` = ((R0, C0), (R1, C1))."""
        speed, _ = self.object_image_motion(poses, t0_s, t1_s, fx_px, fov_tan)
        return float(speed.max()) if len(speed) else 0.0

    def object_image_motion(self, poses: tuple, t0_s: float, t1_s: float, fx_px: float,
                            fov_tan: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Per object in view: image speed (px/s) and the box (x0, x1, y0, y1) in normalised
        image coordinates it covers at t0 and t1 (objects partly behind the camera: all)."""
        empty = (np.zeros(0), np.zeros((0, 4)))
        if len(self.obj_f) == 0 or t1_s <= t0_s:
            return empty
        (R0, C0), (R1, C1) = poses
        b0 = self.object_boxes_at(t0_s, C0[2])
        b1 = self.object_boxes_at(t1_s, C0[2])
        n = len(b0)
        sel = [(0, 3), (1, 4), (2, 5)]
        P0 = np.empty((8, n, 3))
        P1 = np.empty((8, n, 3))
        for c in range(8):
            idx = [sel[k][(c >> k) & 1] for k in range(3)]
            P0[c] = b0[:, idx]
            P1[c] = b1[:, idx]
        q0 = (P0 - C0) @ R0
        q1 = (P1 - C1) @ R1
        front = (q0[..., 2] > 0.3) & (q1[..., 2] > 0.3)  # (8, n)
        z0 = np.where(front, q0[..., 2], 1.0)
        z1 = np.where(front, q1[..., 2], 1.0)
        n0 = q0[..., :2] / z0[..., None]
        n1 = q1[..., :2] / z1[..., None]
        # only corners in view move the image (a corner beside the camera moves fast but unseen)
        inview = front & (((np.abs(n0[..., 0]) < fov_tan[0]) & (np.abs(n0[..., 1]) < fov_tan[1]))
                          | ((np.abs(n1[..., 0]) < fov_tan[0]) & (np.abs(n1[..., 1]) < fov_tan[1])))
        disp = np.where(inview, np.hypot(*(n1 - n0).transpose(2, 0, 1)), 0.0).max(axis=0)
        f2 = np.concatenate([front, front])
        allx = np.concatenate([n0[..., 0], n1[..., 0]])
        ally = np.concatenate([n0[..., 1], n1[..., 1]])
        box = np.stack([np.where(f2, allx, np.inf).min(0), np.where(f2, allx, -np.inf).max(0),
                        np.where(f2, ally, np.inf).min(0), np.where(f2, ally, -np.inf).max(0)], axis=1)
        # an object reaching behind the camera runs off the image on its side
        partly = front.any(axis=0) & ~front.all(axis=0)
        side_x = np.sign(q0[..., 0].mean(axis=0))
        side_y = np.sign(q0[..., 1].mean(axis=0))
        box[partly & (side_x < 0), 0] = -np.inf
        box[partly & (side_x > 0), 1] = np.inf
        box[partly & (side_y < 0), 2] = -np.inf
        box[partly & (side_y > 0), 3] = np.inf
        visible = front.any(axis=0) & (box[:, 1] > -fov_tan[0]) & (box[:, 0] < fov_tan[0]) & (
            box[:, 3] > -fov_tan[1]) & (box[:, 2] < fov_tan[1])
        speed = disp * fx_px / (t1_s - t0_s)
        return speed[visible], box[visible]

    def describe(self) -> dict:
        d = asdict(self.p)
        d["seed"] = self.seed
        d["n_objects"] = int(len(self.obj_f))
        return d


def make_scene(seed: int, **params) -> DrivingScene:
    """Scenario-table entry: a driving scene from keyword parameters."""
    return DrivingScene(seed, DrivingParams.from_dict(params))
