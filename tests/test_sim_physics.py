"""Physics of the simulated rig, measured against what the simulator knows (small sensors).

Clipping above full well, motion blur proportional to exposure, noise-only events from a static
scene at the configured background rate, brightness steps giving events of the right polarity at
the right pixels, and each camera seeing the world through its own projection.
"""

from __future__ import annotations

import numpy as np
import pytest

from rig.sim.event_sensor import EventSensor, EventSensorParams
from rig.sim.frame_sensor import FrameSensor, FrameSensorParams
from rig.sim.world import SimConfig, SimRig

SCALE = 0.25  # frame 256x192, events 160x90


def plane_rig(scene_params: dict, *, exposure_us: float = 2000.0, pixel_format: str = "Mono8",
              event_params: dict | None = None, frame_params: dict | None = None,
              seed: int = 3) -> SimRig:
    return SimRig(SimConfig(scenario="plane", seed=seed, scale=SCALE, exposure_us=exposure_us,
                            pixel_format=pixel_format, scene_params=scene_params, keep_events=True,
                            event_params=event_params or {}, frame_params=frame_params or {}))


def true_us(rig: SimRig, t_device_us: np.ndarray) -> np.ndarray:
    c = rig.event_clock
    return (np.asarray(t_device_us, dtype=np.float64) - c.offset_us) / (1.0 + c.drift_ppm * 1e-6)


# ---------------------------------------------------------------- frame camera
def test_brighter_than_full_well_clips_to_255() -> None:
    sensor = FrameSensor(FrameSensorParams(), seed=1)
    rad = np.full((64, 64, 3), 0.1, np.float32)
    rad[:, 32:] = 50.0  # 50 x 1e6 e-/s x 2 ms = 100k e- >> 10.5k e- full well
    for fmt in ("BayerRG8", "RGB8", "Mono8"):
        img = sensor.expose(rad, 1, 2000.0, 0.0, fmt, frame_index=0)
        assert np.all(img[:, 32:] == 255), fmt
        assert img[:, :32].max() < 200, fmt


def test_clipping_through_the_rig() -> None:
    rig = plane_rig({"edge": True, "edge_x_m": 0.0, "background": 0.05, "bright": 40.0})
    try:
        frames = rig.run_pulses(1)
    finally:
        rig.close()
    img = frames[0].pixels
    w = img.shape[1]
    assert np.all(img[:, int(0.7 * w):] == 255)  # right of the edge: over full well
    assert img[:, : int(0.3 * w)].max() < 255 and img[:, : int(0.3 * w)].mean() < 100


def test_shot_and_read_noise_statistics() -> None:
    p = FrameSensorParams(gamma=1.0)
    sensor = FrameSensor(p, seed=2)
    # 0.5 radiance x 2 ms -> 1000 e- -> mean 1000 * 4095 / 10500 / 16 = 24.4 DN8 (linear)
    img = sensor.expose(np.full((200, 200, 3), 0.5, np.float32), 1, 2000.0, 18.0, "Mono8", 0)
    dn_per_e8 = 4095 / p.full_well_e * 10 ** (18 / 20) / 4095 * 255
    e = 1000.0 + p.dark_current_e_s * 2e-3
    assert img.mean() == pytest.approx(e * dn_per_e8, rel=0.03)
    expected_std = np.sqrt(e + p.read_noise_e ** 2) * dn_per_e8
    assert img.astype(float).std() == pytest.approx(expected_std, rel=0.15)


