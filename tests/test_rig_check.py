"""`rig check`: the preflight passes on the simulated rig, fails with a clear line on an injected
dropped frame, measures the simulator's true clock drifts; its pure parts (drift fit, disk speed
against the event camera's peak, the trigger-to-exposure offset) on synthetic numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rig.check import (
    EVK4_LINK_PEAK_BYTES_S,
    CheckOptions,
    analyse_session,
    clock_drift,
    disk_check,
    offsets_from_edges,
    peak_data_rate,
    run_check,
)
from rig.cli import main

pytest.importorskip("rig.sim.world", reason="simulated rig not available")


@pytest.fixture(scope="module")
def sim_check(tmp_path_factory) -> dict:
    """`rig check --sim` once (kept session and JSON for the other tests)."""
    tmp = tmp_path_factory.mktemp("check")
    res = CliRunner().invoke(main, ["check", "--sim", "--quick", "--keep", "--out", str(tmp / "rec"),
                                    "--json", str(tmp / "check.json")])
    return {"res": res, "tmp": tmp, "json": json.loads((tmp / "check.json").read_text())
            if (tmp / "check.json").is_file() else None}


def test_rig_check_sim_passes(sim_check) -> None:
    res = sim_check["res"]
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "all checks passed" in res.output
    for name in ("trigger counts", "trigger-in", "pairing", "frame clock drift", "MCU clock drift",
                 "disk speed"):
        assert any(line.split(name)[-1].strip().startswith("PASS")
                   for line in res.output.splitlines() if name in line), res.output
    assert "30 pulses sent, 30 frames received, 30 rising edges on channel 0" in res.output
    # the burst's temporary folder is gone; only the kept session remains
    left = sorted(p.name for p in (sim_check["tmp"] / "rec").iterdir())
    assert len(left) == 1 and left[0].startswith("check_"), left


def test_drift_is_the_simulators_truth(sim_check) -> None:
    """Frame and MCU clocks against the event clock, as the simulator drew them (scenario.json)."""
    kept = Path(sim_check["json"]["kept_session"])
    clocks = json.loads((kept / "ground_truth" / "scenario.json").read_text())["clocks"]
    ev = clocks["event_camera"]["drift_ppm"]

    def rel(ppm: float) -> float:
        return ((1 + ppm * 1e-6) / (1 + ev * 1e-6) - 1) * 1e6

    items = {i["name"]: i for i in sim_check["json"]["items"]}
    frame_ppm = float(items["frame clock drift"]["value"].split(" ppm")[0])
    mcu_ppm = float(items["MCU clock drift"]["value"].split(" ppm")[0])
    assert frame_ppm == pytest.approx(rel(clocks["frame_camera"]["drift_ppm"]), abs=3.0)
    assert mcu_ppm == pytest.approx(rel(clocks["mcu"]["drift_ppm"]), abs=3.0)


def test_trigger_in_disabled_fails(sim_check, tmp_path) -> None:
    """A session whose event camera had its trigger input off: the trigger-in check says so."""
    import shutil

    session = tmp_path / "s"
    shutil.copytree(sim_check["json"]["kept_session"], session)
    manifest = json.loads((session / "session.json").read_text())
    manifest["settings"]["event_camera"]["trigger_in_channel"] = None
    (session / "session.json").write_text(json.dumps(manifest))
    item = next(i for i in analyse_session(session) if i.name == "trigger-in")
    assert item.passed is False and item.value == "disabled"
    assert "wiring.event_trigger_channel" in item.hint


def test_dropped_frame_fails_the_count_check(tmp_path) -> None:
    result = run_check(CheckOptions(out_dir=tmp_path, sim=True, sim_faults={"drop_frames": [5]},
                                    disk_bytes=8 << 20))
    counts = result.item("trigger counts")
    assert counts.passed is False and not result.passed
    assert counts.value.startswith("30 pulses sent, 29 frames received, 30 rising edges")
    assert "1 frame(s) missing" in counts.hint
    text = result.format()
    assert "trigger counts     FAIL  30 pulses sent, 29 frames received" in text
    assert text.splitlines()[-1] == "FAILED: trigger counts, pairing"
    assert list(tmp_path.iterdir()) == []  # the burst is cleaned up


def test_disk_slower_than_the_event_cameras_peak_fails() -> None:
    # no event-rate controller limit: the EVK4's USB 3 link (200 MB/s) + 2048x1536 Bayer at 20 Hz
    need = peak_data_rate(erc_rate_ev_s=None, frame_width=2048, frame_height=1536, frame_bytes_per_px=1,
                          rate_hz=20)
    assert need.event_bytes_s == EVK4_LINK_PEAK_BYTES_S == 200e6
    assert need.frame_bytes_s == pytest.approx(62.9e6, rel=1e-3)
    slow = disk_check(150e6, need, "/mnt/hdd")
    assert slow.passed is False
    assert slow.value.startswith("150 MB/s written (fsync) < 263 MB/s needed at peak")
    assert "/mnt/hdd" in slow.hint and "erc_rate_ev_s" in slow.hint
    assert disk_check(300e6, need).passed is True
    # an event-rate controller limit of 20 Mev/s: 4 B/event worst case -> 80 MB/s + frames
    limited = peak_data_rate(erc_rate_ev_s=20e6, frame_width=2048, frame_height=1536,
                             frame_bytes_per_px=1, rate_hz=20)
    assert limited.event_bytes_s == 80e6 and "event-rate controller" in limited.event_source
    assert disk_check(150e6, limited).passed is True


def test_clock_drift_fit() -> None:
    rng = np.random.default_rng(0)
    t_ev = np.arange(200) * 50_000.0 + 3_000_000.0
    t_dev = 9e8 + t_ev * (1 + 37e-6) + rng.normal(0, 1.0, t_ev.size)
    d = clock_drift(t_ev, t_dev)
    assert d.ppm == pytest.approx(37.0, abs=0.5) and d.rms_us < 1.5 and d.n == 200
    with pytest.raises(ValueError):
        clock_drift(t_ev[:2], t_dev[:2])


def test_exposure_offset_from_or_edges() -> None:
    """OR(MCU pulse, ExposureActive) on one input: the period's last fall minus the first rise
    is offset + ExposureActive's high time, whether or not the two pulses overlap."""
    period, width, exposure = 50_000, 1000, 5000
    for offset in (40, 2500):  # overlapping the 1 ms pulse, and after it
        rise, fall = [], []
        for k in range(20):
            t0 = 10_000 + k * period
            mcu, ea = (t0, t0 + width), (t0 + offset, t0 + offset + exposure)
            if ea[0] <= mcu[1]:  # merged into one high pulse
                rise.append(mcu[0])
                fall.append(ea[1])
            else:
                rise += [mcu[0], ea[0]]
                fall += [mcu[1], ea[1]]
        offsets, direct = offsets_from_edges(np.array(rise), np.array(fall), period, exposure)
        assert offsets.size == 20 and np.allclose(offsets, offset)
        assert direct.size == (20 if offset > width else 0)
        if direct.size:
            assert np.allclose(direct, offset)


