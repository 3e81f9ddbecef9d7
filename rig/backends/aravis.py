"""GenICam frame camera through Aravis 0.8 (PyGObject), behind `FrameCamera`.

Why: it drives the Blackfly S over USB3 Vision (and any GigE Vision camera) with free software
only, by the same standard feature names as the PySpin backend (shared plan in `_genicam`).
Aravis is imported when the backend is created; a missing Aravis or PyGObject is one
`BackendUnavailable` line. Every buffer popped from the stream is pushed back in a `finally`.

Device ids: an IP address ("192.168.1.20", also how the tests reach Aravis's GigE Vision fake
camera on 127.0.0.1), a serial number or a full Aravis device id; None opens the first camera
(discovery: only ever done at a user's request, never in tests).
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
from rig.registry import BackendUnavailable

INSTALL_HINT = ("apt install gir1.2-aravis-0.8 libaravis-0.8-0 (plus libgirepository1.0-dev "
                "libcairo2-dev pkg-config to build PyGObject) and pip install 'PyGObject<3.51'")
STREAM_STATS = ("n_completed_buffers", "n_failures", "n_underruns", "n_timeouts", "n_aborted",
                "n_missing_frames", "n_missing_packets", "n_resent_packets", "n_transferred_bytes")
#: GigE Vision 1.x block ids are 16 bit, 0 reserved: they run 1..65535 and wrap to 1.
GV_FRAME_ID_MODULUS = 65535


def load_aravis() -> Any:
    """`gi.repository.Aravis` 0.8, or `BackendUnavailable` saying what to install."""
    try:
        import gi
    except ImportError as exc:
        raise BackendUnavailable(f"the aravis frame-camera backend needs PyGObject ({exc}): "
                                 f"{INSTALL_HINT}") from None
    try:
        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ValueError, ImportError) as exc:
        raise BackendUnavailable(f"the aravis frame-camera backend needs Aravis 0.8 introspection data "
                                 f"({exc}): {INSTALL_HINT}") from None
    return Aravis


class _AravisAccess:
    """`FeatureAccess` over an ArvCamera (set_string / set_float / ... by feature name)."""

    def __init__(self, arv: Any, cam: Any) -> None:
        self.arv, self.cam = arv, cam

    def available(self, name: str) -> bool:
        try:
            return bool(self.cam.is_feature_available(name))
        except Exception:  # noqa: BLE001 - GLib.Error for an unknown feature
            return False

    def writable(self, name: str) -> bool:
        node = self.cam.get_device().get_feature(name)
        if node is None or not hasattr(node, "get_actual_access_mode"):
            return False
        return node.get_actual_access_mode() in (self.arv.GcAccessMode.RW, self.arv.GcAccessMode.WO)

    def enum_entries(self, name: str) -> list[str]:
        return list(self.cam.dup_available_enumerations_as_strings(name) or [])

    def get_enum(self, name: str) -> str:
        return str(self.cam.get_string(name))

    def set_enum(self, name: str, entry: str) -> None:
        self.cam.set_string(name, entry)

    def get_float(self, name: str) -> float:
        return float(self.cam.get_float(name))

    def set_float(self, name: str, value: float) -> None:
        lo, hi = self.cam.get_float_bounds(name)
        self.cam.set_float(name, min(max(value, lo), hi))

    def get_int(self, name: str) -> int:
        return int(self.cam.get_integer(name))

    def set_int(self, name: str, value: int) -> None:
        self.cam.set_integer(name, int(value))

    def set_bool(self, name: str, value: bool) -> None:
        self.cam.set_boolean(name, bool(value))

    def execute(self, name: str) -> None:
        self.cam.execute_command(name)


class AravisFrameCamera(FrameCameraLifecycle):
    """A GenICam camera (USB3 Vision or GigE Vision) through Aravis."""

    backend = "aravis"

    def __init__(self, serial: str | None = None, *, address: str | None = None,
                 packet_resend: bool = True, **_ignored: Any) -> None:
        self._arv = load_aravis()
        self.serial = str(serial) if serial else None
        self.address = address
        self.packet_resend = packet_resend
        self.width = 0
        self.height = 0
        self._cam: Any = None
        self._fa: _AravisAccess | None = None
        self._stream: Any = None
        self._chunk_parser: Any = None
        self._applied = AppliedSettings()
        self._settings = FrameCameraSettings()
        self._info: dict[str, str] = {}
        self._clock: list[ClockSample] = []
        self._ids = FrameIdTracker()
        self._stream_stats: dict[str, int] = {}
        self.counts = {"grabbed": 0, "incomplete": 0, "timeouts": 0, "frame_id_gaps": 0}

    @property
    def device_name(self) -> str:
        model = self._info.get("model") or "GenICam camera"
        return f"{model} {self._info.get('serial') or self._device_id or ''}".strip()

    @property
    def _device_id(self) -> str | None:
        return self.address or self.serial

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self._cam = self._arv.Camera.new(self._device_id)
        except Exception as exc:  # noqa: BLE001 - GLib.Error: not found / no access
            raise DeviceError(f"cannot open GenICam camera {self._device_id or '(first found)'} with "
                              f"Aravis: {exc}") from exc
        if self._cam is None:
            raise DeviceError(f"no GenICam camera {self._device_id or '(first found)'} found by Aravis")
        self._fa = _AravisAccess(self._arv, self._cam)
        self._info = {"model": str(self._cam.get_model_name() or ""),
                      "vendor": str(self._cam.get_vendor_name() or ""),
                      "serial": str(self._cam.get_device_serial_number() or ""),
                      "firmware": self._string_or_empty("DeviceVersion"),
                      "transport": "GigE Vision" if self._cam.is_gv_device() else
                                   ("USB3 Vision" if self._cam.is_uv_device() else "other")}
        self.width = self._fa.get_int("Width")
        self.height = self._fa.get_int("Height")
        # GigE Vision 1.x block ids wrap 65535 -> 1; USB3 Vision ids are 64 bit
        gv = bool(self._cam.is_gv_device())
        self.frame_id_modulus, self.frame_id_first = (GV_FRAME_ID_MODULUS, 1) if gv else (None, 0)
        self._mark_open()

    def _string_or_empty(self, name: str) -> str:
        try:
            return str(self._cam.get_string(name) or "")
        except Exception:  # noqa: BLE001
            return ""

    def close(self) -> None:
        if self._cam is not None and self.is_running:
            self.stop()
        self._stream = None
        self._chunk_parser = None
        self._fa = None
        self._cam = None  # Aravis closes the device when the last reference goes
        self._mark_closed()

    def info(self) -> DeviceInfo:
        return DeviceInfo(kind="frame_camera", backend=self.backend,
                          model=" ".join(x for x in (self._info.get("vendor"), self._info.get("model")) if x),
                          serial=self._info.get("serial", ""), firmware=self._info.get("firmware", ""),
                          extra={"transport": self._info.get("transport", ""),
                                 "applied": self._applied.to_dict(),
                                 "clock": [c.to_dict() for c in self._clock],
                                 "counts": dict(self.counts), "stream_stats": dict(self._stream_stats)})

    # -- configuration ---------------------------------------------------------------------------
    def configure(self, settings: FrameCameraSettings) -> None:
        self._require_stopped("configure()")
        fa = self._fa
        assert fa is not None
        self._applied = apply_frame_settings(fa, settings, self.device_name)
        self.width, self.height = self._applied.width, self._applied.height
        self._settings = settings
        self._mark_configured()

    def software_trigger(self) -> None:
        """One TriggerSoftware command (with trigger_source="Software"): bench and test use."""
        self._require_open()
        self._cam.software_trigger()

    # -- acquisition -----------------------------------------------------------------------------
    def _ticks_to_ns(self) -> float:
        fa = self._fa
        if fa is not None and fa.available("GevTimestampTickFrequency"):
            freq = fa.get_int("GevTimestampTickFrequency")
            return 1e9 / freq if freq > 0 else 1.0
        return 1.0

    def start(self) -> None:
        self._require_open()
        if self.is_running:
            return
        fa = self._fa
        assert fa is not None
        arv = self._arv
        try:
            self._stream = self._cam.create_stream(None, None)
            if self._cam.is_gv_device() and not self.packet_resend:
                self._stream.set_property("packet-resend", arv.GvStreamPacketResend.NEVER)
            payload = self._cam.get_payload()
            for _ in range(max(2, self._settings.buffer_count)):
                self._stream.push_buffer(arv.Buffer.new_allocate(payload))
            self._chunk_parser = self._cam.create_chunk_parser() if self._applied.chunks else None
            sample = latch_clock(fa, self._ticks_to_ns())
            if sample is not None:
                self._clock.append(sample)
            self._cam.start_acquisition()
        except Exception as exc:  # noqa: BLE001 - GLib.Error
            self._stream = None
            raise DeviceError(f"{self.device_name}: cannot start acquisition: {exc}") from exc
        self._ids = FrameIdTracker(self.frame_id_modulus, first=self.frame_id_first)
        self._mark_running()

    def stop(self) -> None:
        if not self.is_running:
            return
        self._mark_stopped()
        try:
            self._cam.stop_acquisition()
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"{self.device_name}: stop_acquisition failed: {exc}") from exc
        stream = self._stream
        if stream is not None:
            stats = {}
            for name in STREAM_STATS:
                try:
                    stats[name] = int(stream.get_info_uint64_by_name(name))
                except Exception:  # noqa: BLE001 - not every stream type has every counter
                    continue
            self._stream_stats = stats
        fa = self._fa
        if fa is not None:
            sample = latch_clock(fa, self._ticks_to_ns())
            if sample is not None:
                self._clock.append(sample)
        self._stream = None

    def grab(self, timeout_s: float) -> Frame:
        """Next buffer as a Frame (pixels copied), buffer pushed back; `GrabTimeout` when none."""
        self._require_running("grab()")
        if self._stream is None:
            raise DeviceError(f"{self.device_name}: grab() before start()")
        timeout_us = max(1, int(round(timeout_s * 1e6)))
        buffer = self._stream.timeout_pop_buffer(timeout_us)
        if buffer is None:
            self.counts["timeouts"] += 1
            raise GrabTimeout(f"{self.device_name}: no frame within {timeout_us / 1000:.0f} ms")
        t_host_ns = time.monotonic_ns()
        try:
            return self._to_frame(buffer, t_host_ns)
        finally:
            self._stream.push_buffer(buffer)

    def _to_frame(self, buffer: Any, t_host_ns: int) -> Frame:
        incomplete = buffer.get_status() != self._arv.BufferStatus.SUCCESS
        shape: tuple[int, ...] = (self.height, self.width)
        if self._applied.pixel_format == "RGB8":
            shape = (*shape, 3)
        data = np.frombuffer(buffer.get_data() or b"", np.uint8)
        size = int(np.prod(shape))
        if data.size >= size:
            pixels = data[:size].reshape(shape).copy()
        else:  # a short buffer (lost packets): keep the shape, flag it
            pixels = np.zeros(shape, np.uint8)
            pixels.reshape(-1)[: data.size] = data
            incomplete = True
        frame_id, t_device_ns = int(buffer.get_frame_id()), int(buffer.get_timestamp())
        exposure_us, gain_db = self._applied.exposure_us, self._applied.gain_db
        parser, chunks = self._chunk_parser, self._applied.chunks
        if parser is not None and not incomplete and buffer.has_chunks():
            try:
                if "FrameID" in chunks:
                    frame_id = int(parser.get_integer_value(buffer, "ChunkFrameID"))
                if "Timestamp" in chunks:
                    t_device_ns = int(parser.get_integer_value(buffer, "ChunkTimestamp"))
                if "ExposureTime" in chunks:
                    exposure_us = float(parser.get_float_value(buffer, "ChunkExposureTime"))
                if "Gain" in chunks:
                    gain_db = float(parser.get_float_value(buffer, "ChunkGain"))
            except Exception:  # noqa: BLE001 - a malformed chunk block: keep the buffer's values
                pass
        self.counts["grabbed"] += 1
        if incomplete:
            self.counts["incomplete"] += 1
        self.counts["frame_id_gaps"] += self._ids.update(frame_id)
        return Frame(pixels=pixels, frame_id=frame_id, t_device_ns=t_device_ns, t_host_ns=t_host_ns,
                     exposure_us=exposure_us, gain_db=gain_db, incomplete=incomplete,
                     pixel_format=self._applied.pixel_format)


def list_cameras() -> list[dict[str, str]]:
    """Every camera Aravis finds. This IS discovery (GigE Vision broadcasts on every interface):
    only `rig devices`, run by a user, calls it."""
    arv = load_aravis()
    arv.update_device_list()
    return [{"id": str(arv.get_device_id(i)), "model": str(arv.get_device_model(i)),
             "serial": str(arv.get_device_serial_nbr(i)), "address": str(arv.get_device_address(i)),
             "protocol": str(arv.get_device_protocol(i))}
            for i in range(arv.get_n_devices())]
