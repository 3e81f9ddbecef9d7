"""One GenICam (SFNC) configuration plan shared by the PySpin and Aravis frame-camera backends.

Why a module of its own: both SDKs speak the same standard feature names (TriggerMode,
TriggerSource, ExposureTime, ChunkSelector, LineSource, TimestampLatch, ...), so the order of the
steps and the rules (trigger source only writable while TriggerMode is Off, auto modes off before
manual values, chunk selection) live here once; each backend only supplies a `FeatureAccess`.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from rig.devices import DeviceError, FrameCameraSettings
from rig.frame_ids import FrameIdTracker  # noqa: F401 - re-exported for the backends
from rig.registry import BackendUnavailable

#: Chunks asked for on every camera that has them (SFNC ChunkSelector entries).
CHUNKS = ("FrameID", "Timestamp", "ExposureTime", "Gain")
#: Alternative names of the same quantity, newest SFNC name first.
EXPOSURE_FEATURES = ("ExposureTime", "ExposureTimeAbs")
GAIN_FEATURES = ("Gain", "GainAbs")
#: (latch command, latched value) pairs, SFNC first, then the GigE Vision 1.x names.
TIMESTAMP_LATCH_FEATURES = (
    ("TimestampLatch", "TimestampLatchValue"),
    ("GevTimestampControlLatch", "GevTimestampValue"),
)


def import_sdk(module: str, what: str, hint: str) -> Any:
    """Import an optional SDK module or raise `BackendUnavailable` with one line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{what} needs the Python module {module!r} ({exc}): {hint}") from None


class FeatureAccess(Protocol):
    """Typed access to a camera's GenICam features by name (one adapter per SDK)."""

    def available(self, name: str) -> bool: ...
    def writable(self, name: str) -> bool: ...
    def enum_entries(self, name: str) -> list[str]: ...
    def get_enum(self, name: str) -> str: ...
    def set_enum(self, name: str, entry: str) -> None: ...
    def get_float(self, name: str) -> float: ...
    def set_float(self, name: str, value: float) -> None: ...
    def get_int(self, name: str) -> int: ...
    def set_int(self, name: str, value: int) -> None: ...
    def set_bool(self, name: str, value: bool) -> None: ...
    def execute(self, name: str) -> None: ...


@dataclass
class AppliedSettings:
    """What the camera reports after configuration (read back, not what was asked for)."""

    pixel_format: str = ""
    width: int = 0
    height: int = 0
    exposure_us: float = 0.0
    gain_db: float = 0.0
    trigger: dict[str, str] = field(default_factory=dict)
    chunks: list[str] = field(default_factory=list)
    strobe: dict[str, str] = field(default_factory=dict)
    exposure_feature: str = ""
    gain_feature: str = ""
    skipped: list[str] = field(default_factory=list)  # optional features this camera lacks

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


def _first_available(fa: FeatureAccess, names: tuple[str, ...]) -> str | None:
    for name in names:
        if fa.available(name):
            return name
    return None


def _set_enum_checked(fa: FeatureAccess, name: str, entry: str, device: str) -> None:
    entries = fa.enum_entries(name)
    if entries and entry not in entries:
        raise DeviceError(f"{device}: {name} has no entry {entry!r} (it offers: {', '.join(entries)})")
    try:
        fa.set_enum(name, entry)
    except Exception as exc:  # noqa: BLE001 - the SDK's own exception types differ
        raise DeviceError(f"{device}: cannot set {name} = {entry}: {exc}") from exc


def _set_optional_enum(fa: FeatureAccess, name: str, entry: str, device: str,
                       applied: AppliedSettings) -> bool:
    if not fa.available(name):
        applied.skipped.append(name)
        return False
    _set_enum_checked(fa, name, entry, device)
    return True


