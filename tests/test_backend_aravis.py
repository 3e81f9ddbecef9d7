"""The Aravis frame-camera backend against Aravis's own GigE Vision fake camera on 127.0.0.1.

One fake camera per process (it binds the GigE Vision control port on loopback), opened by IP
address: never by discovery, which broadcasts on every interface. The fake obeys software
triggers, times out without one, numbers frames 65400.. so ids wrap 65535 -> 1 within a test, and
fills Mono8 frames with a ramp `(x + y + frame_id) % 255` (at 10 ms exposure, gain 0): ground
truth for the pixels.
"""

from __future__ import annotations

import gc
import sys
import time

import numpy as np
import pytest

from rig.devices import DeviceError, FrameCameraSettings, GrabTimeout
from rig.registry import BackendUnavailable, create_device

ADDRESS = "127.0.0.1"
SERIAL = "RIGTEST01"
W, H = 96, 64


def _aravis():
    try:
        from rig.backends.aravis import load_aravis

        return load_aravis()
    except BackendUnavailable as exc:
        pytest.skip(f"Aravis not installed here: {exc}")


@pytest.fixture(scope="module")
def fake_camera():
    arv = _aravis()
    fake = arv.GvFakeCamera.new(ADDRESS, SERIAL)
    if fake is None or not fake.is_running():
        pytest.skip("Aravis GvFakeCamera could not start on 127.0.0.1 (GigE Vision port 3956 busy?)")
    yield fake
    del fake
    gc.collect()


@pytest.fixture
def cam(fake_camera):
    fake_camera.set_property("gvsp-lost-ratio", 0.0)
    camera = create_device("frame_camera", "aravis", address=ADDRESS)
    camera.open()
    fa = camera._fa
    fa.set_int("Width", W)
    fa.set_int("Height", H)
    yield camera
    camera.close()
    gc.collect()  # let Aravis release the control channel before the next test opens it


def _ramp(frame_id: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx + yy + frame_id) % 255).astype(np.uint8)


SOFT = FrameCameraSettings(exposure_us=10_000.0, pixel_format="Mono8", trigger_source="Software",
                           buffer_count=8)


def test_missing_gi_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "gi", None)
    with pytest.raises(BackendUnavailable) as err:
        create_device("frame_camera", "aravis", address=ADDRESS)
    msg = str(err.value)
    assert "\n" not in msg and "PyGObject" in msg and "gir1.2-aravis-0.8" in msg


def test_open_by_address_reports_identity(cam):
    info = cam.info()
    assert info.serial == SERIAL and "Fake" in info.model
    assert info.extra["transport"] == "GigE Vision"


def test_configure_by_standard_feature_names(cam):
    cam.configure(SOFT)
    fa = cam._fa
    assert fa.get_enum("TriggerMode") == "On" and fa.get_enum("TriggerSource") == "Software"
    assert fa.get_enum("TriggerSelector") == "FrameStart"
    assert fa.get_enum("PixelFormat") == "Mono8"
    assert (cam.width, cam.height) == (W, H)
    applied = cam.info().extra["applied"]
    assert applied["exposure_feature"] == "ExposureTimeAbs"  # the fake has the pre-SFNC name
    assert applied["exposure_us"] == pytest.approx(10_000.0)
    # What the fake lacks is listed, not silently assumed.
    assert {"TriggerOverlap", "Gain", "ChunkModeActive"} <= set(applied["skipped"])
    cam.configure(FrameCameraSettings(pixel_format="BayerRG8", trigger_source="Line0"))
    assert fa.get_enum("PixelFormat") == "BayerRG8" and fa.get_enum("TriggerSource") == "Line0"


def test_configure_errors_name_the_problem(cam):
    with pytest.raises(DeviceError, match="TriggerSource has no entry 'Line3'.*Line0, Software"):
        cam.configure(FrameCameraSettings(trigger_source="Line3"))
    with pytest.raises(DeviceError, match="no gain feature"):
        cam.configure(FrameCameraSettings(trigger_source="Software", gain_db=6.0))
    with pytest.raises(DeviceError, match="no LineSelector"):
        cam.configure(FrameCameraSettings(trigger_source="Software", strobe_line="Line1"))


