"""The Metavision (OpenEB HAL) event-camera backend against a fake `metavision_hal` module, once as
OpenEB 4.6 and once as OpenEB 5.x (their Python bindings differ, see tests/fakes/fake_metavision_hal.py)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from fakes import fake_metavision_hal as fhal

from rig.backends.metavision import hal_message, raw_size
from rig.biasfile import format_bias_file
from rig.devices import AntiFlickerSettings, DeviceError, EventCameraSettings
from rig.evt.header import read_header
from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, decode_file
from rig.registry import BackendUnavailable, create_device

W, H = 1280, 720
N_PULSES = 20
HOT = [(5, 7), (1279, 719), (640, 360)]


def _script(seed: int = 0, n_events: int = 30_000, duration_us: int = 200_000):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n_events, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, duration_us, n_events))
    ev["x"] = rng.integers(0, W, n_events)
    ev["y"] = rng.integers(0, H, n_events)
    ev["p"] = rng.integers(0, 2, n_events)
    hot = np.arange(0, n_events, 97)  # a few hundred events from the hot pixels
    ev["x"][hot] = [HOT[i % len(HOT)][0] for i in range(len(hot))]
    ev["y"][hot] = [HOT[i % len(HOT)][1] for i in range(len(hot))]
    rows = []
    for k in range(N_PULSES):  # MCU pulses on the main trigger-in: rising then falling edge
        t = 5_000 + k * 9_000
        rows += [(t, 0, 1), (t + 1000, 0, 0)]
    rows += [(t0, 6, 1) for t0 in (7_000, 70_000)]  # loopback channel, not enabled below
    tr = np.array(sorted(rows), TRIGGER_DTYPE)
    return ev, tr


@pytest.fixture(params=fhal.OPENEB_VERSIONS)
def hal(request, monkeypatch):
    monkeypatch.setitem(sys.modules, "metavision_hal", fhal)
    ev, tr = _script()
    fhal.reset(fhal.CameraSpec(serial="00050423", events=ev, triggers=tr, n_buffers=25,
                               buffer_period_s=0.002),
               fhal.CameraSpec(serial="00050999"), openeb_version=request.param)
    yield fhal
    fhal.reset()


def _open(**kwargs):
    cam = create_device("event_camera", "metavision", **kwargs)
    cam.open()
    return cam, fhal.opened()[-1]


def test_missing_sdk_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "metavision_hal", None)
    with pytest.raises(BackendUnavailable) as err:
        create_device("event_camera", "metavision")
    msg = str(err.value)
    assert "\n" not in msg and "metavision_hal" in msg and "OpenEB" in msg


def test_the_fake_has_each_versions_raw_buffer(hal):
    """What get_latest_raw_data returns differs between OpenEB 4.6 and 5.x; raw_size reads both."""
    cam, dev = _open()
    dev.stream.start()
    time.sleep(0.005)
    assert dev.stream.poll_buffer() == 1
    raw = dev.stream.get_latest_raw_data()
    if hal.openeb_version().startswith("4."):
        assert type(raw).__name__ == "RawDataBuffer" and not hasattr(raw, "size") and len(raw) > 0
        assert hasattr(hal, "RawDataBuffer") and not hasattr(hal, "RawBuffer")
    else:
        assert type(raw).__name__ == "RawBuffer" and raw.size() > 0
        with pytest.raises(TypeError, match="has no len"):
            len(raw)
        assert hasattr(hal, "RawBuffer") and not hasattr(hal, "RawDataBuffer")
    assert raw_size(raw) == len(raw._data) > 0
    assert raw_size(np.zeros(7, np.uint16)) == 14  # a numpy buffer counts bytes
    dev.stream.stop()
    cam.close()


def test_open_first_and_by_serial(hal):
    cam = create_device("event_camera", "metavision")
    cam.open()
    info = cam.info()
    assert (cam.width, cam.height) == (W, H) and info.serial == "00050423"
    assert "IMX636" in info.model and info.firmware == "4.6.0"
    assert info.extra["openeb_version"] == hal.openeb_version()
    cam.close()
    other = create_device("event_camera", "metavision", serial="00050999")
    other.open()
    assert other.info().serial == "00050999"
    other.close()
    with pytest.raises(DeviceError, match="serial 123"):
        create_device("event_camera", "metavision", serial="123").open()


def test_configure_biases_roi_erc_trigger(hal):
    cam, dev = _open()
    cam.configure(EventCameraSettings(biases={"bias_diff_on": 20, "bias_diff_off": -10, "bias_hpf": 40},
                                      roi=(100, 50, 640, 360), erc_rate_ev_s=20e6, trigger_in_channel=0))
    assert dev.biases.values["bias_diff_on"] == 20 and dev.biases.values["bias_hpf"] == 40
    assert dev.roi.enabled and dev.roi.window.to_string() == "[100, 50, 640, 360]"
    assert dev.erc.enabled and dev.erc.get_cd_event_count() == 4000  # 20 Mev/s x 200 us
    assert dev.trigger_in.enabled == {0}
    applied = cam.info().extra["applied"]
    assert applied["biases"]["bias_diff_off"] == -10 and applied["erc_rate_ev_s"] == 20e6
    assert applied["roi"] == [100, 50, 640, 360] and applied["trigger_in_channel"] == 0
    cam.configure(EventCameraSettings(erc_rate_ev_s=20_001_234))
    assert cam.info().extra["applied"]["erc_rate_ev_s"] == 20_000_000  # the sensor's 5 kev/s steps
    cam.configure(EventCameraSettings(trigger_in_channel=None))
    assert not dev.roi.enabled and not dev.erc.enabled and dev.trigger_in.enabled == set()
    cam.close()


@pytest.mark.parametrize(("settings", "match"), [
    (EventCameraSettings(biases={"bias_bogus": 1}), "unknown bias 'bias_bogus'.*bias_diff_on"),
    (EventCameraSettings(biases={"bias_diff_on": 500}),
     r"bias bias_diff_on = 500 \(from event_camera.settings.biases\) refused: outside its allowed range "
     r"\[-85, 140\]"),
    (EventCameraSettings(roi=(1200, 0, 200, 10)), "outside the 1280x720"),
    (EventCameraSettings(trigger_in_channel=3), r"no trigger-in channel 3 \(available ids: \[0, 6\]\)"),
    (EventCameraSettings(erc_rate_ev_s=4e9), r"event-rate controller limit 4e\+09 ev/s outside the sensor's "
                                             r"range \[0, 3200000000\]"),
    (EventCameraSettings(antiflicker=AntiFlickerSettings(low_hz=40, high_hz=120)),
     "anti-flicker band 40-120 Hz outside the sensor's 50-520 Hz"),
    (EventCameraSettings(antiflicker=AntiFlickerSettings(stop_threshold=9)),
     r"anti-flicker stop threshold 9 outside the sensor's \[0, 7\]"),
    (EventCameraSettings(antiflicker=AntiFlickerSettings(duty_cycle_percent=0.0)),
     r"anti-flicker duty cycle 0.0 % refused by the HAL: Error 102001: Invalid input duty cycle"),
    (EventCameraSettings(hot_pixels=[(1280, 3)]), r"hot pixel \(1280, 3\) outside the 1280x720 sensor"),
    (EventCameraSettings(hot_pixels=[(i, 0) for i in range(65)]),
     "65 hot pixels but the sensor's digital event mask has 64 slots"),
])
def test_configure_errors_name_the_problem(hal, settings, match):
    cam, _ = _open()
    with pytest.raises(DeviceError, match=match) as err:
        cam.configure(settings)
    assert "\n" not in str(err.value) and "-----" not in str(err.value)
    cam.close()


def test_the_fake_refuses_a_bias_as_the_hal_does(hal):
    """I_LL_Biases::set throws HalException(ValueOutOfRange): in Python a plain RuntimeError."""
    _, dev = _open()
    with pytest.raises(RuntimeError) as err:
        dev.biases.set("bias_diff_on", 500)
    assert type(err.value) is RuntimeError and "Metavision HAL exception" in str(err.value)
    assert hal_message(err.value) == ('Error 102001: Invalid value 500 for bias "bias_diff_on". Value should '
                                      "be within range [-85, 140].")
    with pytest.raises(RuntimeError, match="Unavailable bias"):
        dev.biases.get("bias_pr")
    with pytest.raises(TypeError):  # pybind11: a float is not an int
        dev.biases.set("bias_fo", 1.5)


def test_a_hal_refusal_names_bias_value_and_range(hal, monkeypatch):
    """Without get_bias_info the backend cannot check first: the HAL's refusal is what it reports."""
    monkeypatch.delattr(fhal.I_LL_Biases, "get_bias_info")
    cam, dev = _open()
    with pytest.raises(DeviceError) as err:
        cam.configure(EventCameraSettings(biases={"bias_refr": 300}))
    msg = str(err.value)
    assert "bias bias_refr = 300" in msg and "refused by the HAL" in msg and "[-20, 235]" in msg
    assert "\n" not in msg and dev.biases.values["bias_refr"] == 0
    cam.close()


