"""The PySpin frame-camera backend against a fake PySpin module (no camera, no SDK)."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
from fakes import fake_pyspin as fps

from rig.devices import DeviceError, FrameCameraSettings, GrabTimeout
from rig.registry import BackendUnavailable, create_device

W, H = 64, 48


@pytest.fixture
def sdk(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpin", fps)
    return fps


def _cam(sdk, serial=None, **spec):
    cams = sdk.reset(fps.CameraSpec(width=W, height=H, **spec),
                     fps.CameraSpec(serial="22000002", width=W, height=H))
    return cams, create_device("frame_camera", "pyspin", serial=serial)


def test_missing_sdk_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpin", None)  # import PySpin -> ImportError
    with pytest.raises(BackendUnavailable) as err:
        create_device("frame_camera", "pyspin")
    msg = str(err.value)
    assert "\n" not in msg and "PySpin" in msg and "Spinnaker" in msg


def test_open_by_serial_and_first(sdk):
    cams, cam = _cam(sdk, serial="22000002")
    cam.open()
    assert cam.info().serial == "22000002" and cams[1].initialized and not cams[0].initialized
    assert (cam.width, cam.height) == (W, H)
    cam.close()
    first = create_device("frame_camera", "pyspin")
    first.open()
    assert first.info().serial == "22000001" and first.info().model == "Blackfly S BFS-U3-32S4C"
    first.close()
    assert sdk.world().instances == 0


def test_open_unknown_serial_and_no_camera(sdk):
    _, cam = _cam(sdk, serial="99")
    with pytest.raises(DeviceError, match="serial 99"):
        cam.open()
    assert sdk.world().instances == 0  # the system instance was released on failure
    sdk.reset()
    cam = create_device("frame_camera", "pyspin")
    with pytest.raises(DeviceError, match="no FLIR camera found"):
        cam.open()


def test_configure_resets_and_applies_everything(sdk):
    cams, cam = _cam(sdk)
    fake = cams[0]
    assert fake._enum("TriggerMode") == "On"  # left dirty by "another program"
    cam.open()
    assert "UserSetLoad" in fake.events
    cam.configure(FrameCameraSettings(exposure_us=4000.0, gain_db=3.0, trigger_source="Line3",
                                      buffer_count=12))
    assert fake._enum("TriggerMode") == "On"
    assert fake._enum("TriggerSource") == "Line3"
    assert fake._enum("TriggerSelector") == "FrameStart"
    assert fake._enum("TriggerActivation") == "RisingEdge"
    assert fake._enum("TriggerOverlap") == "ReadOut"
    assert fake._enum("ExposureAuto") == "Off" and fake._nodes["ExposureTime"].GetValue() == 4000.0
    assert fake._enum("GainAuto") == "Off" and fake._nodes["Gain"].GetValue() == 3.0
    assert fake._enum("PixelFormat") == "BayerRG8"
    assert fake.chunk_enabled() == {"FrameID", "Timestamp", "ExposureTime", "Gain"}
    assert fake._stream_nodes["StreamBufferHandlingMode"].symbolic == "OldestFirst"
    assert fake._stream_nodes["StreamBufferCountManual"].GetValue() == 12
    applied = cam.info().extra["applied"]
    assert applied["trigger"]["source"] == "Line3" and applied["exposure_us"] == 4000.0
    cam.close()


def test_trigger_source_is_locked_while_trigger_mode_on(sdk):
    cams, cam = _cam(sdk)
    cam.open()
    cam.configure(FrameCameraSettings(trigger_source="Line3"))
    node = cams[0]._nodes["TriggerSource"]
    with pytest.raises(sdk.SpinnakerException) as err:  # the fake enforces what the camera does
        node.SetIntValue(node.GetEntryByName("Line0").GetValue())
    assert err.value.errorcode == sdk.SPINNAKER_ERR_GENICAM_ACCESS == -2006
    cam.configure(FrameCameraSettings(trigger_source="Line0"))  # the backend turns TriggerMode Off first
    assert cams[0]._enum("TriggerSource") == "Line0" and cams[0]._enum("TriggerMode") == "On"
    with pytest.raises(DeviceError, match="no entry 'Line7'.*Line3"):
        cam.configure(FrameCameraSettings(trigger_source="Line7"))
    cam.close()


def test_free_running_when_no_trigger_source(sdk):
    cams, cam = _cam(sdk)
    cam.open()
    cam.configure(FrameCameraSettings(trigger_source=None))
    assert cams[0]._enum("TriggerMode") == "Off"
    cam.start()
    frames = [cam.grab(0.1) for _ in range(3)]
    assert [f.frame_id for f in frames] == [0, 1, 2]
    cam.close()


@pytest.mark.parametrize("line", ["Line1", "Line2"])
def test_exposure_active_on_output_lines(sdk, line):
    cams, cam = _cam(sdk)
    cam.open()
    cam.configure(FrameCameraSettings(strobe_line=line))
    fake = cams[0]
    fake._nodes["LineSelector"].SetIntValue(fake._nodes["LineSelector"].GetEntryByName(line).GetValue())
    assert fake._enum("LineMode") == "Output" and fake._enum("LineSource") == "ExposureActive"
    assert cam.info().extra["applied"]["strobe"] == {"line": line, "source": "ExposureActive"}
    cam.close()


def test_exposure_active_on_an_input_line_is_refused(sdk):
    _, cam = _cam(sdk)
    cam.open()
    with pytest.raises(DeviceError, match="input-only"):
        cam.configure(FrameCameraSettings(strobe_line="Line3"))
    cam.close()


def test_grab_times_out_without_trigger_and_copies_pixels(sdk):
    cams, cam = _cam(sdk)
    fake = cams[0]
    cam.open()
    cam.configure(FrameCameraSettings(exposure_us=2500.0, gain_db=1.5, trigger_source="Line3"))
    cam.start()
    t0 = time.monotonic()
    with pytest.raises(GrabTimeout):
        cam.grab(0.05)
    assert 0.04 <= time.monotonic() - t0 < 1.0
    fake.pulse("Line0", 2)  # the wrong line: no exposure
    with pytest.raises(GrabTimeout):
        cam.grab(0.02)
    fake.pulse("Line3", 5)
    frames = [cam.grab(0.5) for _ in range(5)]
    assert [f.frame_id for f in frames] == [0, 1, 2, 3, 4]
    expected = np.roll(fps.FakeCamera._pattern(H, W), 3, axis=1)
    assert frames[3].pixels.shape == (H, W) and frames[3].pixels.dtype == np.uint8
    assert np.array_equal(frames[3].pixels, expected)  # survives the driver reusing the buffer
    assert all(f.exposure_us == 2500.0 and f.gain_db == 1.5 for f in frames)
    assert all(f.pixel_format == "BayerRG8" and not f.incomplete for f in frames)
    offset = fake.spec.clock_offset_ns
    assert all(abs((f.t_device_ns - f.t_host_ns) - offset) < 50_000_000 for f in frames)
    assert fake.outstanding == 0 and all(img.released for img in fake.delivered)
    assert cam.counts["timeouts"] == 2 and cam.counts["grabbed"] == 5
    cam.close()


def test_incomplete_images_are_flagged_counted_and_released(sdk):
    cams, cam = _cam(sdk)
    fake = cams[0]
    cam.open()
    cam.configure(FrameCameraSettings())
    cam.start()
    fake.pulse("Line3", 1)
    fake.fail_next(1)
    fake.pulse("Line3", 2)
    frames = [cam.grab(0.5) for _ in range(3)]
    assert [f.incomplete for f in frames] == [False, True, False]
    statuses = [img.GetImageStatus() for img in fake.delivered]
    assert statuses == [0, sdk.SPINNAKER_IMAGE_STATUS_DATA_INCOMPLETE, 0] and statuses[1] == 9
    assert [f.frame_id for f in frames] == [0, 1, 2]  # from the image when the chunk is missing
    assert cam.counts["incomplete"] == 1 and cam.counts["chunk_missing"] == 1
    assert fake.outstanding == 0
    cam.close()


def test_frame_id_wrap_and_camera_side_drops(sdk):
    cams, cam = _cam(sdk, frame_id_start=65533, frame_id_modulo=1 << 16)
    fake = cams[0]
    cam.open()
    cam.configure(FrameCameraSettings(buffer_count=2))
    cam.start()
    fake.pulse("Line3", 2)
    ids = [cam.grab(0.5).frame_id for _ in range(2)]
    fake.pulse("Line3", 2)
    ids += [cam.grab(0.5).frame_id for _ in range(2)]
    assert ids == [65533, 65534, 65535, 0]
    assert cam.counts["frame_id_gaps"] == 0
    fake.pulse("Line3", 4)  # two buffers: OldestFirst keeps ids 1, 2 and drops 3, 4
    ids = [cam.grab(0.5).frame_id for _ in range(2)]
    assert ids == [1, 2] and fake.dropped_no_buffer == 2
    fake.pulse("Line3", 1)
    assert cam.grab(0.5).frame_id == 5
    assert cam.counts["frame_id_gaps"] == 2
    cam.stop()
    assert cam.info().extra["stream_stats"]["StreamBufferUnderrunCount"] == 2
    cam.close()


def test_clock_latch_relates_camera_and_host(sdk):
    cams, cam = _cam(sdk)
    cam.open()
    cam.configure(FrameCameraSettings())
    cam.start()
    cam.stop()
    clock = cam.info().extra["clock"]
    assert len(clock) == 2
    for sample in clock:
        assert abs(sample["device_minus_host_ns"] - cams[0].spec.clock_offset_ns) < 5_000_000
    cam.close()


def test_teardown_order_even_while_streaming(sdk):
    cams, cam = _cam(sdk)
    fake = cams[0]
    cam.open()
    cam.configure(FrameCameraSettings())
    cam.start()
    with pytest.raises(DeviceError, match="while acquiring"):
        cam.configure(FrameCameraSettings())
    fake.pulse("Line3", 1)
    cam.grab(0.5)
    cam.close()  # no stop(): close must end acquisition, DeInit, then release the system
    assert fake.events[-2:] == ["EndAcquisition", "DeInit"]
    assert sdk.world().instances == 0 and sdk.world().released == 1
    cam.close()  # idempotent


def test_pipeline_records_fake_camera_frames(sdk, tmp_path):
    """The recorder's pipeline (acquisition thread -> queue -> writer) with this backend."""
    h5py = pytest.importorskip("h5py")
    from rig.recorder import FramePipeline
    from rig.session import FramesWriter

    cams, cam = _cam(sdk)
    fake = cams[0]
    cam.open()
    cam.configure(FrameCameraSettings())
    cam.start()
    writer = FramesWriter(tmp_path / "frames.h5", cam.width, cam.height, "BayerRG8")
    pipe = FramePipeline(cam, writer, queue_frames=8, grab_timeout_s=0.02)
    pipe.start()

    def pulses() -> None:
        for i in range(20):
            if i == 7:
                fake.fail_next(1)
            fake.pulse("Line3", 1)
            time.sleep(0.003)

    th = threading.Thread(target=pulses)
    th.start()
    th.join()
    deadline = time.monotonic() + 5
    while pipe.counts["received"] < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    pipe.stop()
    writer.close()
    cam.close()
    assert pipe.counts["received"] == 20 and pipe.counts["written"] == 20
    assert pipe.counts["dropped_queue_full"] == 0 and pipe.counts["incomplete"] == 1
    with h5py.File(tmp_path / "frames.h5", "r") as f:
        assert f["frames"].shape == (20, H, W)
        assert list(f["frame_id"][:]) == list(range(20))
        assert list(np.nonzero(f["incomplete"][:])[0]) == [7]
        assert np.array_equal(f["frames"][5], np.roll(fps.FakeCamera._pattern(H, W), 5, axis=1))


