"""One lifecycle for every device: the simulated devices refuse out-of-order calls exactly as the
SDK backends (run against their fake SDKs) and the serial trigger client do.

Each row of the table is one device with its calls mapped onto configure / start / stop / grab;
every check runs on every row, so a guard the simulator lacks (or words differently) fails here.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_metavision_hal as fhal
from fakes import fake_pyspin as fps

from rig.devices import (
    DeviceError,
    DeviceLifecycle,
    DeviceState,
    EventCameraSettings,
    FrameCamera,
    FrameCameraSettings,
    TriggerSettings,
)
from rig.registry import BackendUnavailable, create_device
from rig.sim.mcu import SimSerial
from rig.sim.world import SimConfig, SimRig

NOT_OPEN = "is not open (call open() first)"
SOFT = FrameCameraSettings(exposure_us=10_000.0, pixel_format="Mono8", trigger_source="Software",
                           buffer_count=8)


@dataclass
class Row:
    """A device and how the generic lifecycle calls map onto its API."""

    kind: str  # "event" | "frame" | "trigger"
    device: Any
    settings: Any
    raw_path: Path | None = None

    def configure(self) -> None:
        self.device.configure(self.settings)

    def start(self) -> None:
        if self.kind == "event":
            self.device.start_recording(self.raw_path)
        else:
            self.device.start()

    def stop(self) -> None:
        if self.kind == "event":
            self.device.stop_recording()
        else:
            self.device.stop()


def _sim_rig() -> SimRig:
    return SimRig(SimConfig(scenario="plane", scale=0.125))


def _sim_event(tmp: Path) -> Iterator[Row]:
    rig = _sim_rig()
    try:
        yield Row("event", rig.event_camera, EventCameraSettings(), tmp / "events.raw")
    finally:
        rig.close()


def _sim_frame(tmp: Path) -> Iterator[Row]:
    rig = _sim_rig()
    try:
        yield Row("frame", rig.frame_camera, FrameCameraSettings())
    finally:
        rig.close()


def _sim_trigger(tmp: Path) -> Iterator[Row]:
    rig = _sim_rig()
    try:
        yield Row("trigger", rig.trigger, TriggerSettings(rate_hz=20.0))  # runs until stop()
    finally:
        rig.close()


def _metavision(tmp: Path) -> Iterator[Row]:
    saved = sys.modules.get("metavision_hal")
    sys.modules["metavision_hal"] = fhal
    fhal.reset(fhal.CameraSpec())
    cam = create_device("event_camera", "metavision")
    try:
        yield Row("event", cam, EventCameraSettings(trigger_in_channel=0), tmp / "events.raw")
    finally:
        cam.close()
        if saved is None:
            sys.modules.pop("metavision_hal", None)
        else:
            sys.modules["metavision_hal"] = saved


def _pyspin(tmp: Path) -> Iterator[Row]:
    saved = sys.modules.get("PySpin")
    sys.modules["PySpin"] = fps
    fps.reset(fps.CameraSpec(width=64, height=48))
    cam = create_device("frame_camera", "pyspin")
    try:
        yield Row("frame", cam, FrameCameraSettings())
    finally:
        cam.close()
        if saved is None:
            sys.modules.pop("PySpin", None)
        else:
            sys.modules["PySpin"] = saved


@pytest.fixture(scope="module")
def aravis_fake() -> Iterator[Any]:
    """Aravis's GigE Vision fake camera on 127.0.0.1 (skips where Aravis is missing)."""
    try:
        from rig.backends.aravis import load_aravis

        arv = load_aravis()
    except BackendUnavailable as exc:
        pytest.skip(f"Aravis not installed here: {exc}")
    fake = arv.GvFakeCamera.new("127.0.0.1", "RIGTEST02")
    if fake is None or not fake.is_running():
        pytest.skip("Aravis GvFakeCamera could not start on 127.0.0.1")
    yield fake
    del fake
    gc.collect()


def _aravis(tmp: Path) -> Iterator[Row]:
    cam = create_device("frame_camera", "aravis", address="127.0.0.1")
    try:
        yield Row("frame", cam, SOFT)
    finally:
        cam.close()
        gc.collect()  # release the control channel before the next open


def _serial_trigger(tmp: Path) -> Iterator[Row]:
    trig = create_device("trigger", "serial", port=SimSerial(), timeout_s=0.5)
    try:
        yield Row("trigger", trig, TriggerSettings(rate_hz=20.0))
    finally:
        trig.close()


MAKERS: dict[str, Callable[[Path], Iterator[Row]]] = {
    "sim-event": _sim_event, "metavision": _metavision,
    "sim-frame": _sim_frame, "pyspin": _pyspin, "aravis": _aravis,
    "sim-trigger": _sim_trigger, "serial-trigger": _serial_trigger,
}
CAMERAS = [name for name in MAKERS if "trigger" not in name]
FRAME_CAMERAS = ["sim-frame", "pyspin", "aravis"]


