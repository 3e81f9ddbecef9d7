"""The `devices` subcommand of `rig` with fake SDKs: lists what each backend sees, one line per
missing SDK.

Never runs Aravis discovery: the aravis backend is either left out (--backend) or its listing
function replaced.
"""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from fakes import fake_metavision_hal as fhal
from fakes import fake_pyspin as fps

from rig.cli import main


@pytest.fixture(params=fhal.OPENEB_VERSIONS)
def sdks(request, monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpin", fps)
    monkeypatch.setitem(sys.modules, "metavision_hal", fhal)
    fps.reset(fps.CameraSpec(serial="22000001", width=32, height=16),
              fps.CameraSpec(serial="22000002", width=32, height=16))
    fhal.reset(fhal.CameraSpec(serial="00050423"), openeb_version=request.param)
    yield
    fhal.reset()


def test_lists_cameras_of_each_backend(sdks):
    res = CliRunner().invoke(main, ["devices", "--backend", "pyspin", "--backend", "metavision"])
    assert res.exit_code == 0, res.output
    assert "frame_camera/pyspin: 2 found" in res.output
    assert "serial=22000001" in res.output and "serial=22000002" in res.output
    assert "model=Blackfly S BFS-U3-32S4C" in res.output
    assert "event_camera/metavision: 1 found" in res.output and "serial=00050423" in res.output
    assert "plugin=hal_plugin_imx636_evk4" in res.output  # CameraDescription.plugin_name, 4.6 and 5.x
    assert "aravis" not in res.output
    assert fps.world().instances == 0  # the Spinnaker system was released


def test_missing_sdks_give_one_line_each(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpin", None)
    monkeypatch.setitem(sys.modules, "metavision_hal", None)
    monkeypatch.setitem(sys.modules, "gi", None)
    res = CliRunner().invoke(main, ["devices", "--backend", "pyspin", "--backend", "metavision",
                                    "--backend", "aravis"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("event_camera/metavision: not installed:") and "OpenEB" in lines[0]
    assert lines[1].startswith("frame_camera/pyspin: not installed:") and "Spinnaker" in lines[1]
    assert lines[2].startswith("frame_camera/aravis: not installed:") and "gir1.2-aravis-0.8" in lines[2]


def test_json_and_aravis_listing_without_discovery(sdks, monkeypatch):
    import rig.backends.aravis as arv_backend

    calls = []
    monkeypatch.setattr(arv_backend, "list_cameras",
                        lambda: calls.append(1) or [{"id": "Fake-RIG1", "serial": "RIG1"}])
    res = CliRunner().invoke(main, ["devices", "--json", "--backend", "aravis", "--backend", "pyspin"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert calls == [1]
    assert report["frame_camera/aravis"] == {"available": True, "devices": [{"id": "Fake-RIG1",
                                                                              "serial": "RIG1"}]}
    assert [d["serial"] for d in report["frame_camera/pyspin"]["devices"]] == ["22000001", "22000002"]
