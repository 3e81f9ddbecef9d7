"""`SimRig`: the simulated world, its two cameras and trigger MCU, advanced by one sim thread.

Time: world time (true time, microseconds) is the simulator's own clock; the MCU counts it at
its oscillator's rate. The world only advances while the trigger runs: `trigger.start()` sets
the first pulse a short lead-in after the current world time and wakes the sim thread; each step
renders the event camera at the next sample time (adaptive: content moves at most ~1 px between
samples, halved around sudden brightness changes, several samples per cycle where lamps
flicker), steps the pixel model, feeds the MCU's pulses to the frame camera (exposure start =
edge on the wire + trigger delay + jitter) and to the event camera's trigger input (rising and
falling edge, stamped after a latency), renders frame sub-samples that fall in the step, and
delivers finished frames after their readout. After the last pulse a tail of two periods is
simulated, then the thread idles. Latencies, jitters, drifts and random losses:
`rig.sim.timing`.

The MCU, the event camera and the frame camera have their own clocks with offsets and drifts
(seeded, recorded in ground_truth/scenario.json). With `realtime=False` everything is
deterministic: the thread waits when the frame buffer is full. With `realtime=True` it is paced
to the wall clock and a full frame buffer drops the frame, as a real camera does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from rig.devices import Frame
from rig.sim.bookkeeping import raise_by_boxes, split_sort_events
from rig.sim.devices import SimEventCamera, SimFrameCamera, SimTrigger
from rig.sim.event_sensor import EventSensor, EventSensorParams
from rig.sim.frame_sensor import FrameSensor, FrameSensorParams
from rig.sim.groundtruth import GroundTruthWriter
from rig.sim.lens import OpticsParams, SensorOptics, pixel_pitch_um
from rig.sim.mcu import SimMCU
from rig.sim.optics import DEFAULT_MIRROR, LENS_FOCAL_MM, RigGeometry, default_rig
from rig.sim.render import TILE, tile_ray_bounds
from rig.sim.scenarios import Scenario, get_scenario, make_scene
from rig.sim.scene_api import (
    ChangingScene,
    FastRenderScene,
    FlickerScene,
    ImageSpeedScene,
    ObjectMotionScene,
    RenderResult,
    Scene,
    TiledScene,
)
from rig.sim.timing import PulseDraws, TimingParams, seeded_mcu_drift_ppm

THING_CLASSES = np.arange(11, 19)


@dataclass
class SimConfig:
    scenario: str = "day"  # day | night | overexposed | motion_blur | static | checkerboard | plane
    seed: int = 0
    full_res: bool = False
    exposure_us: float | None = None  # None = the scenario's default
    pixel_format: str = "BayerRG8"  # or "RGB8" / "Mono8"
    realtime: bool = False  # False: deterministic, blocks on a full frame buffer; True: wall-clock
    drop_frames: frozenset[int] = frozenset()  # pulse indices: exposed, lost in transport
    incomplete_frames: frozenset[int] = frozenset()  # delivered with incomplete=True
    missed_triggers: frozenset[int] = frozenset()  # the frame camera ignores that pulse
    duplicate_trigger_edges: frozenset[int] = frozenset()  # extra edge pair after that rising edge
    missing_trigger_edges: frozenset[int] = frozenset()  # event camera misses both edges
    scene_params: dict = field(default_factory=dict)
    # --- beyond the recorder's contract (defaults leave it unchanged) ---
    scale: float = 1.0  # scale both sensors (tests use small ones)
    geometry: RigGeometry | None = None  # explicit rig (overrides full_res and scale)
    # the camera on the beam splitter's reflected arm, whose sensor sees a mirror image: "event"
    # (the README's rig), "frame" or "none"; None: the explicit geometry's own, else "event"
    mirror: str | None = None
    # what the lenses and the beam splitter do to the light (rig.sim.lens): "ideal" (nothing),
    # "real" (50 % per arm, cos^4 vignetting, 3.5 um PSF) or a dict of OpticsParams fields
    optics: str | dict | None = None
    event_params: dict = field(default_factory=dict)  # EventSensorParams overrides
    frame_params: dict = field(default_factory=dict)  # FrameSensorParams overrides
    keep_events: bool = False  # debug hook: keep emitted events in memory (event_camera.kept)
    lead_in_us: int = 20_000  # world time between trigger start and the first pulse
    max_px_per_sample: float = 3.0  # event camera: motion between two rendered samples
    event_dt_min_us: int = 50
    event_dt_max_us: int = 5_000  # the fastest tile is sampled at least this often
    tile_dt_max_us: int = 30_000  # ... and every tile at least this often
    flush_interval_us: int = 20_000  # how often events go to the raw file (sim time)
    # latencies, jitters, clock drifts, random losses (rig.sim.timing.TimingParams overrides)
    timing: dict = field(default_factory=dict)
    flicker_samples_per_cycle: int = 8  # event-camera samples per cycle of flickering lamps


def create_sim_rig(**options: Any) -> SimRig:
    """The simulated rig from `SimConfig` fields (what the device registry's "rig"/"sim" entry
    calls, so the recorder reaches the simulator without importing it)."""
    return SimRig(SimConfig(**options))


@dataclass
class DeviceClock:
    """A device's free-running clock: t_device = offset + t_true * (1 + drift_ppm * 1e-6)."""

    offset_us: float
    drift_ppm: float

    @property
    def rate(self) -> float:
        """Device microseconds per true microsecond."""
        return 1.0 + self.drift_ppm * 1e-6

    def us(self, t_true_us: np.ndarray | float) -> np.ndarray:
        return np.floor(self.offset_us + np.asarray(t_true_us, dtype=np.float64)
                        * self.rate).astype(np.int64)

    def ns(self, t_true_us: float) -> int:
        return int(np.floor((self.offset_us + t_true_us * self.rate) * 1000.0))