def test_bias_file_then_explicit_biases(hal, tmp_path):
    path = tmp_path / "evk4.bias"
    path.write_text("% date 2024-05-01 10:00:00\n% end\n"
                    + format_bias_file({"bias_diff_on": 20, "bias_hpf": 10, "bias_fo": -5}))
    cam, dev = _open()
    cam.configure(EventCameraSettings(biases_file=str(path), biases={"bias_hpf": 40}))
    assert dev.biases.values == {"bias_diff": 0, "bias_diff_off": 0, "bias_diff_on": 20, "bias_fo": -5,
                                 "bias_hpf": 40, "bias_refr": 0}
    # what rig.yaml loading filled in wins over re-reading the file
    cam.configure(EventCameraSettings(biases_file=str(path), biases_from_file={"bias_fo": 7}))
    assert dev.biases.values["bias_fo"] == 7
    path.write_text("0 % bias_pr\n")
    with pytest.raises(DeviceError, match=f"unknown bias 'bias_pr' \\(from bias file {path}\\)"):
        cam.configure(EventCameraSettings(biases_file=str(path)))
    path.write_text("x % bias_fo\n")
    with pytest.raises(DeviceError, match=f"{path}:1: bias value 'x' is not an integer"):
        cam.configure(EventCameraSettings(biases_file=str(path)))
    cam.close()