def test_hardware_without_rig_config_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["check", "--hardware", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "no rig config for --hardware" in res.output


def test_rig_check_on_the_fake_hardware(tmp_path, monkeypatch) -> None:
    """The hardware path: the real metavision and pyspin backends on the fake SDKs, the MCU's
    protocol twin on the host clock behind the real serial client, paced in real time (the rig
    of benchmarks/soak.py)."""
    import argparse
    import sys

    from rig import recorder

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    for sdk in ("metavision_hal", "PySpin"):  # restored after the test (the harness sets them)
        monkeypatch.setitem(sys.modules, sdk, None)
    import soak

    devices, cable, source, flir = soak._fake_rig(argparse.Namespace(scale=0.125, event_rate=50_000))
    monkeypatch.setattr(recorder, "open_devices", lambda opts: devices)
    cable.start()
    try:
        result = run_check(CheckOptions(out_dir=tmp_path, sim=False, rate_hz=40, pulses=40,
                                        disk_bytes=8 << 20))
    finally:
        cable.stop.set()
        cable.join(5)
    assert result.rig == "hardware"
    assert all(i.passed for i in result.items if i.name != "disk speed"), result.format()
    assert result.item("trigger counts").value.startswith("40 pulses sent, 40 frames received, 40 rising")
    assert result.item("trigger-in").value.startswith("channel 0 enabled")
    assert "EVK4 USB 3 link" in result.item("disk speed").value  # no rate limit set: the link's peak
    assert source.late_edges == 0 and flir.dropped_no_buffer == 0


def test_rig_check_in_an_empty_folder_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    """A preflight with no --keep records into a temporary folder on the recordings' disk and
    takes back every folder it made (here the workspace's recordings/)."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["check", "--sim", "--quick"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert list(tmp_path.iterdir()) == []