@dataclass
class _PulseTruth:
    """What really happened to one pulse (true times in us), for ground_truth/triggers.csv."""

    index: int
    rise_us: float  # the physical rising edge on the wire
    t_mcu_us: int  # what the MCU reports for it (its compare time, its own clock)
    t_edge_stamped_us: int  # the event camera's EXT_TRIGGER stamp, -1 when it missed the edge
    t_exposure_us: float | None = None  # exposure start, None when the camera did not expose
    frame_id: int = -1


@dataclass
class _Exposure:
    pulse: int
    frame_id: int
    t_start_us: float
    exposure_us: float
    gain_db: float
    pixel_format: str
    n: int
    drop: bool
    incomplete: bool
    serial: int
    truth: _PulseTruth | None = None
    next_i: int = 0
    acc: np.ndarray | None = None
    label: np.ndarray | None = None
    instance: np.ndarray | None = None
    depth_event: np.ndarray | None = None

    def t_sub(self, i: int) -> float:
        return self.t_start_us + (i + 0.5) * self.exposure_us / self.n

    @property
    def t_end_us(self) -> float:
        return self.t_start_us + self.exposure_us


_RAYS_CACHE: dict[tuple, np.ndarray] = {}


def camera_rays(geometry: RigGeometry, name: str) -> np.ndarray:
    """`geometry.sensor_rays(name)`, cached per camera model and mirroring (computing them takes a
    second at 1024x768)."""
    cam = geometry.camera(name)
    key = (cam.width, cam.height, cam.K.tobytes(), cam.dist.tobytes(), geometry.mirror == name)
    rays = _RAYS_CACHE.get(key)
    if rays is None:
        rays = np.ascontiguousarray(geometry.sensor_rays(name))
        if len(_RAYS_CACHE) > 8:
            _RAYS_CACHE.clear()
        _RAYS_CACHE[key] = rays
    return rays