def test_antiflicker_is_set_through_the_hal_and_read_back(hal):
    cam, dev = _open()
    afk = dev.antiflicker
    wanted = AntiFlickerSettings(low_hz=90, high_hz=130, mode="band_pass", duty_cycle_percent=30.0,
                                 start_threshold=5, stop_threshold=3)
    cam.configure(EventCameraSettings(antiflicker=wanted))
    assert afk.enabled and (afk.low, afk.high) == (90, 130)
    assert afk.mode is fhal.I_AntiFlickerModule.AntiFlickerMode.BandPass
    assert (afk.start, afk.stop) == (5, 3)
    applied = cam.info().extra["applied"]["antiflicker"]
    assert applied == {"enabled": True, "low_hz": 90, "high_hz": 130, "mode": "band_pass",
                       "duty_cycle_percent": 31.25, "start_threshold": 5, "stop_threshold": 3}  # 1/16 steps
    cam.configure(EventCameraSettings(antiflicker=AntiFlickerSettings()))  # OpenEB's defaults
    assert afk.mode is fhal.I_AntiFlickerModule.AntiFlickerMode.BandStop and (afk.low, afk.high) == (50, 520)
    cam.configure(EventCameraSettings(antiflicker=AntiFlickerSettings(enabled=False)))
    assert not afk.enabled and cam.info().extra["applied"]["antiflicker"] is None
    cam.close()