def test_the_fake_has_spinnaker_4_names_and_values(sdk):
    """PySpin exposes Spinnaker's enums by their C++ names (SpinnakerDefs.h of Spinnaker 4.0)."""
    assert (sdk.SPINNAKER_ERR_TIMEOUT, sdk.SPINNAKER_ERR_NOT_AVAILABLE, sdk.SPINNAKER_ERR_RESOURCE_IN_USE,
            sdk.SPINNAKER_ERR_NOT_INITIALIZED) == (-1011, -1014, -1004, -1002)
    genicam = (sdk.SPINNAKER_ERR_GENICAM_INVALID_ARGUMENT, sdk.SPINNAKER_ERR_GENICAM_OUT_OF_RANGE,
               sdk.SPINNAKER_ERR_GENICAM_LOGICAL, sdk.SPINNAKER_ERR_GENICAM_ACCESS)
    assert genicam == (-2001, -2002, -2005, -2006)
    assert (sdk.SPINNAKER_IMAGE_STATUS_MISSING_PACKETS, sdk.SPINNAKER_IMAGE_STATUS_DATA_INCOMPLETE,
            sdk.SPINNAKER_IMAGE_STATUS_NO_SYSTEM_RESOURCES) == (3, 9, 12)
    for gone in ("GENICAM_ERR_ACCESS_DENIED", "GENICAM_ERR_ACCESS", "IMAGE_DATA_INCOMPLETE"):
        assert not hasattr(sdk, gone)  # never in PySpin 4 (the last two are Spinnaker 1.x/2.x names)
    cams, cam = _cam(sdk)
    cam.open()
    with pytest.raises(sdk.SpinnakerException) as err:
        sdk.CFloatPtr(cams[0]._nodes["PixelFormat"]).GetValue()  # an enumeration is no float
    assert err.value.errorcode == sdk.SPINNAKER_ERR_GENICAM_LOGICAL
    cam.close()
