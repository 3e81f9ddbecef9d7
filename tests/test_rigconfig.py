"""rig.yaml loading: backends, serials, wiring checks, settings types, device creation."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakes import fake_metavision_hal as fhal
from fakes import fake_pyspin as fps

from rig.devices import AntiFlickerSettings, DeviceError, EventCameraSettings
from rig.evt3 import decode_file
from rig.rigconfig import RigConfigError, load_rig_config, parse_rig_config
from rig.session import SessionSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "rig.example.yaml"


@pytest.fixture
def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_example_config_loads_with_its_defaults():
    cfg = load_rig_config(EXAMPLE)
    assert (cfg.event_camera.backend, cfg.frame_camera.backend, cfg.trigger.backend) == \
        ("metavision", "pyspin", "serial")
    assert cfg.frame_settings.trigger_source == "Line3" and cfg.frame_settings.pixel_format == "BayerRG8"
    assert cfg.event_settings.trigger_in_channel == 0  # from the wiring
    assert cfg.trigger_settings.rate_hz == 20.0 and cfg.trigger.args["port"] == "/dev/ttyACM0"
    manifest = cfg.to_dict()
    assert manifest["wiring"]["trigger_to"] == ["frame:Line3", "event:TRIG_IN"]
    # the README's rig: the EVK4 behind the beam splitter's reflected arm
    assert cfg.reflected_arm == "event" and manifest["optics"] == {"reflected_arm": "event"}
    assert manifest["frame_camera"]["settings"]["exposure_us"] == 5000.0


def test_serials_reach_backends_and_settings(tmp_path, example):
    example["event_camera"]["serial"] = "00050423"
    example["frame_camera"]["serial"] = 22000001  # YAML reads it as a number
    example["event_camera"]["settings"]["roi"] = [0, 0, 640, 360]
    example["event_camera"]["settings"]["biases"] = {"bias_diff_on": 12}
    cfg = load_rig_config(_write(tmp_path, example))
    assert cfg.frame_camera.args["serial"] == "22000001" and cfg.frame_settings.serial == "22000001"
    assert cfg.event_settings.serial == "00050423" and cfg.event_settings.roi == (0, 0, 640, 360)
    assert cfg.event_settings.biases == {"bias_diff_on": 12}


def test_exposure_active_wiring(tmp_path, example):
    example["wiring"] = {"trigger_to": ["frame:Line3"], "event_trigger_channel": 0,
                         "exposure_active_to_event": True}
    example["frame_camera"]["settings"]["strobe_line"] = "Line1"
    cfg = load_rig_config(_write(tmp_path, example))
    assert cfg.frame_settings.strobe_line == "Line1" and cfg.event_settings.trigger_in_channel == 0


def test_nothing_wired_to_the_event_camera_disables_its_trigger_in(tmp_path, example):
    example["wiring"]["trigger_to"] = ["frame:Line3"]
    cfg = load_rig_config(_write(tmp_path, example))
    assert cfg.event_settings.trigger_in_channel is None


def _mutate(example, path: str, value):
    data = copy.deepcopy(example)
    *keys, last = path.split(".")
    node = data
    for k in keys:
        node = node[k]
    node[last] = value
    return data


@pytest.mark.parametrize(("path", "value", "match"), [
    ("frame_camera.settings.trigger_source", "Line0",
     "trigger_source is Line0 but wiring.trigger_to drives frame:Line3"),
    ("frame_camera.settings.trigger_source", None, "free running"),
    ("frame_camera.settings.exposure_us", "fast", "frame_camera.settings.exposure_us must be a number"),
    ("frame_camera.settings.exposur_us", 100, "unknown key frame_camera.settings.exposur_us"),
    ("event_camera.settings.roi", [0, 0, 10], r"event_camera.settings.roi must be \[x, y, width, height\]"),
    ("event_camera.settings.trigger_in_channel", 6,
     "trigger_in_channel is 6 but wiring.event_trigger_channel is 0"),
    ("event_camera.backend", None, "event_camera.backend must name a backend"),
    ("wiring.exposure_active_to_event", True, "strobe_line names no output line"),
    ("wiring.trigger_to", "frame:Line3", "wiring.trigger_to must list targets"),
    ("trigger.settings.count", 1.5, "trigger.settings.count must be an integer"),
    ("frame_camera.lens", "8mm", "unknown key frame_camera.lens"),
    ("optics.reflected_arm", "left", "optics.reflected_arm must be one of none, event, frame"),
    ("optics.mirrored", True, "unknown key optics.mirrored"),
])
def test_bad_configs_name_file_and_key(tmp_path, example, path, value, match):
    file = _write(tmp_path, _mutate(example, path, value))
    with pytest.raises(RigConfigError, match=match) as err:
        load_rig_config(file)
    assert str(file) in str(err.value)


def test_missing_section_unreadable_and_bad_yaml(tmp_path, example):
    del example["trigger"]
    with pytest.raises(RigConfigError, match="missing section trigger"):
        load_rig_config(_write(tmp_path, example))
    with pytest.raises(RigConfigError, match="not valid YAML"):
        load_rig_config(_write(tmp_path, "event_camera: [unclosed\n"))
    with pytest.raises(RigConfigError, match="no such rig config"):
        load_rig_config(tmp_path / "nope.yaml")
    with pytest.raises(RigConfigError, match="expected a mapping"):
        parse_rig_config(["a", "b"], tmp_path / "list.yaml")


def test_create_devices_through_the_registry(tmp_path, example, monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpin", fps)
    monkeypatch.setitem(sys.modules, "metavision_hal", fhal)
    fps.reset(fps.CameraSpec(serial="22000001", width=32, height=16))
    fhal.reset(fhal.CameraSpec(serial="00050423"))
    example["frame_camera"]["serial"] = "22000001"
    example["event_camera"]["serial"] = "00050423"
    example["trigger"]["port"] = "loop://"
    ev, fr, tr = load_rig_config(_write(tmp_path, example)).create_devices()
    assert type(ev).__name__ == "MetavisionEventCamera" and ev.serial == "00050423"
    assert type(fr).__name__ == "SpinnakerFrameCamera" and fr.serial == "22000001"
    assert type(tr).__name__ == "SerialTrigger"
    fr.open()
    assert fr.info().serial == "22000001"
    fr.close()


def test_unknown_backend_is_reported(tmp_path, example):
    example["frame_camera"]["backend"] = "vimba"
    with pytest.raises(RigConfigError, match="frame_camera.backend 'vimba' is not a known backend.*aravis"):
        load_rig_config(_write(tmp_path, example))


# ---- event camera: bias file, anti-flicker, hot pixels, ERC ---------------------------------------
def _event_yaml(tmp_path, example, **settings):
    example["event_camera"]["settings"].update(settings)
    return _write(tmp_path, example)


def test_bias_file_relative_to_the_rig_yaml_explicit_biases_win(tmp_path, example):
    (tmp_path / "biases").mkdir()
    (tmp_path / "biases" / "evk4.bias").write_text("% date 2024-05-01\n% end\n20   % bias_diff_on\n"
                                                   "10   % bias_hpf\n-5   % bias_fo\n")
    cfg = load_rig_config(_event_yaml(tmp_path, example, biases_file="biases/evk4.bias",
                                      biases={"bias_hpf": 40}))
    ev = cfg.event_settings
    assert ev.biases_file == str(tmp_path / "biases" / "evk4.bias")
    assert ev.biases_from_file == {"bias_diff_on": 20, "bias_hpf": 10, "bias_fo": -5}
    assert ev.effective_biases() == {"bias_diff_on": 20, "bias_hpf": 40, "bias_fo": -5}
    recorded = cfg.to_dict()["event_camera"]["settings"]
    assert recorded["biases"] == {"bias_hpf": 40} and recorded["biases_from_file"]["bias_hpf"] == 10


def test_bias_file_errors_name_rig_yaml_bias_file_and_line(tmp_path, example):
    bias = tmp_path / "evk4.bias"
    bias.write_text("0 % bias_diff\n0 % bias_pr\n")
    file = _event_yaml(tmp_path, example, biases_file="evk4.bias")
    with pytest.raises(RigConfigError) as err:
        load_rig_config(file)
    assert str(err.value).startswith(f"{file}: event_camera.settings.biases_file: {bias}:2: unknown bias "
                                     "'bias_pr' for the IMX636")
    bias.write_text("0 % bias_diff\n300 % bias_refr\n")
    with pytest.raises(RigConfigError, match=r"evk4.bias:2: bias_refr = 300 is outside the IMX636's allowed "
                                             r"range \[-20, 235\]"):
        load_rig_config(file)
    with pytest.raises(RigConfigError, match="biases_file: .*nope.bias: no such bias file"):
        load_rig_config(_event_yaml(tmp_path, example, biases_file="nope.bias"))
    with pytest.raises(RigConfigError, match="unknown key event_camera.settings.biases_from_file"):
        load_rig_config(_event_yaml(tmp_path, example, biases_file=None, biases_from_file={"bias_fo": 1}))


@pytest.mark.parametrize(("biases", "match"), [
    ({"bias_pr": 3}, r"event_camera.settings.biases.bias_pr: unknown bias 'bias_pr' for the IMX636"),
    ({"bias_diff": 30}, r"event_camera.settings.biases.bias_diff: bias_diff = 30 is outside the IMX636's "
                        r"allowed range \[-25, 23\]"),
])
def test_explicit_biases_are_checked_against_the_imx636(tmp_path, example, biases, match):
    with pytest.raises(RigConfigError, match=match):
        load_rig_config(_event_yaml(tmp_path, example, biases=biases))


def test_antiflicker_hot_pixels_and_erc(tmp_path, example):
    (tmp_path / "hot.txt").write_text("# from a dark recording\n12 40\n700, 3  # flickers\n12 40\n\n1 1\n")
    cfg = load_rig_config(_event_yaml(tmp_path, example, erc_rate_ev_s=20_000_000,
                                      antiflicker={"low_hz": 90, "high_hz": 130, "mode": "band_pass",
                                                   "stop_threshold": 2},
                                      hot_pixels=[[1, 1], [5, 6]], hot_pixels_file="hot.txt"))
    ev = cfg.event_settings
    assert ev.antiflicker == AntiFlickerSettings(enabled=True, low_hz=90, high_hz=130, mode="band_pass",
                                                 stop_threshold=2)
    assert ev.hot_pixels == [(1, 1), (5, 6), (12, 40), (700, 3)]  # the list, then the file's new ones
    assert ev.hot_pixels_file == str(tmp_path / "hot.txt") and ev.erc_rate_ev_s == 20e6
    recorded = cfg.to_dict()["event_camera"]["settings"]
    assert recorded["antiflicker"]["mode"] == "band_pass" and recorded["hot_pixels"][2] == (12, 40)
    assert load_rig_config(EXAMPLE).event_settings.antiflicker is None  # off unless asked for


@pytest.mark.parametrize(("settings", "match"), [
    ({"antiflicker": {"low_hz": 40}}, r"antiflicker: the band low_hz 40 .. high_hz 520 must lie within the "
                                      r"IMX636's 50..520 Hz"),
    ({"antiflicker": {"low_hz": 200, "high_hz": 100}}, "low_hz <= high_hz"),
    ({"antiflicker": {"mode": "notch"}}, "antiflicker.mode must be one of band_stop, band_pass"),
    ({"antiflicker": {"start_threshold": 8}}, r"antiflicker.start_threshold must be 0..7, got 8"),
    ({"antiflicker": {"duty_cycle_percent": 0}}, "antiflicker.duty_cycle_percent must be above 0"),
    ({"antiflicker": {"enabled": "yes"}}, "antiflicker.enabled must be true or false"),
    ({"antiflicker": {"band": [50, 60]}}, "unknown key event_camera.settings.antiflicker.band"),
    ({"antiflicker": [50, 60]}, "antiflicker must be a mapping"),
    ({"hot_pixels": [[1280, 0]]}, r"hot pixel \[1280, 0\] outside the IMX636's 1280x720 pixels"),
    ({"hot_pixels": [[1, 2, 3]]}, r"hot_pixels must list pixels as \[x, y\] pairs"),
    ({"hot_pixels": [[i, 0] for i in range(65)]}, "65 pixels .* digital event mask has 64 slots"),
    ({"erc_rate_ev_s": 0}, "erc_rate_ev_s must be above 0"),
    ({"erc_rate_ev_s": 5e9}, "erc_rate_ev_s must be above 0 and at most 4294967295"),
])
def test_bad_event_camera_filters_name_the_key(tmp_path, example, settings, match):
    file = _event_yaml(tmp_path, example, **settings)
    with pytest.raises(RigConfigError, match=match) as err:
        load_rig_config(file)
    assert str(err.value).startswith(f"{file}: ") and "event_camera.settings." in str(err.value)


def test_hot_pixel_file_errors_name_the_line(tmp_path, example):
    (tmp_path / "hot.txt").write_text("12 40\n3 x\n")
    file = _event_yaml(tmp_path, example, hot_pixels_file="hot.txt")
    with pytest.raises(RigConfigError, match=r"hot_pixels_file: .*hot.txt:2: expected 'x y'"):
        load_rig_config(file)
    (tmp_path / "hot.txt").write_text("12 40\n3 900\n")
    with pytest.raises(RigConfigError, match=r"hot.txt:2: hot pixel \[3, 900\] outside"):
        load_rig_config(file)


def test_the_manifest_keeps_the_new_settings_through_json(tmp_path, example):
    """session.json stores the settings dataclass; reading it back gives the same settings."""
    (tmp_path / "evk4.bias").write_text("20 % bias_diff_on\n")
    ev = load_rig_config(_event_yaml(tmp_path, example, biases_file="evk4.bias", hot_pixels=[[3, 4]],
                                     antiflicker={"high_hz": 130})).event_settings
    stored = json.loads(json.dumps(SessionSettings(event_camera=ev).to_dict()))
    assert stored["event_camera"]["hot_pixels"] == [[3, 4]]
    assert stored["event_camera"]["antiflicker"]["high_hz"] == 130
    back = SessionSettings.from_dict(stored, "session.json").event_camera
    assert back == ev and isinstance(back.antiflicker, AntiFlickerSettings)


def test_the_simulated_camera_masks_hot_pixels_and_caps_the_rate(tmp_path):
    from rig.evt3 import EVENT_DTYPE, empty_triggers
    from rig.sim.world import SimConfig, SimRig

    rig = SimRig(SimConfig(scenario="plane", scale=0.125))
    try:
        cam = rig.event_camera
        cam.open()
        with pytest.raises(DeviceError, match=r"hot pixel \(500, 1\) outside"):
            cam.configure(EventCameraSettings(hot_pixels=[(500, 1)]))
        afk = AntiFlickerSettings(low_hz=90, high_hz=130)
        cam.configure(EventCameraSettings(hot_pixels=[(3, 4)], erc_rate_ev_s=100_000, antiflicker=afk))
        assert cam.settings.antiflicker == afk  # accepted and recorded, not simulated
        ev = np.zeros(1000, EVENT_DTYPE)  # 1000 events in 0..1 ms (5 ERC windows of 200 us), one
        ev["t"] = np.arange(1000)        # in ten from the hot pixel
        ev["x"], ev["y"] = np.arange(1000) % 50 + 10, 7
        ev["x"][::10], ev["y"][::10] = 3, 4
        cam.start_recording(tmp_path / "events.raw")
        cam._emit_events(ev[:500], empty_triggers(), 0.0)  # a batch boundary inside a window
        cam._emit_events(ev[500:], empty_triggers(), 0.001)
        cam.stop_recording()
        events, _ = decode_file(tmp_path / "events.raw")
        assert not ((events["x"] == 3) & (events["y"] == 4)).any()
        per_window = np.bincount(events["t"] // 200)
        assert per_window.tolist() == [20] * 5  # 100 kev/s x 200 us each
        assert np.diff(events["t"][:20]).min() >= 5  # spread over the window, not its first 20 events
        assert cam.info().extra["filtered"] == {"hot_pixels": 100, "erc": 800}
        assert cam.rates().events_total == 100
    finally:
        rig.close()


def test_reflected_arm_defaults_to_the_event_camera_and_can_be_changed(tmp_path, example):
    example.pop("optics")
    assert load_rig_config(_write(tmp_path, example)).reflected_arm == "event"
    example["optics"] = {"reflected_arm": "frame"}
    assert load_rig_config(_write(tmp_path, example)).reflected_arm == "frame"
