"""rig.yaml loading: backends, serials, wiring checks, settings types, device creation."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml
from fakes import fake_metavision_hal as fhal
from fakes import fake_pyspin as fps

from rig.rigconfig import RigConfigError, load_rig_config, parse_rig_config

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
