"""The Metavision (OpenEB HAL) event-camera backend against a fake `metavision_hal` module."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from fakes import fake_metavision_hal as fhal

from rig.devices import DeviceError, EventCameraSettings
from rig.evt.header import read_header
from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, decode_file
from rig.registry import BackendUnavailable, create_device

W, H = 1280, 720
N_PULSES = 20


def _script(seed: int = 0, n_events: int = 30_000, duration_us: int = 200_000):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n_events, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, duration_us, n_events))
    ev["x"] = rng.integers(0, W, n_events)
    ev["y"] = rng.integers(0, H, n_events)
    ev["p"] = rng.integers(0, 2, n_events)
    rows = []
    for k in range(N_PULSES):  # MCU pulses on the main trigger-in: rising then falling edge
        t = 5_000 + k * 9_000
        rows += [(t, 0, 1), (t + 1000, 0, 0)]
    rows += [(t0, 6, 1) for t0 in (7_000, 70_000)]  # loopback channel, not enabled below
    tr = np.array(sorted(rows), TRIGGER_DTYPE)
    return ev, tr


@pytest.fixture
def hal(monkeypatch):
    monkeypatch.setitem(sys.modules, "metavision_hal", fhal)
    ev, tr = _script()
    fhal.reset(fhal.CameraSpec(serial="00050423", events=ev, triggers=tr, n_buffers=25,
                               buffer_period_s=0.002),
               fhal.CameraSpec(serial="00050999"))
    return fhal


def test_missing_sdk_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "metavision_hal", None)
    with pytest.raises(BackendUnavailable) as err:
        create_device("event_camera", "metavision")
    msg = str(err.value)
    assert "\n" not in msg and "metavision_hal" in msg and "OpenEB" in msg


def test_open_first_and_by_serial(hal):
    cam = create_device("event_camera", "metavision")
    cam.open()
    info = cam.info()
    assert (cam.width, cam.height) == (W, H) and info.serial == "00050423"
    assert "IMX636" in info.model and info.firmware == "4.6.0"
    cam.close()
    other = create_device("event_camera", "metavision", serial="00050999")
    other.open()
    assert other.info().serial == "00050999"
    other.close()
    with pytest.raises(DeviceError, match="serial 123"):
        create_device("event_camera", "metavision", serial="123").open()


def test_configure_biases_roi_erc_trigger(hal):
    cam = create_device("event_camera", "metavision")
    cam.open()
    dev = hal.opened()[-1]
    cam.configure(EventCameraSettings(biases={"bias_diff_on": 20, "bias_diff_off": -10, "bias_hpf": 40},
                                      roi=(100, 50, 640, 360), erc_rate_ev_s=20e6, trigger_in_channel=0))
    assert dev.biases.values["bias_diff_on"] == 20 and dev.biases.values["bias_hpf"] == 40
    assert dev.roi.enabled and dev.roi.window.to_string() == "[100, 50, 640, 360]"
    assert dev.erc.enabled and dev.erc.rate == 20_000_000
    assert dev.trigger_in.enabled == {0}
    applied = cam.info().extra["applied"]
    assert applied["biases"]["bias_diff_off"] == -10 and applied["erc_rate_ev_s"] == 20e6
    assert applied["roi"] == [100, 50, 640, 360] and applied["trigger_in_channel"] == 0
    cam.configure(EventCameraSettings(trigger_in_channel=None))
    assert not dev.roi.enabled and not dev.erc.enabled and dev.trigger_in.enabled == set()
    cam.close()


@pytest.mark.parametrize(("settings", "match"), [
    (EventCameraSettings(biases={"bias_bogus": 1}), "unknown bias 'bias_bogus'.*bias_diff_on"),
    (EventCameraSettings(biases={"bias_diff_on": 500}), "bias_diff_on = 500 refused"),
    (EventCameraSettings(roi=(1200, 0, 200, 10)), "outside the 1280x720"),
    (EventCameraSettings(trigger_in_channel=3), r"no trigger-in channel 3 \(available ids: \[0, 6\]\)"),
])
def test_configure_errors_name_the_problem(hal, settings, match):
    cam = create_device("event_camera", "metavision")
    cam.open()
    with pytest.raises(DeviceError, match=match):
        cam.configure(settings)
    cam.close()


def _wait_all_buffers(dev, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while dev.stream.buffers_logged < dev.stream.buffers_total and time.monotonic() < deadline:
        time.sleep(0.005)


def test_recording_is_the_hal_raw_log_with_counts(hal, tmp_path):
    cam = create_device("event_camera", "metavision")
    cam.open()
    cam.configure(EventCameraSettings(trigger_in_channel=0))
    raw = tmp_path / "session" / "events.raw"
    cam.start_recording(raw)
    dev = hal.opened()[-1]
    time.sleep(0.02)
    live = cam.rates()
    _wait_all_buffers(dev)
    cam.stop_recording()
    cam.close()
    assert 0 < live.events_total < 30_000 and live.event_rate_ev_s > 0

    header = read_header(raw)
    assert header.has_end and header.evt_format == "EVT3" and header.geometry == (W, H)
    assert header.fields["serial_number"] == "00050423"
    events, triggers = decode_file(raw)
    assert np.array_equal(events, dev.sent_events)  # every event the camera sent, in order
    assert np.array_equal(triggers, dev.sent_triggers)
    assert set(triggers["id"].tolist()) == {0}  # the loopback channel was not enabled
    rates = cam.rates()
    assert rates.events_total == 30_000
    assert rates.triggers_total == N_PULSES  # rising edges on the enabled channel
    assert cam.info().extra["counts"]["trigger_edges"] == 2 * N_PULSES
    assert rates.bytes_written == raw.stat().st_size - header.size_bytes


def test_roi_limits_what_is_recorded(hal, tmp_path):
    cam = create_device("event_camera", "metavision")
    cam.open()
    cam.configure(EventCameraSettings(roi=(0, 0, 320, 240)))
    cam.start_recording(tmp_path / "events.raw")
    _wait_all_buffers(hal.opened()[-1])
    cam.stop_recording()
    events, _ = decode_file(tmp_path / "events.raw")
    assert 0 < len(events) < 30_000 // 8
    assert events["x"].max() < 320 and events["y"].max() < 240
    assert cam.rates().events_total == len(events)


def test_early_stop_counts_exactly_what_the_file_holds(hal, tmp_path):
    ev, tr = _script(seed=1)
    fhal.reset(fhal.CameraSpec(events=ev, triggers=tr, n_buffers=200, buffer_period_s=0.01))
    cam = create_device("event_camera", "metavision")
    cam.open()
    cam.configure(EventCameraSettings(trigger_in_channel=0))
    cam.start_recording(tmp_path / "events.raw")
    time.sleep(0.1)
    cam.stop_recording()  # about 10 of 200 buffers had arrived
    events, triggers = decode_file(tmp_path / "events.raw")
    rates = cam.rates()
    assert 0 < len(events) < len(ev)
    assert rates.events_total == len(events)
    assert rates.triggers_total == int((triggers["value"] == 1).sum())
    with pytest.raises(DeviceError, match="not open"):
        cam.close()
        cam.start_recording(tmp_path / "again.raw")


def test_configure_refused_while_recording(hal, tmp_path):
    cam = create_device("event_camera", "metavision")
    cam.open()
    cam.start_recording(tmp_path / "events.raw")
    with pytest.raises(DeviceError, match="while recording"):
        cam.configure(EventCameraSettings())
    cam.close()  # stops the recording too
    assert read_header(tmp_path / "events.raw").has_end
