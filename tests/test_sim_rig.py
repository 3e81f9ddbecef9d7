"""The simulated rig as devices: protocols, trigger edges and faults, ground truth, determinism,
and the driving scenarios (small sensors, a few pulses each)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from rig.devices import EventCamera, FrameCamera, TriggerController
from rig.geometry import RigGeometry
from rig.ground_truth import GroundTruth
from rig.sim.scenarios import SCENARIOS, get_scenario
from rig.sim.world import SimConfig, SimRig

SMALL = 0.125  # frame 128x96, events 80x45


def small_rig(**kw) -> SimRig:
    kw.setdefault("scale", SMALL)
    kw.setdefault("keep_events", True)
    return SimRig(SimConfig(**kw))


def test_devices_implement_the_protocols() -> None:
    rig = small_rig()
    try:
        assert isinstance(rig.event_camera, EventCamera)
        assert isinstance(rig.frame_camera, FrameCamera)
        assert isinstance(rig.trigger, TriggerController)
        assert (rig.event_camera.width, rig.event_camera.height) == rig.geometry.event.size
        assert (rig.frame_camera.width, rig.frame_camera.height) == rig.geometry.frame.size
        assert rig.default_exposure_us == get_scenario("day").exposure_us
    finally:
        rig.close()


def test_default_sizes_and_full_res() -> None:
    for full, ev, fr in ((False, (640, 360), (1024, 768)), (True, (1280, 720), (2048, 1536))):
        rig = SimRig(SimConfig(scenario="plane", full_res=full))
        try:
            assert rig.geometry.event.size == ev and rig.geometry.frame.size == fr
        finally:
            rig.close()


def test_trigger_edges_frames_and_faults() -> None:
    rig = small_rig(seed=2, drop_frames=frozenset({2}), incomplete_frames=frozenset({3}),
                    missed_triggers=frozenset({4}), duplicate_trigger_edges=frozenset({5}),
                    missing_trigger_edges=frozenset({6}))
    try:
        frames = rig.run_pulses(9)
        events, triggers = rig.event_camera.kept_events()
    finally:
        rig.close()
    # frames: pulse 2 exposed but lost (its id is skipped), pulse 4 ignored (no id used)
    assert [f.frame_id for f in frames] == [0, 1, 3, 4, 5, 6, 7]
    assert [f.incomplete for f in frames] == [False, False, True, False, False, False, False]
    inc = frames[2].pixels
    assert np.all(inc[int(0.6 * inc.shape[0]):] == 0) and inc[: inc.shape[0] // 2].any()
    assert all(f.pixels.shape == rig.geometry.frame.size[::-1] for f in frames)  # BayerRG8
    # trigger edges: one rising + falling per pulse, minus pulse 6, plus a glitch pair after 5
    rising = triggers[triggers["value"] == 1]
    falling = triggers[triggers["value"] == 0]
    assert len(rising) == 9 - 1 + 1 and len(falling) == 9 - 1 + 1
    assert np.all(np.diff(triggers["t"]) >= 0) and np.all(triggers["id"] == 0)
    # edge stamps are the edges on the wire (true time) through the event camera's clock, after
    # its trigger-in latency (1 ms wide pulses; the MCU's clock drifts by tens of ppm at most)
    period_us = 50_000
    pulses = np.array(rig.pulse_log)
    assert len(pulses) == 9 and np.all(np.abs(np.diff(pulses[:, 1]) - period_us) <= 2)
    assert abs(pulses[0, 1] - rig.config.lead_in_us) < 100  # first pulse after the lead-in
    lat = rig.timing.event_trigger_latency_us
    expected = np.delete(rig.event_clock.us(pulses[:, 1] + lat), 6)
    true_rising = rising[np.r_[0:6, 7:9]]
    assert np.array_equal(true_rising["t"], expected)
    assert np.array_equal(np.delete(falling["t"], 5),
                          np.delete(rig.event_clock.us(pulses[:, 2] + lat), 6))
    assert rising["t"][6] - rising["t"][5] == 5  # the glitch, 5 us after pulse 5's edge
    # frame timestamps: the frame clock at exposure start
    dt_ns = np.diff([f.t_device_ns for f in frames[:2]])
    assert abs(dt_ns[0] - period_us * 1000) < 5000  # drift of tens of ppm
    # events are sorted and inside the sensor
    assert len(events) > 0 and np.all(np.diff(events["t"]) >= 0)
    assert events["x"].max() < rig.geometry.event.width and events["y"].max() < rig.geometry.event.height


def test_ground_truth_folder(tmp_path: Path) -> None:
    rig = small_rig(seed=4, drop_frames=frozenset({1}), missed_triggers=frozenset({2}))
    gt = tmp_path / "ground_truth"
    try:
        rig.attach_ground_truth(gt)
        frames = rig.run_pulses(4)
    finally:
        rig.close()
    geom = RigGeometry.load_json(gt / "rig.json")
    assert np.allclose(geom.R_ev_fr, rig.geometry.R_ev_fr) and geom.event.size == rig.geometry.event.size
    scen = json.loads((gt / "scenario.json").read_text())
    assert scen["scenario"] == "day" and scen["seed"] == 4
    assert scen["clocks"]["event_camera"]["offset_us"] == rig.event_clock.offset_us
    with open(gt / "triggers.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["pulse_index"]) for r in rows] == [0, 1, 2, 3]
    assert [int(r["frame_delivered"]) for r in rows] == [1, 0, 0, 1]
    # three periods on the MCU's clock, in true time (its oscillator drifts; the edges jitter)
    span = 150_000 / rig.mcu_clock.rate
    assert abs(int(rows[3]["t_true_us"]) - int(rows[0]["t_true_us"]) - span) <= 1
    assert int(rows[3]["t_mcu_us"]) - int(rows[0]["t_mcu_us"]) == 150_000
    assert int(rows[0]["t_frame_clock_ns"]) == frames[0].t_device_ns
    truth = GroundTruth(gt).pulses()  # the reader the builder and calibration use
    assert truth["pulse_index"].tolist() == [0, 1, 2, 3]
    assert truth["frame_delivered"].tolist() == [1, 0, 0, 1]
    assert truth["t_true_us"].tolist() == [int(r["t_true_us"]) for r in rows]
    assert int(truth["t_frame_clock_ns"][0]) == frames[0].t_device_ns
    with h5py.File(gt / "labels.h5", "r") as h5:
        assert list(h5["pulse_index"][:]) == [0, 1, 3]  # exposed frames (pulse 2 was missed)
        fh, fw = rig.geometry.frame.height, rig.geometry.frame.width
        labels = h5["labels"][:]
        assert labels.shape == (3, fh, fw)
        assert set(np.unique(labels)) <= set(range(19)) | {255}
        assert 10 in labels[:, : fh // 4] and 0 in labels[:, -fh // 8:]  # sky on top, road below
        assert h5["depth_event_m"].shape == (3, rig.geometry.event.height, rig.geometry.event.width)
        assert h5["instances"].shape == (3, fh, fw)


def _record(tmp: Path, **kw) -> tuple[bytes, list[np.ndarray]]:
    rig = small_rig(keep_events=False, **kw)
    try:
        rig.event_camera.open()
        rig.event_camera.start_recording(tmp / "events.raw")
        frames = rig.run_pulses(3)
        rig.event_camera.stop_recording()
    finally:
        rig.close()
    return (tmp / "events.raw").read_bytes(), [f.pixels for f in frames]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    pytest.importorskip("rig.evt3")
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    raw_a, fr_a = _record(tmp_path / "a", seed=7)
    raw_b, fr_b = _record(tmp_path / "b", seed=7)
    raw_c, _ = _record(tmp_path / "c", seed=8)
    assert len(raw_a) > 10_000
    assert raw_a == raw_b
    assert all(np.array_equal(x, y) for x, y in zip(fr_a, fr_b, strict=True))
    assert raw_a != raw_c


def test_raw_file_decodes_to_the_emitted_events(tmp_path: Path) -> None:
    evt3 = pytest.importorskip("rig.evt3")
    rig = small_rig(seed=9)
    try:
        rig.event_camera.open()
        rig.event_camera.start_recording(tmp_path / "events.raw")
        rig.run_pulses(2)
        rig.event_camera.stop_recording()
        kept_ev, kept_tr = rig.event_camera.kept_events()
        rates = rig.event_camera.rates()
    finally:
        rig.close()
    ev, tr = evt3.decode_file(tmp_path / "events.raw")
    assert len(ev) == len(kept_ev) == rates.events_total
    assert np.array_equal(ev["t"], kept_ev["t"]) and np.array_equal(ev["x"], kept_ev["x"])
    assert len(tr) == len(kept_tr) == rates.triggers_total == 4
    assert rates.bytes_written == (tmp_path / "events.raw").stat().st_size


def test_realtime_mode_is_paced_to_the_wall_clock() -> None:
    import time

    rig = small_rig(seed=1, realtime=True)
    try:
        t0 = time.monotonic()
        frames = rig.run_pulses(4)
        wall = time.monotonic() - t0
    finally:
        rig.close()
    assert len(frames) == 4
    assert wall >= 0.9 * rig.sim_time_s - 0.02


NO_NOISE = {"shot_noise_bright_hz": 0.0, "shot_noise_dark_hz": 0.0, "leak_hz": 0.0}


def _frame_and_events(scenario: str, pulses: int, event_params: dict | None = None,
                      **scene_params) -> tuple[np.ndarray, np.ndarray, SimRig]:
    rig = small_rig(scenario=scenario, seed=3, pixel_format="Mono8", scene_params=scene_params,
                    event_params=event_params or {})
    try:
        frames = rig.run_pulses(pulses)
        events, _ = rig.event_camera.kept_events()
    finally:
        rig.close()
    return frames[-1].pixels, events, rig


def test_night_is_dark_noisy_and_quieter_than_day() -> None:
    day, ev_day, rig_day = _frame_and_events("day", 3, NO_NOISE)
    night, ev_night, rig_night = _frame_and_events("night", 3, NO_NOISE)
    lum_day = rig_day.render_event_luminance(100_000)
    lum_night = rig_night.render_event_luminance(100_000)
    assert np.median(lum_night) < 0.01 * np.median(lum_day)  # HDR: night is >100x darker
    assert lum_night.max() > 10.0  # ... but lamps and headlights are bright
    # the night exposure (20x longer, +12 dB) does not make up for it: darker, more black pixels
    assert rig_night.default_gain_db > 0 and rig_night.default_exposure_us > 10 * rig_day.default_exposure_us
    assert night.mean() < day.mean() and (night < 16).mean() > 2 * (day < 16).mean()
    # the photoreceptor's bandwidth falls in the dark: fewer (and later) events than the same
    # night seen by pixels as fast as by day (noise switched off in both)
    _, ev_fast, _ = _frame_and_events("night", 3, {**NO_NOISE, "cutoff_half_lum": 1e-7})
    assert len(ev_night) < len(ev_fast)


def test_overexposed_frames_clip_while_events_see_structure() -> None:
    img, events, rig = _frame_and_events("overexposed", 4, tunnel_exit_s=0.02)
    clipped = img == 255
    assert clipped.mean() > 0.15
    # the event camera keeps firing where the frame is saturated (map frame px to event px)
    g = rig.geometry
    v, u = np.nonzero(clipped)
    uv_ev = g.frame_to_event_pixels(np.column_stack([u, v]).astype(float), np.full(len(u), 30.0))
    inside = ((uv_ev[:, 0] >= 0) & (uv_ev[:, 0] < g.event.width - 0.5) & (uv_ev[:, 1] >= 0)
              & (uv_ev[:, 1] < g.event.height - 0.5))
    clip_ev = np.zeros((g.event.height, g.event.width), bool)
    clip_ev[np.round(uv_ev[inside, 1]).astype(int), np.round(uv_ev[inside, 0]).astype(int)] = True
    hits = clip_ev[events["y"], events["x"]]
    assert hits.sum() > 200


def test_motion_blur_scenario_integrates_many_subsamples() -> None:
    per_frame = {}
    for scenario in ("day", "motion_blur"):
        rig = small_rig(scenario=scenario, seed=3, scale=0.25)
        try:
            rig.run_pulses(2)
            per_frame[scenario] = rig.stats["frame_subsamples"] / rig.stats["frames_exposed"]
        finally:
            rig.close()
    # long exposure + fast, shaky motion: the exposure is integrated over several sub-samples
    assert per_frame["day"] == 1 and per_frame["motion_blur"] >= 3


def test_scenario_table() -> None:
    for name in ("day", "night", "overexposed", "motion_blur", "checkerboard"):
        assert name in SCENARIOS
    assert SCENARIOS["checkerboard"].factory == "rig.sim.checkerboard:make_scene"
    with pytest.raises(ValueError, match="unknown scenario"):
        get_scenario("moon")
    with pytest.raises(ValueError, match="unknown driving-scene parameter"):
        SimRig(SimConfig(scenario="day", scale=SMALL, scene_params={"speed": 3}))
