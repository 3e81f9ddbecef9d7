"""FLIR Spinnaker (PySpin) frame camera: the Blackfly S BFS-U3-32S4C behind `FrameCamera`.

PySpin is imported when the backend is created, never at package import, so the toolkit runs
without the SDK; a missing SDK is one `BackendUnavailable` line. Configuration goes through the
GenICam node maps by standard feature names (shared plan in `_genicam`); every image handed out by
`GetNextImage` is released in a `finally`, and `close` tears down in Spinnaker's required order
(EndAcquisition, DeInit, drop the camera reference, ReleaseInstance).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rig.backends._genicam import (
    AppliedSettings,
    ClockSample,
    FrameIdTracker,
    apply_frame_settings,
    import_sdk,
    latch_clock,
)
from rig.devices import (
    DeviceError,
    DeviceInfo,
    Frame,
    FrameCameraLifecycle,
    FrameCameraSettings,
    GrabTimeout,
)

INSTALL_HINT = ("install the FLIR Spinnaker SDK and the matching spinnaker_python (PySpin) wheel "
                "from FLIR's site, see docs/hardware.md")
#: Stream statistics read at stop (whichever this Spinnaker version has).
STREAM_STATS = ("StreamTotalBufferCount", "StreamFailedBufferCount", "StreamBufferUnderrunCount",
                "StreamDroppedFrameCount", "StreamLostFrameCount", "StreamIncompleteFrameCount")


def load_pyspin() -> Any:
    return import_sdk("PySpin", "the pyspin frame-camera backend", INSTALL_HINT)


class _NodeMapAccess:
    """`FeatureAccess` over a PySpin INodeMap (CEnumerationPtr, CFloatPtr, ... by feature name)."""

    def __init__(self, ps: Any, nodemap: Any) -> None:
        self.ps, self.nodemap = ps, nodemap

    def _node(self, name: str) -> Any:
        return self.nodemap.GetNode(name)

    def available(self, name: str) -> bool:
        node = self._node(name)  # a command is write-only, a status value read-only
        return node is not None and (self.ps.IsReadable(node) or self.ps.IsWritable(node))

    def writable(self, name: str) -> bool:
        node = self._node(name)
        return node is not None and self.ps.IsWritable(node)

    def enum_entries(self, name: str) -> list[str]:
        node = self.ps.CEnumerationPtr(self._node(name))
        return [self.ps.CEnumEntryPtr(e).GetSymbolic() for e in node.GetEntries()
                if self.ps.IsReadable(e)]

    def get_enum(self, name: str) -> str:
        return self.ps.CEnumerationPtr(self._node(name)).GetCurrentEntry().GetSymbolic()

    def set_enum(self, name: str, entry: str) -> None:
        node = self.ps.CEnumerationPtr(self._node(name))
        value = node.GetEntryByName(entry)
        if value is None or not self.ps.IsReadable(value):
            raise DeviceError(f"{name} has no entry {entry!r}")
        node.SetIntValue(value.GetValue())

    def get_float(self, name: str) -> float:
        return float(self.ps.CFloatPtr(self._node(name)).GetValue())

    def set_float(self, name: str, value: float) -> None:
        node = self.ps.CFloatPtr(self._node(name))
        node.SetValue(min(max(value, node.GetMin()), node.GetMax()))

    def get_int(self, name: str) -> int:
        return int(self.ps.CIntegerPtr(self._node(name)).GetValue())

    def set_int(self, name: str, value: int) -> None:
        self.ps.CIntegerPtr(self._node(name)).SetValue(int(value))

    def set_bool(self, name: str, value: bool) -> None:
        self.ps.CBooleanPtr(self._node(name)).SetValue(bool(value))

    def execute(self, name: str) -> None:
        self.ps.CCommandPtr(self._node(name)).Execute()

    def get_string(self, name: str) -> str:
        node = self._node(name)
        if node is None or not self.ps.IsReadable(node):
            return ""
        return str(self.ps.CStringPtr(node).GetValue())


class SpinnakerFrameCamera(FrameCameraLifecycle):
    """A FLIR camera through PySpin: hardware-triggered, chunk data on, OldestFirst buffering.

    `serial`: the camera's serial number (None: the first camera). `reset_to_defaults`: load the
    Default user set on open, so settings left by another program never leak into a recording.
    """

    backend = "pyspin"

    def __init__(self, serial: str | None = None, *, reset_to_defaults: bool = True,
                 **_ignored: Any) -> None:
        self._ps = load_pyspin()
        self.serial = str(serial) if serial else None
        self.reset_to_defaults = reset_to_defaults
        self.width = 0
        self.height = 0
        self._system: Any = None
        self._cam: Any = None
        self._nodes: _NodeMapAccess | None = None
        self._stream: _NodeMapAccess | None = None
        self._applied = AppliedSettings()
        self._settings: FrameCameraSettings | None = None
        self._info: dict[str, str] = {}
        self._clock: list[ClockSample] = []
        self._ids = FrameIdTracker()
        self._stream_stats: dict[str, int] = {}
        self.counts = {"grabbed": 0, "incomplete": 0, "timeouts": 0, "frame_id_gaps": 0,
                       "chunk_missing": 0}

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def device_name(self) -> str:
        model = self._info.get("model") or "camera"
        return f"FLIR {model} {self._info.get('serial') or self.serial or ''}".strip()

    def open(self) -> None:
        ps = self._ps
        self._system = ps.System.GetInstance()
        cams = self._system.GetCameras()
        try:
            n = cams.GetSize()
            if n == 0:
                raise DeviceError("no FLIR camera found by Spinnaker (check the USB3 cable, udev rules "
                                  "and usbfs_memory_mb, see docs/hardware.md)")
            self._cam = cams.GetBySerial(self.serial) if self.serial else cams.GetByIndex(0)
            if self._cam is None or not self._cam.IsValid():
                self._cam = None
                raise DeviceError(f"no FLIR camera with serial {self.serial} ({n} camera(s) found)")
        except BaseException:
            cams.Clear()
            self._release_system()
            raise
        cams.Clear()
        try:
            self._cam.Init()
            self._nodes = _NodeMapAccess(ps, self._cam.GetNodeMap())
            self._stream = _NodeMapAccess(ps, self._cam.GetTLStreamNodeMap())
            tl = _NodeMapAccess(ps, self._cam.GetTLDeviceNodeMap())
            self._info = {"model": tl.get_string("DeviceModelName"),
                          "serial": tl.get_string("DeviceSerialNumber"),
                          "firmware": tl.get_string("DeviceVersion")}
            if self.reset_to_defaults and self._nodes.available("UserSetSelector"):
                self._nodes.set_enum("UserSetSelector", "Default")
                self._nodes.execute("UserSetLoad")
            self.width = self._nodes.get_int("Width")
            self.height = self._nodes.get_int("Height")
        except (ps.SpinnakerException, DeviceError) as exc:
            self.close()
            raise DeviceError(f"{self.device_name}: cannot initialise: {exc}") from exc
        self._mark_open()

    def close(self) -> None:
        """EndAcquisition, DeInit, drop every camera reference, then ReleaseInstance."""
        if self._cam is not None:
            try:
                if self.is_running:
                    self.stop()
                if self._cam.IsInitialized():
                    self._cam.DeInit()
            finally:
                self._nodes = self._stream = None
                self._cam = None  # the reference must go before ReleaseInstance
        self._release_system()
        self._mark_closed()

    def _release_system(self) -> None:
        if self._system is not None:
            system, self._system = self._system, None
            system.ReleaseInstance()

    def info(self) -> DeviceInfo:
        extra: dict[str, Any] = {"applied": self._applied.to_dict(),
                                 "clock": [c.to_dict() for c in self._clock],
                                 "counts": dict(self.counts), "stream_stats": dict(self._stream_stats)}
        return DeviceInfo(kind="frame_camera", backend=self.backend,
                          model=self._info.get("model", ""), serial=self._info.get("serial", ""),
                          firmware=self._info.get("firmware", ""), extra=extra)

    # -- configuration ---------------------------------------------------------------------------
    def configure(self, settings: FrameCameraSettings) -> None:
        self._require_stopped("configure()")
        nodes, stream = self._nodes, self._stream
        assert nodes is not None and stream is not None
        try:
            self._applied = apply_frame_settings(nodes, settings, self.device_name)
            stream.set_enum("StreamBufferHandlingMode", "OldestFirst")
            if stream.available("StreamBufferCountMode"):
                stream.set_enum("StreamBufferCountMode", "Manual")
                stream.set_int("StreamBufferCountManual", settings.buffer_count)
        except self._ps.SpinnakerException as exc:
            raise DeviceError(f"{self.device_name}: configuration failed: {exc}") from exc
        self.width, self.height = self._applied.width, self._applied.height
        self._settings = settings
        self._mark_configured()

    # -- acquisition -----------------------------------------------------------------------------
    def start(self) -> None:
        self._require_open()
        if self.is_running:
            return
        nodes = self._nodes
        assert nodes is not None
        sample = latch_clock(nodes)
        if sample is not None:
            self._clock.append(sample)
        try:
            self._cam.BeginAcquisition()
        except self._ps.SpinnakerException as exc:
            raise DeviceError(f"{self.device_name}: BeginAcquisition failed: {exc}") from exc
        self._mark_running()
        self._ids = FrameIdTracker()

    def stop(self) -> None:
        if not self.is_running:
            return
        self._mark_stopped()
        try:
            self._cam.EndAcquisition()
        except self._ps.SpinnakerException as exc:
            raise DeviceError(f"{self.device_name}: EndAcquisition failed: {exc}") from exc
        nodes, stream = self._nodes, self._stream
        if stream is not None:
            self._stream_stats = {n: stream.get_int(n) for n in STREAM_STATS if stream.available(n)}
        if nodes is not None:
            sample = latch_clock(nodes)
            if sample is not None:
                self._clock.append(sample)

    def grab(self, timeout_s: float) -> Frame:
        """Next image, pixels copied out and the image released; `GrabTimeout` when none came."""
        self._require_running("grab()")
        ps = self._ps
        timeout_ms = max(1, int(round(timeout_s * 1000.0)))
        try:
            image = self._cam.GetNextImage(timeout_ms)
        except ps.SpinnakerException as exc:
            if getattr(exc, "errorcode", None) == ps.SPINNAKER_ERR_TIMEOUT:
                self.counts["timeouts"] += 1
                raise GrabTimeout(f"{self.device_name}: no image within {timeout_ms} ms") from None
            raise DeviceError(f"{self.device_name}: GetNextImage failed: {exc}") from exc
        t_host_ns = time.monotonic_ns()
        try:
            return self._to_frame(image, t_host_ns)
        finally:
            image.Release()

    def _to_frame(self, image: Any, t_host_ns: int) -> Frame:
        ps = self._ps
        incomplete = bool(image.IsIncomplete())
        shape: tuple[int, ...] = (self.height, self.width)
        if self._applied.pixel_format == "RGB8":
            shape = (*shape, 3)
        try:
            pixels = np.array(image.GetNDArray(), dtype=np.uint8, copy=True)
        except ps.SpinnakerException:
            pixels = np.zeros(shape, np.uint8)
        if pixels.shape != shape:  # a short (incomplete) buffer: keep the shape, flag it
            full = np.zeros(shape, np.uint8)
            flat = pixels.reshape(-1)[: full.size]
            full.reshape(-1)[: flat.size] = flat
            pixels, incomplete = full, True
        exposure_us, gain_db = self._applied.exposure_us, self._applied.gain_db
        frame_id, t_device_ns = int(image.GetFrameID()), int(image.GetTimeStamp())
        chunks = self._applied.chunks
        if chunks:
            try:
                chunk = image.GetChunkData()
                if "FrameID" in chunks:
                    frame_id = int(chunk.GetFrameID())
                if "Timestamp" in chunks:
                    t_device_ns = int(chunk.GetTimestamp())
                if "ExposureTime" in chunks:
                    exposure_us = float(chunk.GetExposureTime())
                if "Gain" in chunks:
                    gain_db = float(chunk.GetGain())
            except ps.SpinnakerException:  # an incomplete image can lack its chunk block
                self.counts["chunk_missing"] += 1
        self.counts["grabbed"] += 1
        if incomplete:
            self.counts["incomplete"] += 1
        self.counts["frame_id_gaps"] += self._ids.update(frame_id)
        return Frame(pixels=pixels, frame_id=frame_id, t_device_ns=t_device_ns, t_host_ns=t_host_ns,
                     exposure_us=exposure_us, gain_db=gain_db, incomplete=incomplete,
                     pixel_format=self._applied.pixel_format)


def list_cameras() -> list[dict[str, str]]:
    """Serial, model and firmware of every camera Spinnaker sees (used by `rig devices`)."""
    ps = load_pyspin()
    system = ps.System.GetInstance()
    found = []
    try:
        cams = system.GetCameras()
        try:
            for i in range(cams.GetSize()):
                cam = cams.GetByIndex(i)
                tl = _NodeMapAccess(ps, cam.GetTLDeviceNodeMap())
                found.append({"serial": tl.get_string("DeviceSerialNumber"),
                              "model": tl.get_string("DeviceModelName"),
                              "firmware": tl.get_string("DeviceVersion")})
                del cam, tl  # Spinnaker refuses ReleaseInstance while a camera is referenced
        finally:
            cams.Clear()
    finally:
        system.ReleaseInstance()
    return found