def test_hot_pixels_use_the_mask_slots_and_never_reach_the_file(hal, tmp_path):
    cam, dev = _open()
    cam.configure(EventCameraSettings(hot_pixels=HOT, trigger_in_channel=0))
    slots = dev.event_mask.get_pixel_masks()
    assert [s.get_mask() for s in slots[:3]] == [(x, y, True) for x, y in HOT]
    assert not any(s.get_mask()[2] for s in slots[3:])
    assert cam.info().extra["applied"]["hot_pixels"] == [list(p) for p in HOT]
    cam.start_recording(tmp_path / "events.raw")
    _wait_all_buffers(dev)
    cam.stop_recording()
    events, _ = decode_file(tmp_path / "events.raw")
    assert 29_000 < len(events) < 30_000
    assert not any(((events["x"] == x) & (events["y"] == y)).any() for x, y in HOT)
    cam.configure(EventCameraSettings())  # no hot pixels asked for: every slot off again
    assert not any(s.get_mask()[2] for s in slots) and cam.info().extra["applied"]["hot_pixels"] == []
    cam.close()


@pytest.mark.parametrize(("getter", "settings", "match"), [
    ("get_i_antiflicker_module", EventCameraSettings(antiflicker=AntiFlickerSettings()),
     r"no anti-flicker filter \(I_AntiFlickerModule\), but event_camera.settings.antiflicker asks for it"),
    ("get_i_erc_module", EventCameraSettings(erc_rate_ev_s=1e6),
     r"no event-rate controller \(I_ErcModule\), but event_camera.settings.erc_rate_ev_s asks"),
    ("get_i_digital_event_mask", EventCameraSettings(hot_pixels=[(1, 1)]),
     r"no digital event mask \(I_DigitalEventMask\), but event_camera.settings.hot_pixels asks"),
    ("get_i_ll_biases", EventCameraSettings(biases={"bias_fo": 1}), r"no bias facility"),
])
def test_a_missing_facility_is_a_clear_error_only_when_asked_for(hal, getter, settings, match):
    fhal.reset(fhal.CameraSpec(missing=(getter,)), openeb_version=hal.openeb_version())
    cam, _ = _open()
    cam.configure(EventCameraSettings())  # not asked for: nothing to complain about
    with pytest.raises(DeviceError, match=match):
        cam.configure(settings)
    cam.close()


def _wait_all_buffers(dev, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while dev.stream.buffers_logged < dev.stream.buffers_total and time.monotonic() < deadline:
        time.sleep(0.005)


def test_recording_is_the_hal_raw_log_with_counts(hal, tmp_path):
    cam, _ = _open()
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
    cam, dev = _open()
    cam.configure(EventCameraSettings(roi=(0, 0, 320, 240)))
    cam.start_recording(tmp_path / "events.raw")
    _wait_all_buffers(dev)
    cam.stop_recording()
    events, _ = decode_file(tmp_path / "events.raw")
    assert 0 < len(events) < 30_000 // 8
    assert events["x"].max() < 320 and events["y"].max() < 240
    assert cam.rates().events_total == len(events)


def test_early_stop_counts_exactly_what_the_file_holds(hal, tmp_path):
    ev, tr = _script(seed=1)
    fhal.reset(fhal.CameraSpec(events=ev, triggers=tr, n_buffers=200, buffer_period_s=0.01),
               openeb_version=hal.openeb_version())
    cam, dev = _open()
    cam.configure(EventCameraSettings(trigger_in_channel=0))
    cam.start_recording(tmp_path / "events.raw")
    time.sleep(0.1)
    cam.stop_recording()  # about 10 of 200 buffers had arrived
    events, triggers = decode_file(tmp_path / "events.raw")
    rates = cam.rates()
    assert 0 < len(events) < len(ev)
    assert rates.events_total == len(events)
    assert rates.triggers_total == int((triggers["value"] == 1).sum())
    assert rates.bytes_written == (tmp_path / "events.raw").stat().st_size - read_header(
        tmp_path / "events.raw").size_bytes
    assert dev.stream.poll_buffer() == -1  # stopped
    with pytest.raises(DeviceError, match="not open"):
        cam.close()
        cam.start_recording(tmp_path / "again.raw")


def test_configure_refused_while_recording(hal, tmp_path):
    cam, _ = _open()
    cam.start_recording(tmp_path / "events.raw")
    with pytest.raises(DeviceError, match="while recording"):
        cam.configure(EventCameraSettings())
    cam.close()  # stops the recording too
    assert read_header(tmp_path / "events.raw").has_end
