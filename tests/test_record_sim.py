"""`rig record` on the simulated rig, end to end: counts agree across the three devices, an
independent EVT3 decoder sees one rising trigger edge per frame, Ctrl-C keeps a readable session."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rig.recorder import RecordOptions, record_session
from rig.session import SessionReader

pytest.importorskip("rig.sim.world", reason="simulated rig not available")


@pytest.fixture(scope="module")
def day_session(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "day"
    summary = record_session(RecordOptions(out_dir=out, duration_s=1.5, rate_hz=20, scenario="day",
                                           seed=4, show_status=False,
                                           sim_faults={"drop_frames": [7], "incomplete_frames": [11]}))
    assert summary.status == "complete", summary.detail
    return out


def test_counts_agree(day_session: Path) -> None:
    with SessionReader(day_session) as s:
        c = dataclasses.asdict(s.manifest.counts)
        assert c["pulses_sent"] == 30
        assert c["pulse_reports"] == 30 and len(s.mcu_pulses) == 30
        # one frame lost in transport (id gap), one delivered incomplete: both counted
        assert c["frames_received"] == 29 and s.num_frames == 29
        assert c["frames_dropped"] == 1 and c["frames_incomplete"] == 1
        ids = s.frame_meta["frame_id"]
        assert 7 not in (ids - ids[0]) and s.frame_meta["incomplete"].sum() == 1
        events, triggers = s.decode_events()
        rising = triggers[triggers["value"] == 1]
        assert len(rising) == c["pulses_sent"]
        assert c["events"] == len(events) > 1000
        assert np.all(np.diff(events["t"]) >= 0)


def test_independent_decoder_agrees(day_session: Path) -> None:
    evt3 = pytest.importorskip("evt3", reason="the independent 'evt3' decoder is not installed")
    ev, tr = evt3.decode_file_with_triggers(str(day_session / "events.raw"))
    with SessionReader(day_session) as s:
        events, triggers = s.decode_events()
        assert len(ev) == len(events)
        np.testing.assert_array_equal(np.asarray(ev.t, dtype=np.int64), events["t"])
        np.testing.assert_array_equal(np.asarray(ev.x), events["x"])
        rising = int((np.asarray(tr.value) == 1).sum())
        assert rising == s.manifest.counts.pulses_sent
        # frames received + frames dropped == rising edges: nothing unaccounted for
        c = dataclasses.asdict(s.manifest.counts)
        assert c["frames_received"] + c["frames_dropped"] == rising


def test_ground_truth_is_kept(day_session: Path) -> None:
    gt = day_session / "ground_truth"
    assert (gt / "rig.json").is_file() and (gt / "labels.h5").is_file()
    with SessionReader(day_session) as s:
        geom = s.ground_truth_geometry()
        assert geom is not None and geom.event.size == s.manifest.sensor_size("event")


def test_sigint_leaves_interrupted_readable_session(tmp_path: Path) -> None:
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rig.cli", "record", "--sim", "--duration", "60",
                             "--out", str(out), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            csv = out / "triggers.csv"
            if csv.is_file() and len(csv.read_text().splitlines()) > 6:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        else:
            pytest.fail("recording never got going")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    manifest = json.loads((out / "session.json").read_text())
    assert manifest["status"] == "interrupted"
    with SessionReader(out) as s:
        assert 0 < s.num_frames < 1200
        assert s.num_frames == manifest["counts"]["frames_written"]
        events, triggers = s.decode_events()
        assert len(events) > 0 and (triggers["value"] == 1).sum() >= s.num_frames


@pytest.mark.parametrize("scenario", ["night", "overexposed"])
def test_the_scenario_gain_is_recorded(tmp_path: Path, scenario: str) -> None:
    """The scenario sets exposure and gain together; the recorder used to keep only the
    exposure, so a night or tunnel-exit session recorded at 0 dB (darker than it says)."""
    from rig.frames import to_rgb
    from rig.sim.scenarios import get_scenario

    out = tmp_path / scenario
    summary = record_session(RecordOptions(out_dir=out, duration_s=0.15, rate_hz=20,
                                           scenario=scenario, seed=5, show_status=False))
    assert summary.status == "complete", summary.detail
    want = get_scenario(scenario)
    with SessionReader(out) as s:
        settings = s.manifest.settings.frame_camera
        assert settings.gain_db == want.gain_db > 0
        assert settings.exposure_us == want.exposure_us
        value = to_rgb(s.frame(s.num_frames - 1), settings.pixel_format).max(axis=-1) / 255.0
    over, under = float((value > 0.9).mean()), float((value < 0.1).mean())
    if scenario == "overexposed":  # exposure for the tunnel: the daylight clips
        assert over > 0.4, over
    else:  # long exposure and +12 dB: still dark, nothing clipped but the lamps
        assert float(np.median(value)) < 0.2 and under > 0.1 and over < 0.05, (under, over)