def _coarse(rays: np.ndarray, target: int = 40) -> np.ndarray:
    step = max(1, rays.shape[1] // target)
    return np.ascontiguousarray(rays[step // 2::step, step // 2::step])


class SimRig:
    """The simulated coaxial rig: a scene, two cameras behind a beam splitter, a trigger MCU."""

    def __init__(self, config: SimConfig, *, scene: Scene | None = None) -> None:
        self.config = config
        if scene is None:
            self.scenario = get_scenario(config.scenario)
        else:
            try:
                self.scenario = get_scenario(config.scenario)
            except ValueError:
                self.scenario = Scenario(config.scenario, "", "custom scene")
        geometry = config.geometry or default_rig(config.full_res)
        if config.geometry is None and config.scale != 1.0:
            geometry = RigGeometry(geometry.frame.scaled(config.scale),
                                   geometry.event.scaled(config.scale),
                                   geometry.R_ev_fr, geometry.T_ev_fr_m)
        if config.mirror is not None or config.geometry is None:
            geometry = geometry.with_mirror(config.mirror or DEFAULT_MIRROR)
        self.geometry = geometry
        self.scene = scene if scene is not None else make_scene(
            self.scenario, config.seed, config.scene_params)
        self.event_params = EventSensorParams.from_dict(
            {**self.scenario.event_params, **config.event_params})
        self.frame_params = FrameSensorParams.from_dict(
            {**self.scenario.frame_params, **config.frame_params})
        self.default_exposure_us = float(config.exposure_us or self.scenario.exposure_us)
        self.default_gain_db = float(self.scenario.gain_db)

        rng = np.random.default_rng([int(config.seed), 0xC10C])
        self.event_clock = DeviceClock(float(rng.integers(1_000_000, 9_000_000)),
                                       float(rng.normal(0.0, 15.0)))
        self.frame_clock = DeviceClock(float(rng.integers(10**8, 10**9)), float(rng.normal(0.0, 25.0)))
        self.timing = tp = TimingParams.from_dict(config.timing)
        if tp.event_drift_ppm is not None:
            self.event_clock.drift_ppm = float(tp.event_drift_ppm)
        if tp.frame_drift_ppm is not None:
            self.frame_clock.drift_ppm = float(tp.frame_drift_ppm)
        # the MCU's oscillator: MCU time = true time x rate (both count from the simulator's 0)
        self.mcu_clock = DeviceClock(0.0, float(tp.mcu_drift_ppm) if tp.mcu_drift_ppm is not None
                                     else seeded_mcu_drift_ppm(config.seed, tp.mcu_drift_max_ppm))

        # what each sensor reads out: a mirrored camera's rays reversed left-right
        self.rays_frame = camera_rays(geometry, "frame")
        self.rays_event = camera_rays(geometry, "event")
        self.optics = OpticsParams.from_any(config.optics)
        self.frame_optics = SensorOptics(self.optics, self.rays_frame,
                                         pixel_pitch_um(geometry.frame, LENS_FOCAL_MM))
        self.event_optics = SensorOptics(self.optics, self.rays_event,
                                         pixel_pitch_um(geometry.event, LENS_FOCAL_MM))
        self._coarse_event = _coarse(self.rays_event)
        self.fx_event = float(geometry.event.K[0, 0])
        self.fx_frame = float(geometry.frame.K[0, 0])
        self.event_sensor = EventSensor(*geometry.event.size, self.event_params, config.seed)
        # per-tile sampling: each 16x16 tile of the event camera is rendered at its own pace
        es = self.event_sensor
        ys = np.minimum(np.arange(es.nty) * TILE + TILE // 2, geometry.event.height - 1)
        xs = np.minimum(np.arange(es.ntx) * TILE + TILE // 2, geometry.event.width - 1)
        self._tile_rays = np.ascontiguousarray(self.rays_event[ys][:, xs])
        self._tile_bounds = np.ascontiguousarray(tile_ray_bounds(self.rays_event, es.ntx, es.nty),
                                                 dtype=np.float64)
        # half-extent of the event camera's view (normalised image coordinates), with a margin
        self._fov = (float(np.abs(self.rays_event[..., 0]).max()) * 1.05,
                     float(np.abs(self.rays_event[..., 1]).max()) * 1.05)
        self._tile_dt = np.full(es.ntx * es.nty, float(config.tile_dt_max_us))
        # flickering lamps: the tiles that can see it are sampled several times per light cycle
        self.flicker_hz = (float(cast(FlickerScene, self.scene).flicker_hz)
                           if self.scene.features.flicker else 0.0)
        self._flicker_dt_us = (1e6 / (max(1, config.flicker_samples_per_cycle) * self.flicker_hz)
                               if self.flicker_hz > 0 else np.inf)
        self._flicker_step_us = np.inf  # the step the flickering tiles need now (inf: none)
        # tiles that follow the flicker (uint8 per tile; None without flicker): all at first
        self._flicker_mask: np.ndarray | None = (np.ones(len(self._tile_dt), np.uint8)
                                                 if self.flicker_hz > 0 else None)
        self._lum_buf = np.zeros((geometry.event.height, geometry.event.width), np.float32)
        self.frame_sensor = FrameSensor(self.frame_params, config.seed)

        self.mcu = SimMCU()
        self.trigger = SimTrigger(self)
        self.event_camera = SimEventCamera(self)
        self.frame_camera = SimFrameCamera(self)

        self._lock = threading.RLock()  # sim state shared with device calls
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Event()
        self._idle.set()
        self.closed = False
        self.error: BaseException | None = None
        self.t_us = 0  # world (true) time, integer microseconds at step boundaries
        self._running = False  # a trigger run (incl. its tail) is being simulated
        self._tail_end_us: float | None = None
        self._last_fall_us = 0.0
        self._exposures: list[_Exposure] = []
        self._deliveries: list[tuple[float, _Exposure, np.ndarray | None]] = []
        self._pend_t: list[np.ndarray] = []
        self._pend_x: list[np.ndarray] = []
        self._pend_y: list[np.ndarray] = []
        self._pend_p: list[np.ndarray] = []
        self._pend_tr: list[tuple[float, int, int]] = []
        self._last_flush_us = 0.0
        self._px_speed_event = 0.0
        self._motion_valid_until = -1.0
        self._serial = 0
        self._run_no = 0  # trigger runs started (keys the per-pulse random draws)
        self.pulse_log: list[tuple[int, float, float]] = []  # (index, rise, fall) on the wire, true us
        self._gt: GroundTruthWriter | None = None
        self._wall0 = 0.0
        self._sim0 = 0.0
        self.stats = {"event_samples": 0, "event_resamples": 0, "tiles_rendered": 0,
                      "frame_subsamples": 0, "trigger_edges_dropped": 0, "frames_dropped_random": 0,
                      "triggers_missed_random": 0,
                      "frames_exposed": 0, "frames_delivered": 0, "frames_lost_buffer": 0,
                      "events_generated": 0, "event_overflow": 0, "render_s": 0.0,
                      "events_s": 0.0, "frames_s": 0.0}
        self._thread = threading.Thread(target=self._run, name="sim-rig", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API
    @property
    def sim_time_s(self) -> float:
        return self.t_us * 1e-6

    def mcu_us(self, t_true_us: float) -> int:
        """What the MCU's clock shows (in whole microseconds) at true time `t_true_us`."""
        return int(np.floor(float(t_true_us) * self.mcu_clock.rate))

    def true_us_of_mcu(self, t_mcu_us: float) -> float:
        """The true time at which the MCU's clock shows `t_mcu_us`."""
        return float(t_mcu_us) / self.mcu_clock.rate

    def attach_ground_truth(self, gt_dir: str | Path) -> None:
        """Write ground_truth/ into `gt_dir` while running (call before the trigger starts)."""
        with self._lock:
            if self._gt is not None:
                self._gt.close()
            self._gt = GroundTruthWriter(gt_dir, self.geometry, self.describe())

    def describe(self) -> dict[str, Any]:
        """Scenario, parameters, seed and clocks (what ground_truth/scenario.json holds)."""
        c = self.config
        return {
            "scenario": c.scenario, "description": self.scenario.description, "seed": c.seed,
            "scene": self.scene.name, "scene_params": self.scene.describe(),
            "full_res": c.full_res, "scale": c.scale, "mirror": self.geometry.mirror,
            "optics": self.optics.to_dict(),
            "default_exposure_us": self.default_exposure_us, "default_gain_db": self.default_gain_db,
            "event_sensor": self.event_params.to_dict(), "frame_sensor": self.frame_params.to_dict(),
            "clocks": {"true": "world time, us (the MCU counts it at its own rate)",
                       "mcu": {"offset_us": self.mcu_clock.offset_us,
                               "drift_ppm": self.mcu_clock.drift_ppm},
                       "event_camera": {"offset_us": self.event_clock.offset_us,
                                        "drift_ppm": self.event_clock.drift_ppm},
                       "frame_camera": {"offset_us": self.frame_clock.offset_us,
                                        "drift_ppm": self.frame_clock.drift_ppm}},
            "timing": {**self.timing.to_dict(),
                       "frame_trigger_delay_us": self.frame_params.trigger_delay_us},
            "faults": {k: sorted(getattr(c, k)) for k in (
                "drop_frames", "incomplete_frames", "missed_triggers", "duplicate_trigger_edges",
                "missing_trigger_edges")},
            "realtime": c.realtime, "lead_in_us": c.lead_in_us,
        }

    def raw_header_extra(self) -> dict[str, str]:
        extra = {"serial_number": "SIM-EVK4-0001", "sim_scenario": self.config.scenario,
                 "sim_seed": str(self.config.seed)}
        if not self.config.realtime:
            extra["date"] = "2000-01-01 00:00:00"  # deterministic bytes for a deterministic run
        return extra

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until the trigger run and its tail are simulated (not while the trigger runs)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.closed or self.error is not None:
                return False
            if self.mcu.running:
                return False
            if self._idle.wait(0.05):
                with self._lock:
                    if not self._running and not self.mcu.running:
                        return True
        return False

    def close(self) -> None:
        """Stop the sim thread and close the ground truth files."""
        with self._lock:
            self.closed = True
            self._wake.notify_all()
        with self.frame_camera._cond:
            self.frame_camera._cond.notify_all()
        self._thread.join(timeout=30.0)
        with contextlib.suppress(Exception):
            self.event_camera.stop_recording()
        with self._lock:
            if self._gt is not None:
                self._gt.close()
                self._gt = None

    def run_until_idle(self, timeout_s: float = 600.0) -> None:
        """Block until the current trigger run is simulated (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError("simulation failed") from self.error
            if self.wait_idle(0.2):
                return
        raise TimeoutError("simulation did not finish in time")

    def run_pulses(self, count: int, rate_hz: float = 20.0, width_us: int = 1000,
                   timeout_s: float = 600.0) -> list[Frame]:
        """Run the trigger for `count` pulses, grabbing every frame, until the tail is simulated
        (tests, benchmarks: what a recorder does, minus the files)."""
        from rig.devices import GrabTimeout, TriggerSettings

        self.frame_camera.open()
        self.event_camera.open()
        self.trigger.open()
        self.trigger.configure(TriggerSettings(rate_hz=rate_hz, width_us=width_us, count=count))
        if not self.frame_camera.acquiring:
            self.frame_camera.start()
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout_s
        self.trigger.start()
        while time.monotonic() < deadline:
            try:
                frames.append(self.frame_camera.grab(0.05))
                continue
            except GrabTimeout:
                pass
            if self.error is not None:
                raise RuntimeError("simulation failed") from self.error
            with self._lock:
                busy = self._running or self.mcu.running
            if not busy:
                break
        else:
            raise TimeoutError(f"simulation of {count} pulses did not finish in {timeout_s} s")
        while True:  # frames delivered at the very end
            try:
                frames.append(self.frame_camera.grab(0.0))
            except GrabTimeout:
                break
        return frames

    # ------------------------------------------------------------------ trigger hooks
    def _before_trigger_start(self) -> None:
        with self._lock:
            # the first pulse comes a lead-in after the present world time
            self.mcu.advance_to(self.mcu_us(self.t_us + self.config.lead_in_us))

    def _after_trigger_start(self) -> None:
        with self._lock:
            self._begin_run()
            self._wake.notify_all()

    def _begin_run(self) -> None:
        if not self._running:
            self._running = True
            self._idle.clear()
            self._tail_end_us = None
            self._wall0 = time.monotonic()
            self._sim0 = float(self.t_us)
            self._run_no += 1
            if self._gt is not None:
                self._gt.restart_pulses()

    # ------------------------------------------------------------------ sim thread
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self.closed and not self._running:
                        if self.mcu.running:  # started by protocol lines, not our trigger
                            self._begin_run()
                            break
                        self._idle.set()
                        self._wake.wait(0.05)
                    if self.closed:
                        return
                self._step()
        except BaseException as exc:  # surfaced by run_until_idle / the devices
            self.error = exc
            self._running = False
            self._idle.set()
            raise

    def _render(self, rays: np.ndarray, R: np.ndarray, C: np.ndarray, t_us: float, *,
                want_labels: bool = False, luminance: bool = False,
                light_window_us: tuple[float, float] | None = None) -> RenderResult:
        t0 = time.perf_counter()
        if luminance and self.scene.features.fast_render:
            res = cast(FastRenderScene, self.scene).render(rays, R, C, t_us * 1e-6,
                                                           want_labels=want_labels, luminance=True)
        elif light_window_us is not None:
            res = cast(FlickerScene, self.scene).render(
                rays, R, C, t_us * 1e-6, want_labels=want_labels,
                light_window_s=(light_window_us[0] * 1e-6, light_window_us[1] * 1e-6))
        else:
            res = self.scene.render(rays, R, C, t_us * 1e-6, want_labels=want_labels)
            if luminance:
                rad = res.radiance
                res.radiance = (0.2126 * rad[..., 0] + 0.7152 * rad[..., 1]
                                + 0.0722 * rad[..., 2]).astype(np.float32)
        self.stats["render_s"] += time.perf_counter() - t0
        return res

    def _labels_render(self, rays: np.ndarray, R: np.ndarray, C: np.ndarray,
                       t_us: float) -> RenderResult:
        """Labels, depth and instances along `rays` (shading skipped where the scene can)."""
        if self.scene.features.fast_render:
            return cast(FastRenderScene, self.scene).render(rays, R, C, t_us * 1e-6, labels_only=True)
        return self._render(rays, R, C, t_us, want_labels=True, luminance=True)

    def event_pose(self, t_us: float) -> tuple[np.ndarray, np.ndarray]:
        """World pose (R_world_cam, centre) of the event camera at true time t."""
        R_wf, c_f = self.scene.rig_pose(t_us * 1e-6)
        g = self.geometry
        R_we = R_wf @ g.R_ev_fr.T
        c_e = c_f - R_wf @ (g.R_ev_fr.T @ g.T_ev_fr_m)
        return R_we, c_e

    def frame_pose(self, t_us: float) -> tuple[np.ndarray, np.ndarray]:
        return self.scene.rig_pose(t_us * 1e-6)

    def render_event_luminance(self, t_us: float, tile_mask: np.ndarray | None = None) -> np.ndarray:
        """Luminance reaching the event sensor at t, through the optics (only the tiles in
        `tile_mask` are fresh when the scene renders by tiles). With flickering lamps, the tiles
        sampled too seldom to follow the flicker (`_flicker_tiles`) see the lamps' mean light:
        a sample at a random phase of the cycle would alias it into spurious events."""
        R, C = self.event_pose(t_us)
        if self.scene.features.tiles and (tile_mask is not None or self._flicker_mask is not None):
            t0 = time.perf_counter()
            mask = (np.ones(len(self._tile_dt), np.uint8) if tile_mask is None
                    else np.asarray(tile_mask, np.uint8))
            parts: list[tuple[np.ndarray, tuple[float, float] | None]] = [(mask, None)]
            if self._flicker_mask is not None:
                t_s = t_us * 1e-6
                parts = [(mask & self._flicker_mask, None),
                         (mask & (1 - self._flicker_mask), (t_s, t_s + 1.0 / self.flicker_hz))]
            for m, window in parts:
                if not m.any():
                    continue
                if window is None:
                    cast(TiledScene, self.scene).render(self.rays_event, R, C, t_us * 1e-6,
                                                        luminance=True, tile_mask=m, out=self._lum_buf)
                else:
                    cast(FlickerScene, self.scene).render(
                        self.rays_event, R, C, t_us * 1e-6, luminance=True, tile_mask=m,
                        out=self._lum_buf, light_window_s=window)
            self.stats["render_s"] += time.perf_counter() - t0
            self.stats["tiles_rendered"] += int(mask.sum())
            return self.event_optics.apply(self._lum_buf)
        self.stats["tiles_rendered"] += len(self._tile_dt)
        return self.event_optics.apply(
            self._render(self.rays_event, R, C, t_us, luminance=True).radiance)

    def _tile_speeds(self, t_us: float) -> np.ndarray:
        """Fastest image motion (event-camera px/s) per tile around t: the static world from a
        depth render at the tile centres and the camera's motion, objects from the scene."""
        d_us = 5000.0
        rays = self._tile_rays
        nty, ntx = rays.shape[:2]
        R0, C0 = self.event_pose(t_us)
        R1, C1 = self.event_pose(t_us + d_us)
        res = self._labels_render(rays, R0, C0, t_us)
        if res.depth_m is None:
            return np.zeros(nty * ntx)
        depth = np.where(np.isfinite(res.depth_m), res.depth_m, 1e4).reshape(-1, 1).astype(np.float64)
        r = rays.reshape(-1, 3).astype(np.float64)
        P = C0 + depth * (r @ R0.T)
        q = (P - C1) @ R1
        z = np.maximum(q[:, 2:3], 1e-3)
        flow = np.hypot(*(q[:, :2] / z - r[:, :2]).T) * self.fx_event / (d_us * 1e-6)
        # a tile moves as fast as its neighbourhood (content flows in from next door)
        f = np.pad(flow.reshape(nty, ntx), 1, mode="edge")
        v = np.max([f[dy:dy + nty, dx:dx + ntx] for dy in range(3) for dx in range(3)], axis=0)
        v = v.reshape(-1)
        fov = self._fov
        features = self.scene.features
        if features.object_motion:
            motion_scene = cast(ObjectMotionScene, self.scene)
            v = np.ascontiguousarray(v, dtype=np.float64)
            for ta in (t_us, t_us + 15_000.0):
                poses = (self.event_pose(ta), self.event_pose(ta + d_us))
                speed, box = motion_scene.object_image_motion(poses, ta * 1e-6, (ta + d_us) * 1e-6,
                                                              self.fx_event, fov)
                if len(speed):
                    raise_by_boxes(v, np.ascontiguousarray(box, dtype=np.float64),
                                   np.ascontiguousarray(speed, dtype=np.float64), self._tile_bounds)
        elif features.image_speed:
            poses = (self.event_pose(t_us), self.event_pose(t_us + d_us))
            v = v + cast(ImageSpeedScene, self.scene).max_image_speed_px_s(
                poses, t_us * 1e-6, (t_us + d_us) * 1e-6, self.fx_event, fov)
        else:
            vobj = float(self.scene.max_object_speed_mps)
            lab = res.label.reshape(-1) if res.label is not None else None
            things = np.isin(lab, THING_CLASSES) if lab is not None else np.ones(len(depth), bool)
            if vobj > 0.0 and things.any():
                v = v + float((self.fx_event * vobj / np.maximum(depth[things, 0], 0.5)).max())
        return v

    def _choose_dt(self, t0: float) -> int:
        """Global step (the fastest tile's interval); refreshes the per-tile intervals."""
        c = self.config
        if t0 >= self._motion_valid_until:
            v = self._tile_speeds(t0)
            self._px_speed_event = float(v.max()) if len(v) else 0.0
            with np.errstate(divide="ignore"):
                dt = np.where(v > 0, c.max_px_per_sample / np.maximum(v, 1e-9) * 1e6, np.inf)
            self._tile_dt = np.clip(dt, c.event_dt_min_us, c.tile_dt_max_us)
            self._flicker_step_us = np.inf
            if self.flicker_hz > 0:
                fl = self._flicker_tiles()
                self._flicker_mask = fl.astype(np.uint8)
                if fl.any():
                    self._flicker_step_us = max(float(c.event_dt_min_us), self._flicker_dt_us)
                    self._tile_dt[fl] = np.minimum(self._tile_dt[fl], self._flicker_step_us)
            self._motion_valid_until = t0 + 20_000.0
        speed = self._px_speed_event
        step_us = c.event_dt_max_us if speed <= 0 else c.max_px_per_sample / speed * 1e6
        return int(min(c.event_dt_max_us, self._flicker_step_us, max(c.event_dt_min_us, step_us)))

    def _flicker_tiles(self) -> np.ndarray:
        """Tiles bright enough for the lamps' flicker to get through the photoreceptor with a
        log amplitude of at least a quarter of the contrast threshold (as if all their light
        came from the lamps, so never too few): those are sampled `flicker_samples_per_cycle`
        times per cycle; the flicker in the others stays far below an event."""
        es = self.event_sensor
        if es.t_us is None:
            return np.ones(es.ntx * es.nty, bool)
        p = self.event_params
        h, w = es.lp.shape
        lp = np.full((es.nty * TILE, es.ntx * TILE), -np.inf, np.float32)
        lp[:h, :w] = es.lp
        top = lp.reshape(es.nty, TILE, es.ntx, TILE).max(axis=(1, 3)).reshape(-1)
        lum = np.maximum(np.exp(top.astype(np.float64)) - p.log_eps, 0.0)
        fc = p.cutoff_max_hz * lum / (lum + p.cutoff_half_lum) + p.cutoff_min_hz
        m = min(float(cast(FlickerScene, self.scene).flicker_depth), 0.999)
        amp = 0.5 * np.log((1.0 + m) / (1.0 - m)) / np.sqrt(1.0 + (self.flicker_hz / fc) ** 2)
        return amp >= 0.25 * min(p.threshold_on, p.threshold_off)

    def _step(self) -> None:
        c = self.config
        sensor = self.event_sensor
        if sensor.t_us is None:
            sensor.reset(self.render_event_luminance(self.t_us), self.t_us)
        t0 = self.t_us
        dt = self._choose_dt(t0)
        if self._tail_end_us is not None:
            dt = max(1, min(dt, int(np.ceil(self._tail_end_us - t0))))
        t1 = t0 + dt
        all_due = not self.scene.features.tiles
        if self.scene.features.change_times:
            # an abrupt change (blink, step) gets a sample just before and one at it
            changes = cast(ChangingScene, self.scene).change_times(t0 * 1e-6, t1 * 1e-6)
            if changes:
                tc = int(np.ceil(changes[0] * 1e6 - 1e-6))
                t1 = tc - 1 if tc - 1 > t0 else max(tc, t0 + 1)
                dt = t1 - t0
                all_due = True
        if self._tail_end_us is not None and t1 >= self._tail_end_us:
            all_due = True  # the run ends with every pixel at the same time
        if all_due:
            mask = None
        else:
            mask = ((t1 - sensor.tile_t + 0.5 * dt) >= self._tile_dt).astype(np.uint8)
        lum = self.render_event_luminance(t1, mask)
        limit = 2.0  # a light switching, a blink: not an edge moving a few pixels
        while dt > c.event_dt_min_us and sensor.big_change_fraction(lum, limit, mask) > 0.05:
            dt = max(c.event_dt_min_us, dt // 2)
            t1 = t0 + dt
            lum = self.render_event_luminance(t1, mask)
            self.stats["event_resamples"] += 1
        # trigger pulses whose compare match comes before t1 (MCU clock)
        for index, rise, fall in self.mcu.advance_to(self.mcu_us(t1)):
            self._on_pulse(index, rise, fall)
        # events
        tk = time.perf_counter()
        et, ex, ey, ep = sensor.step(lum, float(t1), mask)
        self.stats["events_s"] += time.perf_counter() - tk
        self.stats["event_samples"] += 1
        self.stats["events_generated"] += len(et)
        self.stats["event_overflow"] = sensor.overflow
        with self._lock:
            if len(et):
                self._pend_t.append(et)
                self._pend_x.append(ex)
                self._pend_y.append(ey)
                self._pend_p.append(ep)
        # frame exposures
        self._advance_exposures(float(t1))
        self._deliver_due(float(t1))
        self.t_us = t1
        # end of the trigger run: a tail, then idle
        with self._lock:
            if not self.mcu.running and self._tail_end_us is None:
                period = 1e9 / max(self.mcu.rate_mhz, 1)
                last = max([self._last_fall_us] + [e.t_end_us for e in self._exposures])
                self._tail_end_us = max(float(t1), last + self.frame_params.readout_us) + 2 * period
            done = (self._tail_end_us is not None and t1 >= self._tail_end_us
                    and not self._exposures and not self._deliveries)
        if t1 - self._last_flush_us >= c.flush_interval_us or done:
            self._flush_events()
        if done:
            with self._lock:
                self._running = False
                self._tail_end_us = None
        if c.realtime:
            ahead = self._wall0 + (t1 - self._sim0) * 1e-6 - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    # ----- trigger pulses -----
    def _on_pulse(self, index: int, rise_mcu: int, fall_mcu: int) -> None:
        """One MCU pulse (compare times on the MCU clock): the edges on the wire, the event
        camera's EXT_TRIGGER stamps, the frame camera's exposure (rig.sim.timing)."""
        c = self.config
        tp = self.timing
        draws = PulseDraws.draw(c.seed, self._run_no, index)
        rise = self.true_us_of_mcu(rise_mcu + tp.mcu_rise_latency_us
                                   + tp.mcu_edge_jitter_us * draws.rise_jitter)
        fall = self.true_us_of_mcu(fall_mcu + tp.mcu_fall_latency_us
                                   + tp.mcu_edge_jitter_us * draws.fall_jitter)
        self.pulse_log.append((index, rise, fall))
        self._last_fall_us = max(self._last_fall_us, fall)
        ch = self.event_camera.trigger_channel
        lat = tp.event_trigger_latency_us
        stamp = -1
        with self._lock:
            if ch is not None and index not in c.missing_trigger_edges:
                if draws.rise_drop >= tp.trigger_edge_drop_rate:
                    self._pend_tr.append((rise + lat, ch, 1))
                    stamp = int(self.event_clock.us(rise + lat))
                else:
                    self.stats["trigger_edges_dropped"] += 1
                if index in c.duplicate_trigger_edges:  # a glitch just after the edge
                    self._pend_tr.append((rise + lat + 5.0, ch, 1))
                    self._pend_tr.append((rise + lat + 8.0, ch, 0))
                if draws.fall_drop >= tp.trigger_edge_drop_rate:
                    self._pend_tr.append((fall + lat, ch, 0))
                else:
                    self.stats["trigger_edges_dropped"] += 1
        truth = _PulseTruth(index, rise, int(rise_mcu), stamp)
        cam = self.frame_camera
        fp = self.frame_params
        t_start = rise + fp.trigger_delay_us + tp.frame_trigger_jitter_us * draws.frame_jitter
        missed = index in c.missed_triggers
        if not missed and draws.missed_trigger < tp.missed_trigger_rate:
            missed = True
            self.stats["triggers_missed_random"] += 1
        if not cam.acquiring or missed:
            self._gt_pulse(truth, self.frame_clock.ns(t_start), False, False)
            return
        truth.t_exposure_us = t_start
        truth.frame_id = cam._take_frame_id()
        drop = index in c.drop_frames
        if not drop and draws.frame_drop < tp.frame_drop_rate:
            drop = True
            self.stats["frames_dropped_random"] += 1
        s = cam.settings
        v_frame = self._px_speed_event * self.fx_frame / self.fx_event
        n = self.frame_sensor.subsamples(v_frame, s.exposure_us)
        self._serial += 1
        self._exposures.append(_Exposure(index, truth.frame_id, float(t_start), float(s.exposure_us),
                                         float(s.gain_db), s.pixel_format, n, drop,
                                         index in c.incomplete_frames, self._serial, truth))
        self.stats["frames_exposed"] += 1

    def _gt_pulse(self, truth: _PulseTruth, t_frame_ns: int, delivered: bool,
                  incomplete: bool) -> None:
        """One row of ground_truth/triggers.csv (true times, and what each device recorded)."""
        if self._gt is None:
            return
        ev = self.event_clock

        def ev_ns(t: float) -> int:
            return int(round((ev.offset_us + t * ev.rate) * 1000.0))

        t_exp = truth.t_exposure_us
        self._gt.pulse(truth.index, int(round(truth.rise_us)), int(ev.us(truth.rise_us)), t_frame_ns,
                       delivered, incomplete,
                       t_true_ns=int(round(truth.rise_us * 1000.0)), t_event_clock_ns=ev_ns(truth.rise_us),
                       t_edge_stamped_us=truth.t_edge_stamped_us,
                       t_exposure_true_ns=-1 if t_exp is None else int(round(t_exp * 1000.0)),
                       t_exposure_event_clock_ns=-1 if t_exp is None else ev_ns(t_exp),
                       t_mcu_us=truth.t_mcu_us, frame_id=truth.frame_id)

    def _advance_exposures(self, t1: float) -> None:
        finished = []
        for ex in self._exposures:
            while ex.next_i < ex.n and ex.t_sub(ex.next_i) <= t1:
                i = ex.next_i
                ts = ex.t_sub(i)
                mid = i == ex.n // 2
                want = mid and self._gt is not None
                R, C = self.frame_pose(ts)
                # flickering light is integrated exactly over the sub-sample's share of the exposure
                window = ((ex.t_start_us + i * ex.exposure_us / ex.n,
                           ex.t_start_us + (i + 1) * ex.exposure_us / ex.n)
                          if self.flicker_hz > 0 else None)
                res = self._render(self.rays_frame, R, C, ts, want_labels=want, light_window_us=window)
                tk = time.perf_counter()
                if ex.acc is None:
                    ex.acc = np.array(res.radiance, dtype=np.float32, copy=True)
                else:
                    ex.acc += res.radiance
                self.stats["frames_s"] += time.perf_counter() - tk
                if want:
                    fh, fw = self.geometry.frame.height, self.geometry.frame.width
                    ex.label = res.label if res.label is not None else np.full((fh, fw), 255, np.uint8)
                    ex.instance = (res.instance if res.instance is not None
                                   else np.zeros((fh, fw), np.uint16))
                    Re, Ce = self.event_pose(ts)
                    rev = self._labels_render(self.rays_event, Re, Ce, ts)
                    eh, ew = self.geometry.event.height, self.geometry.event.width
                    ex.depth_event = (rev.depth_m if rev.depth_m is not None
                                      else np.full((eh, ew), np.inf, np.float32))
                ex.next_i += 1
                self.stats["frame_subsamples"] += 1
            if ex.next_i >= ex.n:
                finished.append(ex)
        for ex in finished:
            self._exposures.remove(ex)
            assert ex.acc is not None  # n >= 1 sub-samples were accumulated
            tk = time.perf_counter()
            pixels = self.frame_sensor.expose(self.frame_optics.apply(ex.acc), ex.n,
                                              ex.exposure_us, ex.gain_db, ex.pixel_format,
                                              ex.serial)
            if ex.incomplete:
                pixels[int(0.6 * pixels.shape[0]):] = 0
            self.stats["frames_s"] += time.perf_counter() - tk
            ex.acc = None
            if self._gt is not None and ex.label is not None:
                assert ex.instance is not None and ex.depth_event is not None  # set with the label
                self._gt.frame(ex.pulse, 0.5 * (ex.t_start_us + ex.t_end_us), ex.label, ex.instance,
                               ex.depth_event)
            self._deliveries.append((ex.t_end_us + self.frame_params.readout_us, ex, pixels))

    def _deliver_due(self, t1: float) -> None:
        due = [d for d in self._deliveries if d[0] <= t1]
        if not due:
            return
        self._deliveries = [d for d in self._deliveries if d[0] > t1]
        for _, ex, pixels in due:
            ok = False
            if not ex.drop and pixels is not None:
                frame = Frame(pixels, ex.frame_id, self.frame_clock.ns(ex.t_start_us), 0,
                              ex.exposure_us, ex.gain_db, ex.incomplete, ex.pixel_format)
                ok = self.frame_camera._deliver(frame, block=not self.config.realtime)
                if ok:
                    self.stats["frames_delivered"] += 1
                else:
                    self.stats["frames_lost_buffer"] += 1
            if ex.truth is not None:
                self._gt_pulse(ex.truth, self.frame_clock.ns(ex.t_start_us), ok, ex.incomplete and ok)

    # ----- events to the event camera -----
    def _flush_events(self, final: bool = False) -> None:
        """Hand events and trigger edges older than the watermark (all, if final) to the camera,
        sorted by device time."""
        from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE

        with self._lock:
            sensor_t = self.event_sensor.oldest_t_us if self.event_sensor.t_us is not None else 0.0
            wm = np.inf if final else min(float(self.t_us), sensor_t)
            if self._pend_t:
                t = np.concatenate(self._pend_t).astype(np.float64, copy=False)
                x = np.concatenate(self._pend_x).astype(np.uint16, copy=False)
                y = np.concatenate(self._pend_y).astype(np.uint16, copy=False)
                p = np.concatenate(self._pend_p).astype(np.uint8, copy=False)
            else:
                t = np.empty(0)
                x = y = np.empty(0, np.uint16)
                p = np.empty(0, np.uint8)
            td, sx, sy, sp, kt, kx, ky, kp = split_sort_events(  # device time = DeviceClock.us
                t, x, y, p, float(wm), float(self.event_clock.offset_us), self.event_clock.rate)
            self._pend_t, self._pend_x, self._pend_y, self._pend_p = [kt], [kx], [ky], [kp]
            ev = np.empty(len(td), EVENT_DTYPE)
            ev["t"] = td
            ev["x"] = sx
            ev["y"] = sy
            ev["p"] = sp
            trs = sorted((tr for tr in self._pend_tr if tr[0] < wm), key=lambda r: r[0])
            self._pend_tr = [tr for tr in self._pend_tr if tr[0] >= wm]
            trig = np.empty(len(trs), TRIGGER_DTYPE)
            if trs:
                trig["t"] = self.event_clock.us(np.array([r[0] for r in trs]))
                trig["id"] = [r[1] for r in trs]
                trig["value"] = [r[2] for r in trs]
            self._last_flush_us = float(self.t_us)
            self.event_camera._emit_events(ev, trig, self.t_us * 1e-6)