def _blur_width_px(img: np.ndarray) -> float:
    """10-90 % rise width of a dark-to-bright vertical edge, averaged over rows."""
    h = img.shape[0]
    prof = np.maximum.accumulate(img[h // 4: 3 * h // 4].astype(np.float64).mean(axis=0))
    lo, hi = np.percentile(prof, 2), np.percentile(prof, 98)
    a = lo + 0.1 * (hi - lo)
    b = lo + 0.9 * (hi - lo)
    x = np.arange(len(prof), dtype=np.float64)
    xa = np.interp(a, prof, x)  # the profile rises monotonically across the edge
    xb = np.interp(b, prof, x)
    return (xb - xa) / 0.8  # a linear ramp of width w spans 0.8 w between 10 % and 90 %


def test_moving_edge_blurs_in_proportion_to_exposure() -> None:
    speed_px_s = 1000.0
    widths = {}
    for exposure_us in (2000.0, 8000.0):
        rig = plane_rig({"edge": True, "edge_x_m": -0.05, "background": 0.2, "bright": 1.0},
                        exposure_us=exposure_us, frame_params={"gamma": 1.0, "read_noise_e": 0.5})
        fx = rig.geometry.frame.K[0, 0]
        rig.scene.p.edge_speed_mps = speed_px_s * rig.scene.p.distance_m / fx
        # exposure 2000 at 0.2 -> 400 e-; keep the signal similar for both exposures
        rig.scene.p.background *= 2000.0 / exposure_us
        rig.scene.p.bright *= 2000.0 / exposure_us
        try:
            frames = rig.run_pulses(1)
        finally:
            rig.close()
        widths[exposure_us] = _blur_width_px(frames[0].pixels)
    expected = {e: speed_px_s * e * 1e-6 for e in widths}  # 2 px and 8 px
    assert widths[8000.0] == pytest.approx(expected[8000.0], abs=1.2)
    assert widths[2000.0] == pytest.approx(expected[2000.0], abs=1.2)
    assert widths[8000.0] / widths[2000.0] == pytest.approx(4.0, rel=0.35)


# ---------------------------------------------------------------- event camera
def test_static_scene_gives_only_noise_events_at_the_configured_rate() -> None:
    ep = {"shot_noise_bright_hz": 2.0, "shot_noise_dark_hz": 20.0, "shot_noise_half_lum": 0.01,
          "leak_hz": 0.5}
    rig = plane_rig({"background": 0.3}, event_params=ep)
    try:
        rig.run_pulses(8)
        events, _ = rig.event_camera.kept_events()
        duration_s = rig.sim_time_s
        npx = rig.geometry.event.width * rig.geometry.event.height
    finally:
        rig.close()
    L = 0.3  # luminance of the chart everywhere
    shot = 2.0 + (20.0 - 2.0) * 0.01 / (L + 0.01)
    expected = npx * (shot + 0.5) * duration_s
    assert len(events) == pytest.approx(expected, rel=0.08)
    # ON share: leak (all ON) + half the shot noise
    assert events["p"].mean() == pytest.approx((0.5 + 0.5 * shot) / (shot + 0.5), abs=0.03)
    # noise is spread out as a Poisson process per pixel: variance / mean of the counts ~ 1
    counts = np.bincount(events["y"].astype(int) * rig.geometry.event.width + events["x"],
                         minlength=npx)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.1)


def test_static_driving_scene_is_noise_only() -> None:
    rig = SimRig(SimConfig(scenario="static", seed=5, scale=0.125, keep_events=True,
                           event_params={"shot_noise_bright_hz": 1.0, "leak_hz": 0.1}))
    try:
        rig.run_pulses(4)
        events, _ = rig.event_camera.kept_events()
        lum = rig.render_event_luminance(rig.t_us)
        duration_s = rig.sim_time_s
    finally:
        rig.close()
    p = rig.event_params
    shot = p.shot_noise_bright_hz + (p.shot_noise_dark_hz - p.shot_noise_bright_hz) * (
        p.shot_noise_half_lum / (lum + p.shot_noise_half_lum))
    expected = float((shot + p.leak_hz).sum() * duration_s)
    assert len(events) == pytest.approx(expected, rel=0.15, abs=15)


@pytest.mark.parametrize("factor, polarity", [(2.5, 1), (0.4, 0)])
def test_brightness_step_gives_events_of_the_right_polarity_at_the_right_pixels(
        factor: float, polarity: int) -> None:
    region = (-0.4, 0.3, -0.25, 0.2)  # metres on the chart at 2 m
    t_step_s = 0.05
    rig = plane_rig({"background": 0.5, "steps": [(t_step_s, factor)], "step_region_m": region},
                    event_params={"shot_noise_bright_hz": 0.05, "leak_hz": 0.0, "jitter_us": 0.0})
    try:
        rig.run_pulses(3)
        events, _ = rig.event_camera.kept_events()
    finally:
        rig.close()
    t = true_us(rig, events["t"])
    lat = rig.event_params.latency_us
    burst = events[(t >= t_step_s * 1e6) & (t < t_step_s * 1e6 + lat + 6000)]
    assert len(burst) > 500
    assert np.mean(burst["p"] == polarity) > 0.98
    # the region's outline seen by the event camera (its own projection of the chart)
    g = rig.geometry
    x0, x1, y0, y1 = region
    xs, ys = np.meshgrid(np.linspace(x0, x1, 50), np.linspace(y0, y1, 50))
    pts_fr = np.column_stack([xs.ravel(), ys.ravel(), np.full(xs.size, 2.0)])
    uv = g.sensor_to_lens("event", g.event.project(pts_fr @ g.R_ev_fr.T + g.T_ev_fr_m))
    u0, u1, v0, v1 = uv[:, 0].min(), uv[:, 0].max(), uv[:, 1].min(), uv[:, 1].max()
    inside = ((burst["x"] >= u0 - 1) & (burst["x"] <= u1 + 1)
              & (burst["y"] >= v0 - 1) & (burst["y"] <= v1 + 1))
    assert inside.mean() > 0.98
    # ... and nearly every pixel well inside the region fired
    hit = np.zeros((g.event.height, g.event.width), bool)
    hit[burst["y"], burst["x"]] = True
    core = hit[int(np.ceil(v0)) + 2:int(v1) - 1, int(np.ceil(u0)) + 2:int(u1) - 1]
    assert core.mean() > 0.97
    # nothing fires before the step (beyond noise) and nothing arrives before the latency
    assert (t[(events["p"] == polarity)] >= t_step_s * 1e6 + rig.event_params.min_latency_us).mean() > 0.97


def test_event_pixel_refractory_and_threshold_count() -> None:
    p = EventSensorParams(threshold_on=0.25, threshold_sigma=0.0, shot_noise_bright_hz=0.0,
                          shot_noise_dark_hz=0.0, leak_hz=0.0, jitter_us=0.0, refractory_us=0.0)
    s = EventSensor(4, 1, p, seed=0)
    s.reset(np.full((1, 4), 1.0, np.float32), 0.0)
    lum = np.full((1, 4), np.exp(1.05) * (1.0 + p.log_eps) - p.log_eps, np.float32)
    t, x, y, pol = s.step(lum, 10_000.0)
    # log intensity up by 1.05 with thresholds 0.25: 4 ON events per pixel, at the interpolated
    # crossing times
    assert len(t) == 16 and np.all(pol == 1)
    crossings = np.arange(1, 5) * 0.25 / 1.05 * 10_000.0
    assert np.allclose(np.sort(t[x == 0]) - p.latency_us, crossings, atol=5)
    p2 = EventSensorParams(threshold_on=0.25, threshold_sigma=0.0, shot_noise_bright_hz=0.0,
                           shot_noise_dark_hz=0.0, leak_hz=0.0, jitter_us=0.0, refractory_us=4000.0)
    s2 = EventSensor(4, 1, p2, seed=0)
    s2.reset(np.full((1, 4), 1.0, np.float32), 0.0)
    t2, x2, _, _ = s2.step(lum, 10_000.0)
    # the first crossing fires; the second waits for the refractory period to end; the third
    # would come after this sample: it is not lost but fires in the next step
    assert len(t2) == 8
    assert np.allclose(np.sort(t2[x2 == 0]) - p2.latency_us, [crossings[0], crossings[0] + 4000],
                       atol=5)
    t3, x3, _, _ = s2.step(lum, 20_000.0)
    assert np.allclose(np.sort(t3[x3 == 0]) - p2.latency_us,
                       [crossings[0] + 8000, crossings[0] + 12_000], atol=5)


def test_photoreceptor_bandwidth_makes_dark_events_late() -> None:
    p = EventSensorParams(threshold_sigma=0.0, shot_noise_bright_hz=0.0, shot_noise_dark_hz=0.0,
                          leak_hz=0.0, jitter_us=0.0)
    delays = {}
    for level in (1.0, 0.0005):
        s = EventSensor(1, 1, p, seed=0)
        s.reset(np.full((1, 1), level, np.float32), 0.0)
        ts = []
        for k in range(1, 400):
            t, *_ = s.step(np.full((1, 1), 2.0 * level, np.float32), k * 250.0)
            ts.extend(t.tolist())
        delays[level] = ts[0] - p.latency_us
    assert delays[1.0] < 600.0  # bright: within a sample or two
    assert delays[0.0005] > 3000.0  # dark: the low-pass lags by milliseconds


# ---------------------------------------------------------------- projections
def test_each_camera_sees_the_world_through_its_own_projection() -> None:
    spot = (0.21, -0.11)
    dist = 2.0
    rig = plane_rig({"background": 0.05, "spot": True, "spot_xy_m": spot, "spot_radius_m": 0.02,
                     "spot_radiance": 1.5, "spot_on_s": 0.03},
                    frame_params={"gamma": 1.0, "read_noise_e": 0.5},
                    event_params={"shot_noise_bright_hz": 0.1, "leak_hz": 0.0})
    try:
        frames = rig.run_pulses(2)
        events, _ = rig.event_camera.kept_events()
    finally:
        rig.close()
    g = rig.geometry
    assert g.mirror == "event"  # the README's rig: the EVK4 on the reflected arm
    P_fr = np.array([[spot[0], spot[1], dist]])
    uv_fr = g.frame.project(P_fr)[0]
    # the event sensor reads the lens's image out mirrored: x = W-1 - lens x
    uv_ev = g.sensor_to_lens("event", g.event.project(P_fr @ g.R_ev_fr.T + g.T_ev_fr_m))[0]
    # frame camera: intensity centroid of the spot
    img = frames[-1].pixels.astype(np.float64)
    img -= np.median(img)
    u, v = np.round(uv_fr).astype(int)
    win = np.clip(img[v - 15:v + 16, u - 15:u + 16], 0, None)
    yy, xx = np.mgrid[v - 15:v + 16, u - 15:u + 16]
    c_fr = np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])
    assert np.linalg.norm(c_fr - uv_fr) < 0.25
    # event camera: centroid of the ON events of the spot lighting up
    on = events[(events["p"] == 1) & (np.abs(events["x"] - uv_ev[0]) < 12)
                & (np.abs(events["y"] - uv_ev[1]) < 12)]
    assert len(on) > 100
    c_ev = np.array([on["x"].mean(), on["y"].mean()])
    assert np.linalg.norm(c_ev - uv_ev) < 0.35
    # ... which is not where a naive scaling of the frame pixel would put it
    naive = (uv_fr - g.frame.K[:2, 2]) * g.event.K[0, 0] / g.frame.K[0, 0] + g.event.K[:2, 2]
    assert np.linalg.norm(g.sensor_to_lens("event", naive)[0] - uv_ev) > 1.0
    assert np.linalg.norm(g.event.project(P_fr @ g.R_ev_fr.T + g.T_ev_fr_m)[0] - uv_ev) > 20