def apply_frame_settings(fa: FeatureAccess, settings: FrameCameraSettings, device: str) -> AppliedSettings:
    """Configure trigger, exposure, gain, pixel format, chunks and strobe line, in the safe order.

    `device` names the camera in every error. Required features missing raise `DeviceError`;
    optional ones (TriggerOverlap, chunks, ...) are listed in `AppliedSettings.skipped`.
    """
    applied = AppliedSettings()
    # Trigger: the source, selector and activation are only writable while TriggerMode is Off.
    if fa.available("TriggerMode"):
        _set_enum_checked(fa, "TriggerMode", "Off", device)
    elif settings.trigger_source is not None:
        raise DeviceError(f"{device}: no TriggerMode feature, cannot use an external trigger")
    if settings.trigger_source is not None:
        _set_optional_enum(fa, "TriggerSelector", "FrameStart", device, applied)
        if not fa.available("TriggerSource"):
            raise DeviceError(f"{device}: no TriggerSource feature")
        _set_enum_checked(fa, "TriggerSource", settings.trigger_source, device)
        _set_optional_enum(fa, "TriggerActivation", settings.trigger_activation, device, applied)
        _set_optional_enum(fa, "TriggerOverlap", settings.trigger_overlap, device, applied)
        _set_enum_checked(fa, "TriggerMode", "On", device)
        applied.trigger = {"mode": "On", "source": fa.get_enum("TriggerSource")}
        for name in ("TriggerSelector", "TriggerActivation", "TriggerOverlap"):
            if fa.available(name):
                applied.trigger[name[len("Trigger"):].lower()] = fa.get_enum(name)
    else:
        applied.trigger = {"mode": "Off"}

    # Exposure and gain: automatic modes off first, or the manual value is read-only.
    if fa.available("ExposureAuto"):
        _set_enum_checked(fa, "ExposureAuto", "Off", device)
    if fa.available("ExposureMode") and "Timed" in fa.enum_entries("ExposureMode"):
        _set_enum_checked(fa, "ExposureMode", "Timed", device)
    exp_name = _first_available(fa, EXPOSURE_FEATURES)
    if exp_name is None:
        raise DeviceError(f"{device}: no exposure feature ({' / '.join(EXPOSURE_FEATURES)})")
    _set_number(fa, exp_name, settings.exposure_us, device)
    applied.exposure_feature = exp_name
    applied.exposure_us = float(fa.get_float(exp_name))

    if fa.available("GainAuto"):
        _set_enum_checked(fa, "GainAuto", "Off", device)
    gain_name = _first_available(fa, GAIN_FEATURES)
    if gain_name is None:
        if settings.gain_db != 0.0:
            raise DeviceError(f"{device}: no gain feature in dB ({' / '.join(GAIN_FEATURES)})")
        applied.skipped.append("Gain")
    else:
        _set_number(fa, gain_name, settings.gain_db, device)
        applied.gain_feature = gain_name
        applied.gain_db = float(fa.get_float(gain_name))

    if not fa.available("PixelFormat"):
        raise DeviceError(f"{device}: no PixelFormat feature")
    _set_enum_checked(fa, "PixelFormat", settings.pixel_format, device)
    applied.pixel_format = fa.get_enum("PixelFormat")
    applied.width, applied.height = int(fa.get_int("Width")), int(fa.get_int("Height"))
    _set_optional_enum(fa, "AcquisitionMode", "Continuous", device, applied)

    applied.chunks = _enable_chunks(fa, device, applied)
    if settings.strobe_line is not None:
        applied.strobe = _drive_exposure_active(fa, settings.strobe_line, device)
    return applied


def _set_number(fa: FeatureAccess, name: str, value: float, device: str) -> None:
    try:
        fa.set_float(name, float(value))
    except Exception as exc:  # noqa: BLE001
        raise DeviceError(f"{device}: cannot set {name} = {value}: {exc}") from exc


def _enable_chunks(fa: FeatureAccess, device: str, applied: AppliedSettings) -> list[str]:
    """Turn on FrameID, Timestamp, ExposureTime and Gain chunks where the camera has them."""
    if not (fa.available("ChunkModeActive") and fa.available("ChunkSelector")):
        applied.skipped.append("ChunkModeActive")
        return []
    try:
        fa.set_bool("ChunkModeActive", True)
    except Exception as exc:  # noqa: BLE001
        raise DeviceError(f"{device}: cannot enable chunk mode: {exc}") from exc
    entries = fa.enum_entries("ChunkSelector")
    enabled = []
    for chunk in CHUNKS:
        if chunk not in entries:
            applied.skipped.append(f"Chunk{chunk}")
            continue
        _set_enum_checked(fa, "ChunkSelector", chunk, device)
        try:
            fa.set_bool("ChunkEnable", True)
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"{device}: cannot enable chunk {chunk}: {exc}") from exc
        enabled.append(chunk)
    return enabled


def _drive_exposure_active(fa: FeatureAccess, line: str, device: str) -> dict[str, str]:
    """`LineSource = ExposureActive` on an output line (the FLIR -> EVK4 trigger-in wiring)."""
    if not (fa.available("LineSelector") and fa.available("LineSource")):
        raise DeviceError(f"{device}: no LineSelector/LineSource, cannot drive ExposureActive on {line}")
    _set_enum_checked(fa, "LineSelector", line, device)
    if fa.available("LineMode") and fa.writable("LineMode"):
        _set_enum_checked(fa, "LineMode", "Output", device)
    if fa.available("LineMode") and fa.get_enum("LineMode") != "Output":
        raise DeviceError(f"{device}: {line} is an input-only line; ExposureActive needs an output "
                          "(on a Blackfly S: Line1 opto-isolated or Line2 GPIO)")
    _set_enum_checked(fa, "LineSource", "ExposureActive", device)
    return {"line": line, "source": fa.get_enum("LineSource")}


@dataclass(frozen=True)
class ClockSample:
    """The camera clock latched between two host monotonic readings (relates the two clocks)."""

    t_device_ns: int
    t_host_ns: int  # midpoint of the two host readings
    uncertainty_ns: int  # half the host interval around the latch

    @property
    def device_minus_host_ns(self) -> int:
        return self.t_device_ns - self.t_host_ns

    def to_dict(self) -> dict[str, int]:
        return {"t_device_ns": self.t_device_ns, "t_host_ns": self.t_host_ns,
                "uncertainty_ns": self.uncertainty_ns,
                "device_minus_host_ns": self.device_minus_host_ns}


def latch_clock(fa: FeatureAccess, ticks_to_ns: float = 1.0) -> ClockSample | None:
    """Latch the camera timestamp counter (TimestampLatch) and pair it with the host clock.

    Returns None where the camera has no latch feature. `ticks_to_ns` converts GigE Vision 1.x
    tick counts; SFNC TimestampLatchValue is already in ns on FLIR cameras.
    """
    for command, value in TIMESTAMP_LATCH_FEATURES:
        if fa.available(command) and fa.available(value):
            h0 = time.monotonic_ns()
            fa.execute(command)
            h1 = time.monotonic_ns()
            t_dev = int(round(fa.get_int(value) * ticks_to_ns))
            return ClockSample(t_dev, (h0 + h1) // 2, (h1 - h0) // 2)
    return None