@pytest.fixture(params=list(MAKERS))
def row(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Row]:
    if request.param == "aravis":
        request.getfixturevalue("aravis_fake")
    yield from MAKERS[request.param](tmp_path)


def _refused(call: Callable[[], Any], suffix: str) -> str:
    with pytest.raises(DeviceError) as err:
        call()
    message = str(err.value)
    assert message.endswith(suffix), message
    return message


def test_every_device_uses_the_lifecycle_base(row: Row) -> None:
    assert isinstance(row.device, DeviceLifecycle)
    assert row.device.state is DeviceState.CLOSED and not row.device.is_open


def test_configure_and_start_before_open_are_refused(row: Row) -> None:
    message = _refused(row.configure, NOT_OPEN)
    assert message.startswith(row.device.device_name)
    _refused(row.start, NOT_OPEN)
    assert row.device.state is DeviceState.CLOSED


def test_states_follow_open_configure_start_stop_close(row: Row) -> None:
    dev = row.device
    dev.open()
    assert dev.state is DeviceState.OPEN
    row.configure()
    assert dev.state is DeviceState.CONFIGURED
    row.start()
    assert dev.state is DeviceState.RUNNING and dev.is_running
    row.stop()
    assert dev.state is DeviceState.CONFIGURED
    dev.close()
    assert dev.state is DeviceState.CLOSED
    _refused(row.configure, NOT_OPEN)


def test_start_before_configure_is_allowed(row: Row) -> None:
    """No backend refuses it (each runs on its power-on settings), so the simulator does not."""
    row.device.open()
    row.start()
    assert row.device.state is DeviceState.RUNNING
    row.stop()
    assert row.device.state is DeviceState.OPEN


@pytest.mark.parametrize("row", CAMERAS, indirect=True)
def test_configure_while_running_is_refused(row: Row) -> None:
    dev = row.device
    dev.open()
    row.configure()
    row.start()
    stop = "stop_recording()" if row.kind == "event" else "stop()"
    word = "recording" if row.kind == "event" else "acquiring"
    _refused(row.configure, f"configure() while {word}; {stop} first")
    assert dev.state is DeviceState.RUNNING
    row.stop()
    row.configure()  # fine again once stopped


@pytest.mark.parametrize("row", ["sim-trigger", "serial-trigger"], indirect=True)
def test_trigger_configure_and_start_while_running_are_refused_by_the_firmware(row: Row) -> None:
    """The pulse train's state lives on the MCU, which answers ERR busy (a DeviceError)."""
    row.device.open()
    row.configure()
    row.start()
    _refused(row.configure, "busy")
    _refused(row.start, "busy")
    row.stop()


@pytest.mark.parametrize("row", ["sim-event", "metavision"], indirect=True)
def test_start_recording_twice_is_refused(row: Row) -> None:
    row.device.open()
    row.start()
    _refused(row.start, "start_recording() while recording; stop_recording() first")
    row.stop()


@pytest.mark.parametrize("row", FRAME_CAMERAS, indirect=True)
def test_grab_before_start_is_refused(row: Row) -> None:
    dev = row.device
    _refused(lambda: dev.grab(0.01), NOT_OPEN)
    dev.open()
    row.configure()
    _refused(lambda: dev.grab(0.01), "grab() before start()")
    row.start()
    row.stop()
    _refused(lambda: dev.grab(0.01), "grab() before start()")


@pytest.mark.parametrize("row", FRAME_CAMERAS, indirect=True)
def test_frame_cameras_start_twice_is_a_no_op(row: Row) -> None:
    row.device.open()
    row.start()
    row.start()
    assert row.device.is_running
    row.stop()


@pytest.mark.parametrize(("row", "scheme"), [
    ("sim-frame", (None, 0, 0)),  # 64-bit ids counting exposures from 0 at start()
    ("pyspin", (None, 0, None)),
    ("aravis", (65535, 1, None)),  # GigE Vision 1.x: ids 1..65535, known from open() on
], indirect=["row"])
def test_frame_cameras_state_their_frame_id_scheme(row: Row, scheme: tuple) -> None:
    dev = row.device
    dev.open()
    assert isinstance(dev, FrameCamera)
    assert (dev.frame_id_modulus, dev.frame_id_first, dev.frame_id_first_exposure) == scheme


def test_sim_trigger_refused_before_open_leaves_the_world_clock_alone() -> None:
    rig = _sim_rig()
    try:
        before = rig.mcu.next_rise_us(), rig.mcu.now_us
        _refused(rig.trigger.start, NOT_OPEN)
        assert (rig.mcu.next_rise_us(), rig.mcu.now_us) == before
    finally:
        rig.close()