def _frame_of(optics: str | dict, scene: dict) -> tuple[np.ndarray, SimRig]:
    rig = SimRig(SimConfig(scenario="plane", seed=3, scale=SCALE, exposure_us=2000.0,
                           pixel_format="Mono8", scene_params=scene, optics=optics,
                           frame_params={"gamma": 1.0, "read_noise_e": 0.5}))
    try:
        return rig.run_pulses(1)[0].pixels.astype(np.float64), rig
    finally:
        rig.close()


def test_real_optics_halve_the_light_darken_the_corners_and_blur() -> None:
    """`--optics real` (rig.sim.lens): half the light per beam-splitter arm, cos^4 vignetting of
    each pixel's field angle, a 3.5 um Gaussian PSF; `ideal` leaves the render untouched."""
    flat = {"background": 0.6}
    ideal, _ = _frame_of("ideal", flat)
    real, rig = _frame_of("real", flat)
    h, w = ideal.shape
    centre = (slice(h // 2 - 8, h // 2 + 8), slice(w // 2 - 8, w // 2 + 8))
    assert real[centre].mean() / ideal[centre].mean() == pytest.approx(0.5, rel=0.06)
    corner = (slice(0, 12), slice(0, 12))
    rays = rig.rays_frame[0:12, 0:12]
    cos4 = float((1.0 / (1.0 + rays[..., 0] ** 2 + rays[..., 1] ** 2) ** 2).mean())
    measured = (real[corner].mean() / ideal[corner].mean()) / (real[centre].mean()
                                                               / ideal[centre].mean())
    assert measured == pytest.approx(cos4, rel=0.06) and cos4 < 0.85
    edge = {"edge": True, "edge_x_m": 0.0, "background": 0.1, "bright": 0.8}
    sharp, _ = _frame_of("ideal", edge)
    # this test's 256x192 sensor has 27.6 um pixels: a 3.5 um PSF is 0.13 px, so widen it
    blurred, rig = _frame_of({"psf_sigma_um": 30.0}, edge)
    sigma_px = rig.frame_optics.sigma_px
    assert 0.8 < sigma_px < 1.5
    # a Gaussian's 10-90 % width is 2.56 sigma; convolved with the sharp edge's own profile
    # the widths add between in quadrature (both Gaussian) and linearly (both ramps)
    w0, w1 = _blur_width_px(sharp), _blur_width_px(blurred)
    assert 0.9 * np.hypot(w0, 2.56 * sigma_px) <= w1 <= 1.1 * (w0 + 2.56 * sigma_px), (w0, w1)