def test_software_trigger_pixels_ids_and_timeout(cam):
    cam.configure(SOFT)
    cam.start()
    t0 = time.monotonic()
    with pytest.raises(GrabTimeout):
        cam.grab(0.15)  # no trigger, no frame
    assert time.monotonic() - t0 >= 0.14
    frames = []
    for _ in range(3):
        cam.software_trigger()
        frames.append(cam.grab(2.0))
    ids = [f.frame_id for f in frames]
    assert ids[1] == ids[0] + 1 and ids[2] == ids[1] + 1
    for f in frames:
        assert f.pixels.shape == (H, W) and not f.incomplete and f.pixel_format == "Mono8"
        assert np.array_equal(f.pixels, _ramp(f.frame_id))
        assert abs(f.t_host_ns - time.monotonic_ns()) < 10e9
        assert f.exposure_us == pytest.approx(10_000.0)
    assert frames[2].t_device_ns > frames[0].t_device_ns
    cam.stop()
    stats = cam.info().extra["stream_stats"]
    assert stats["n_completed_buffers"] == 3 and stats["n_failures"] == 0


def test_frame_ids_wrap_65535_to_1_without_false_gaps(cam, fake_camera):
    cam.configure(FrameCameraSettings(pixel_format="Mono8", trigger_source=None, buffer_count=16))
    cam._fa.set_float("AcquisitionFrameRate", 1000.0)  # free running, fast
    cam.start()
    ids: list[int] = []
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        ids.append(cam.grab(1.0).frame_id)
        if len(ids) > 2 and ids[-1] < ids[-2]:
            ids += [cam.grab(1.0).frame_id for _ in range(3)]
            break
    cam.stop()
    wrap = next(i for i in range(1, len(ids)) if ids[i] < ids[i - 1])
    assert ids[wrap - 1] == 65535 and ids[wrap] == 1  # 0 is reserved on GigE Vision
    assert 0 not in ids
    # Frames the stream lost are counted as gaps; the wrap itself is not a gap.
    expected_gaps = sum((b - a) % 65535 - 1 for a, b in zip(ids, ids[1:], strict=False))
    assert cam.counts["frame_id_gaps"] == expected_gaps


def test_lost_packets_give_incomplete_frames(cam, fake_camera):
    """Half the stream packets lost: frames arrive flagged incomplete with their shape kept.

    A frame can also vanish entirely (all its packets, or the ones Aravis needs to open a frame,
    lost), as on a real lossy link: that is a `GrabTimeout`, counted, and the test goes on.
    """
    cam.packet_resend = False
    cam.configure(SOFT)
    cam.start()
    fake_camera.set_property("gvsp-lost-ratio", 0.5)
    flags: list[bool] = []
    lost = 0
    try:
        for _ in range(12):
            cam.software_trigger()
            try:
                frame = cam.grab(1.0)
            except GrabTimeout:
                lost += 1
                continue
            flags.append(frame.incomplete)
            assert frame.pixels.shape == (H, W)  # shape kept, flagged
            if sum(flags) >= 2:
                break
    finally:
        fake_camera.set_property("gvsp-lost-ratio", 0.0)
    assert any(flags), f"no incomplete frame in {len(flags)} delivered ({lost} lost)"
    assert cam.counts["incomplete"] == sum(flags)
    assert cam.counts["timeouts"] == lost
    # Late completions of lossy frames may still be queued: the first clean frame is exact.
    for _ in range(6):
        cam.software_trigger()
        good = cam.grab(3.0)
        if not good.incomplete:
            break
    assert not good.incomplete and np.array_equal(good.pixels, _ramp(good.frame_id))
    cam.stop()
    assert cam.info().extra["stream_stats"]["n_missing_packets"] > 0


def test_unknown_address_is_a_device_error(fake_camera):
    camera = create_device("frame_camera", "aravis", address="127.0.0.2")
    with pytest.raises(DeviceError, match="127.0.0.2"):
        camera.open()
