"""A hardware-free stand-in for FLIR's PySpin, injected as `sys.modules["PySpin"]` by tests.

It copies the API names the backend uses (System.GetInstance, GetCameras, CameraList.GetBySerial,
Init/DeInit, GetNodeMap/GetTLDeviceNodeMap/GetTLStreamNodeMap, CEnumerationPtr/CFloatPtr/...,
IsReadable/IsWritable, BeginAcquisition/EndAcquisition, GetNextImage(timeout_ms), IsIncomplete,
GetChunkData, Release, ReleaseInstance, SpinnakerException with `errorcode`) and the behaviours that
bite on a real Blackfly S:
- trigger selector/source/activation/overlap are read-only while TriggerMode is On;
- ExposureTime / Gain are read-only while ExposureAuto / GainAuto are not Off;
- PixelFormat, Width, Height and the stream buffer settings are read-only while acquiring;
- chunk selection is read-only until ChunkModeActive is True; GetChunkData of an incomplete image
  raises; LineMode is fixed per line (Line0/Line3 inputs, Line1 output, Line2 bidirectional);
- GetNextImage raises SpinnakerException(SPINNAKER_ERR_TIMEOUT) when no image arrives in time;
- images hold stream buffers until released; with every buffer held, new frames are dropped;
- the frame id can start anywhere and wrap; DeInit while streaming and ReleaseInstance while a
  camera is still initialised raise, as Spinnaker does.
Tests drive it with `reset(...)`, `camera(serial).pulse(line, n)`, `fail_next(n)`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Error codes: Spinnaker 4.0's `Spinnaker::Error` (SpinnakerDefs.h), which PySpin exposes by the same
# names. Spinnaker 1.x/2.x named the GenICam ones GENICAM_ERR_* (GENICAM_ERR_ACCESS = -2006, ...);
# 3.0 renamed them SPINNAKER_ERR_GENICAM_*. This fake is Spinnaker 4.0 (LibraryVersion 4.0.0.116).
SPINNAKER_ERR_SUCCESS = 0
SPINNAKER_ERR_ERROR = -1001
SPINNAKER_ERR_NOT_INITIALIZED = -1002
SPINNAKER_ERR_NOT_IMPLEMENTED = -1003
SPINNAKER_ERR_RESOURCE_IN_USE = -1004
SPINNAKER_ERR_ACCESS_DENIED = -1005
SPINNAKER_ERR_INVALID_HANDLE = -1006
SPINNAKER_ERR_INVALID_ID = -1007
SPINNAKER_ERR_NO_DATA = -1008
SPINNAKER_ERR_INVALID_PARAMETER = -1009
SPINNAKER_ERR_IO = -1010
SPINNAKER_ERR_TIMEOUT = -1011
SPINNAKER_ERR_ABORT = -1012
SPINNAKER_ERR_INVALID_BUFFER = -1013
SPINNAKER_ERR_NOT_AVAILABLE = -1014
SPINNAKER_ERR_INVALID_ADDRESS = -1015
SPINNAKER_ERR_BUFFER_TOO_SMALL = -1016
SPINNAKER_ERR_INVALID_INDEX = -1017
SPINNAKER_ERR_PARSING_CHUNK_DATA = -1018
SPINNAKER_ERR_INVALID_VALUE = -1019
SPINNAKER_ERR_RESOURCE_EXHAUSTED = -1020
SPINNAKER_ERR_OUT_OF_MEMORY = -1021
SPINNAKER_ERR_BUSY = -1022
SPINNAKER_ERR_IP_CONFLICT = -1023
SPINNAKER_ERR_GENICAM_INVALID_ARGUMENT = -2001
SPINNAKER_ERR_GENICAM_OUT_OF_RANGE = -2002
SPINNAKER_ERR_GENICAM_PROPERTY = -2003
SPINNAKER_ERR_GENICAM_RUN_TIME = -2004
SPINNAKER_ERR_GENICAM_LOGICAL = -2005
SPINNAKER_ERR_GENICAM_ACCESS = -2006
SPINNAKER_ERR_GENICAM_TIMEOUT = -2007
SPINNAKER_ERR_GENICAM_DYNAMIC_CAST = -2008
SPINNAKER_ERR_GENICAM_GENERIC = -2009
SPINNAKER_ERR_GENICAM_BAD_ALLOCATION = -2010
SPINNAKER_ERR_IM_CONVERT = -3001
SPINNAKER_ERR_IM_COPY = -3002
SPINNAKER_ERR_IM_MALLOC = -3003
SPINNAKER_ERR_IM_NOT_SUPPORTED = -3004
SPINNAKER_ERR_IM_HISTOGRAM_RANGE = -3005
SPINNAKER_ERR_IM_HISTOGRAM_MEAN = -3006
SPINNAKER_ERR_IM_MIN_MAX = -3007
SPINNAKER_ERR_IM_COLOR_CONVERSION = -3008
SPINNAKER_ERR_IM_DECOMPRESSION = -3009
SPINNAKER_ERR_CUSTOM_ID = -10000

# Image status (`Spinnaker::ImageStatus`, SpinnakerDefs.h 3.x/4.0; 1.x/2.x named them IMAGE_*).
SPINNAKER_IMAGE_STATUS_UNKNOWN_ERROR = -1
SPINNAKER_IMAGE_STATUS_NO_ERROR = 0
SPINNAKER_IMAGE_STATUS_CRC_CHECK_FAILED = 1
SPINNAKER_IMAGE_STATUS_DATA_OVERFLOW = 2
SPINNAKER_IMAGE_STATUS_MISSING_PACKETS = 3
SPINNAKER_IMAGE_STATUS_LEADER_BUFFER_SIZE_INCONSISTENT = 4
SPINNAKER_IMAGE_STATUS_TRAILER_BUFFER_SIZE_INCONSISTENT = 5
SPINNAKER_IMAGE_STATUS_PACKETID_INCONSISTENT = 6
SPINNAKER_IMAGE_STATUS_MISSING_LEADER = 7
SPINNAKER_IMAGE_STATUS_MISSING_TRAILER = 8
SPINNAKER_IMAGE_STATUS_DATA_INCOMPLETE = 9
SPINNAKER_IMAGE_STATUS_INFO_INCONSISTENT = 10
SPINNAKER_IMAGE_STATUS_CHUNK_DATA_INVALID = 11
SPINNAKER_IMAGE_STATUS_NO_SYSTEM_RESOURCES = 12

# Node interface types (intfIValue ... as PySpin names them).
intfIValue, intfIBase, intfIInteger, intfIBoolean, intfICommand = 0, 1, 2, 3, 4
intfIFloat, intfIString, intfIRegister, intfICategory, intfIEnumeration, intfIEnumEntry = 5, 6, 7, 8, 9, 10
# Access modes.
NI, NA, WO, RO, RW = 0, 1, 2, 3, 4


class SpinnakerException(Exception):
    """PySpin's exception: `errorcode` is the spinError, `message` the text."""

    def __init__(self, message: str, errorcode: int = SPINNAKER_ERR_ERROR) -> None:
        self.message = message
        self.errorcode = errorcode
        self.fullmessage = f"Spinnaker: {message} [{errorcode}]"
        super().__init__(self.fullmessage)


# -- nodes -----------------------------------------------------------------------------------------
class _Node:
    interface = intfIBase

    def __init__(self, cam: FakeCamera | None, name: str, access: Any = None) -> None:
        self._cam, self._name = cam, name
        self._access = access  # callable -> RW/RO/NA, or None for always RW

    def GetName(self) -> str:  # noqa: N802 (SDK name)
        return self._name

    def GetPrincipalInterfaceType(self) -> int:  # noqa: N802
        return self.interface

    def GetAccessMode(self) -> int:  # noqa: N802
        return RW if self._access is None else self._access()

    def _check_write(self, what: str) -> None:
        if self.GetAccessMode() not in (RW, WO):
            raise SpinnakerException(
                f"GenICam::AccessException= Node is not writable. : AccessException thrown in node "
                f"'{self._name}' while calling '{self._name}.{what}()'", SPINNAKER_ERR_GENICAM_ACCESS)

    def _check_read(self) -> None:
        if self.GetAccessMode() not in (RW, RO):
            raise SpinnakerException(f"Node '{self._name}' is not readable", SPINNAKER_ERR_GENICAM_ACCESS)


class _EnumEntry(_Node):
    interface = intfIEnumEntry

    def __init__(self, name: str, value: int) -> None:
        super().__init__(None, name)
        self._value = value

    def GetSymbolic(self) -> str:  # noqa: N802
        return self._name

    def GetValue(self) -> int:  # noqa: N802
        return self._value

    def GetAccessMode(self) -> int:  # noqa: N802
        return RO


class _Enumeration(_Node):
    interface = intfIEnumeration

    def __init__(self, cam, name, entries: list[str], current: str, access=None, on_set=None) -> None:
        super().__init__(cam, name, access)
        self._entries = {e: _EnumEntry(e, 100 + i) for i, e in enumerate(entries)}
        self._current = current
        self._on_set = on_set

    def GetEntries(self) -> list[_EnumEntry]:  # noqa: N802
        return list(self._entries.values())

    def GetEntryByName(self, name: str) -> _EnumEntry | None:  # noqa: N802
        return self._entries.get(name)

    def GetCurrentEntry(self) -> _EnumEntry:  # noqa: N802
        self._check_read()
        return self._entries[self._current]

    def GetIntValue(self) -> int:  # noqa: N802
        return self.GetCurrentEntry().GetValue()

    def SetIntValue(self, value: int) -> None:  # noqa: N802
        self._check_write("SetIntValue")
        for name, entry in self._entries.items():
            if entry.GetValue() == value:
                self._current = name
                if self._on_set:
                    self._on_set(name)
                return
        raise SpinnakerException(f"Enumeration '{self._name}' has no entry with value {value}",
                                 SPINNAKER_ERR_GENICAM_INVALID_ARGUMENT)

    def ToString(self) -> str:  # noqa: N802
        return self._current

    @property
    def symbolic(self) -> str:
        return self._current


class _Float(_Node):
    interface = intfIFloat

    def __init__(self, cam, name, value: float, lo: float, hi: float, access=None) -> None:
        super().__init__(cam, name, access)
        self._value, self._min, self._max = value, lo, hi

    def GetValue(self) -> float:  # noqa: N802
        self._check_read()
        return self._value

    def SetValue(self, value: float) -> None:  # noqa: N802
        self._check_write("SetValue")
        if not self._min <= value <= self._max:
            raise SpinnakerException(f"Value {value} must be between {self._min} and {self._max} "
                                     f"for node '{self._name}'", SPINNAKER_ERR_GENICAM_OUT_OF_RANGE)
        self._value = float(value)

    def GetMin(self) -> float:  # noqa: N802
        return self._min

    def GetMax(self) -> float:  # noqa: N802
        return self._max


class _Integer(_Node):
    interface = intfIInteger

    def __init__(self, cam, name, value: int, lo: int = 0, hi: int = 1 << 62, access=None,
                 getter=None) -> None:
        super().__init__(cam, name, access)
        self._value, self._min, self._max, self._getter = value, lo, hi, getter

    def GetValue(self) -> int:  # noqa: N802
        self._check_read()
        return self._getter() if self._getter else self._value

    def SetValue(self, value: int) -> None:  # noqa: N802
        self._check_write("SetValue")
        if not self._min <= value <= self._max:
            raise SpinnakerException(f"Value {value} out of range for '{self._name}'",
                                     SPINNAKER_ERR_GENICAM_OUT_OF_RANGE)
        self._value = int(value)

    def GetMin(self) -> int:  # noqa: N802
        return self._min

    def GetMax(self) -> int:  # noqa: N802
        return self._max


class _Boolean(_Node):
    interface = intfIBoolean

    def __init__(self, cam, name, value: bool, access=None) -> None:
        super().__init__(cam, name, access)
        self._value = value

    def GetValue(self) -> bool:  # noqa: N802
        self._check_read()
        return self._value

    def SetValue(self, value: bool) -> None:  # noqa: N802
        self._check_write("SetValue")
        self._value = bool(value)


class _Command(_Node):
    interface = intfICommand

    def __init__(self, cam, name, action, access=None) -> None:
        super().__init__(cam, name, access)
        self._action = action

    def Execute(self) -> None:  # noqa: N802
        self._check_write("Execute")
        self._action()

    def IsDone(self) -> bool:  # noqa: N802
        return True

    def GetAccessMode(self) -> int:  # noqa: N802
        return WO if self._access is None else self._access()


class _String(_Node):
    interface = intfIString

    def __init__(self, cam, name, value: str) -> None:
        super().__init__(cam, name, lambda: RO)
        self._value = value

    def GetValue(self) -> str:  # noqa: N802
        return self._value

    def ToString(self) -> str:  # noqa: N802
        return self._value


def _cast(kind: type, node: Any) -> Any:
    """A null or wrongly typed node pointer. (Spinnaker raises when it is dereferenced, with
    SPINNAKER_ERR_GENICAM_LOGICAL; here already at the cast.)"""
    if node is None or not isinstance(node, kind):
        raise SpinnakerException("LogicalErrorException NULL pointer dereferenced",
                                 SPINNAKER_ERR_GENICAM_LOGICAL)
    return node


def CEnumerationPtr(node: Any) -> _Enumeration:  # noqa: N802
    return _cast(_Enumeration, node)


def CEnumEntryPtr(node: Any) -> _EnumEntry:  # noqa: N802
    return _cast(_EnumEntry, node)


def CFloatPtr(node: Any) -> _Float:  # noqa: N802
    return _cast(_Float, node)


def CIntegerPtr(node: Any) -> _Integer:  # noqa: N802
    return _cast(_Integer, node)


def CBooleanPtr(node: Any) -> _Boolean:  # noqa: N802
    return _cast(_Boolean, node)


def CCommandPtr(node: Any) -> _Command:  # noqa: N802
    return _cast(_Command, node)


def CStringPtr(node: Any) -> _String:  # noqa: N802
    return _cast(_String, node)


def IsAvailable(node: Any) -> bool:  # noqa: N802
    return node is not None and node.GetAccessMode() not in (NI, NA)


def IsReadable(node: Any) -> bool:  # noqa: N802
    return node is not None and node.GetAccessMode() in (RO, RW)


def IsWritable(node: Any) -> bool:  # noqa: N802
    return node is not None and node.GetAccessMode() in (WO, RW)


class INodeMap:
    def __init__(self, nodes: dict[str, _Node]) -> None:
        self._nodes = nodes

    def GetNode(self, name: str) -> _Node | None:  # noqa: N802
        return self._nodes.get(name)


# -- images ----------------------------------------------------------------------------------------
class ChunkData:
    def __init__(self, frame_id: int, timestamp_ns: int, exposure_us: float, gain_db: float) -> None:
        self._v = (frame_id, timestamp_ns, exposure_us, gain_db)

    def GetFrameID(self) -> int:  # noqa: N802
        return self._v[0]

    def GetTimestamp(self) -> int:  # noqa: N802
        return self._v[1]

    def GetExposureTime(self) -> float:  # noqa: N802
        return self._v[2]

    def GetGain(self) -> float:  # noqa: N802
        return self._v[3]


class ImagePtr:
    def __init__(self, cam: FakeCamera, pixels: np.ndarray, frame_id: int, timestamp_ns: int,
                 chunk: ChunkData | None, incomplete: bool) -> None:
        self._cam, self._pixels = cam, pixels
        self._frame_id, self._timestamp_ns = frame_id, timestamp_ns
        self._chunk, self._incomplete = chunk, incomplete
        self.released = False

    def _alive(self) -> None:
        if self.released:
            raise SpinnakerException("Image has been released", SPINNAKER_ERR_INVALID_HANDLE)

    def IsIncomplete(self) -> bool:  # noqa: N802
        self._alive()
        return self._incomplete

    def GetImageStatus(self) -> int:  # noqa: N802
        return SPINNAKER_IMAGE_STATUS_DATA_INCOMPLETE if self._incomplete else SPINNAKER_IMAGE_STATUS_NO_ERROR

    def GetNDArray(self) -> np.ndarray:  # noqa: N802
        self._alive()
        view = self._pixels.view()
        view.flags.writeable = False  # PySpin hands out a view of the driver's buffer
        return view

    def GetWidth(self) -> int:  # noqa: N802
        return self._pixels.shape[1]

    def GetHeight(self) -> int:  # noqa: N802
        return self._pixels.shape[0]

    def GetFrameID(self) -> int:  # noqa: N802
        self._alive()
        return self._frame_id

    def GetTimeStamp(self) -> int:  # noqa: N802
        self._alive()
        return self._timestamp_ns

    def GetChunkData(self) -> ChunkData:  # noqa: N802
        self._alive()
        if self._chunk is None:
            raise SpinnakerException("Chunk data is not available for this image",
                                     SPINNAKER_ERR_NOT_AVAILABLE)
        return self._chunk

    def Release(self) -> None:  # noqa: N802
        self._alive()
        self.released = True
        # The driver overwrites a returned buffer: a kept view would show other pixels.
        self._pixels[...] = 0xEE
        self._cam._release(self)


# -- camera ----------------------------------------------------------------------------------------
@dataclass
class CameraSpec:
    serial: str = "22000001"
    model: str = "Blackfly S BFS-U3-32S4C"
    firmware: str = "1808.0.125.0"
    width: int = 2048
    height: int = 1536
    frame_id_start: int = 0
    frame_id_modulo: int | None = None  # e.g. 1 << 16 to see a wrap
    clock_offset_ns: int = 7_000_000_000_123  # camera clock = host monotonic + offset
    # images kept in `FakeCamera.delivered` for tests to inspect (None: all of them; a long soak
    # through the fake keeps a few, or every frame's pixels would stay in memory)
    keep_delivered: int | None = None
    # Settings another program left behind, undone by loading the Default user set.
    dirty: dict[str, str] = field(default_factory=lambda: {"TriggerMode": "On", "TriggerSource": "Line0",
                                                           "ExposureAuto": "Continuous"})


LINES = ("Line0", "Line1", "Line2", "Line3")
LINE_FIXED_MODE = {"Line0": "Input", "Line1": "Output", "Line3": "Input"}  # Line2 is bidirectional


class FakeCamera:
    """CameraPtr: one Blackfly S."""

    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        self._lock = threading.Condition()
        self.initialized = False
        self.streaming = False
        self.valid = True
        self._queue: deque[ImagePtr] = deque()
        self._outstanding: set[int] = set()
        self.delivered: deque[ImagePtr] = deque(maxlen=spec.keep_delivered)
        self.delivered_total = 0
        self._next_id = spec.frame_id_start
        self._fail_next = 0
        self.dropped_no_buffer = 0
        self.pulses_seen = 0
        self.events: list[str] = []  # a log of SDK calls that matter for ordering checks
        self._base = self._pattern(spec.height, spec.width)
        self._build_nodes()
        for name, value in spec.dirty.items():
            self._force(name, value)

    @staticmethod
    def _pattern(h: int, w: int) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w]
        return ((xx * 3 + yy * 5) % 251).astype(np.uint8)

    # nodes --------------------------------------------------------------------------------------
    def _enum(self, name: str) -> str:
        return self._nodes[name].symbolic  # type: ignore[attr-defined]

    def _force(self, name: str, value: str) -> None:
        self._nodes[name]._current = value  # type: ignore[attr-defined]

    def _build_nodes(self) -> None:
        def trig_lock() -> int:
            return RW if self._enum("TriggerMode") == "Off" else RO

        def idle() -> int:
            return RO if self.streaming else RW

        def exp_access() -> int:
            return RW if self._enum("ExposureAuto") == "Off" else RO

        def gain_access() -> int:
            return RW if self._enum("GainAuto") == "Off" else RO

        def chunk_access() -> int:
            return RW if self._nodes["ChunkModeActive"]._value else RO  # type: ignore[attr-defined]

        def line_mode_access() -> int:
            return RO if self._enum("LineSelector") in LINE_FIXED_MODE else RW

        def line_source_access() -> int:
            return RW if self._enum("LineMode") == "Output" else RO

        def on_line_selected(line: str) -> None:
            self._force("LineMode", LINE_FIXED_MODE.get(line, self._line_modes.get(line, "Input")))
            self._force("LineSource", self._line_sources.get(line, "Off"))

        def on_line_mode(mode: str) -> None:
            self._line_modes[self._enum("LineSelector")] = mode

        def on_line_source(src: str) -> None:
            self._line_sources[self._enum("LineSelector")] = src

        def on_chunk_selected(chunk: str) -> None:
            self._nodes["ChunkEnable"]._value = chunk in self._chunks_on  # type: ignore[attr-defined]

        self._line_modes: dict[str, str] = {"Line2": "Input"}
        self._line_sources: dict[str, str] = {}
        self._chunks_on: set[str] = set()
        spec = self.spec
        n: dict[str, _Node] = {}
        n["TriggerMode"] = _Enumeration(self, "TriggerMode", ["Off", "On"], "Off")
        n["TriggerSelector"] = _Enumeration(self, "TriggerSelector", ["FrameStart", "FrameBurstStart"],
                                            "FrameStart", trig_lock)
        n["TriggerSource"] = _Enumeration(self, "TriggerSource", ["Software", "Line0", "Line1", "Line2",
                                                                  "Line3", "UserOutput0"], "Software",
                                          trig_lock)
        n["TriggerActivation"] = _Enumeration(self, "TriggerActivation",
                                              ["RisingEdge", "FallingEdge", "AnyEdge", "LevelHigh",
                                               "LevelLow"], "RisingEdge", trig_lock)
        n["TriggerOverlap"] = _Enumeration(self, "TriggerOverlap", ["Off", "ReadOut"], "Off", trig_lock)
        n["TriggerSoftware"] = _Command(self, "TriggerSoftware", lambda: self._trigger("Software"))
        n["ExposureAuto"] = _Enumeration(self, "ExposureAuto", ["Off", "Once", "Continuous"], "Continuous")
        n["ExposureMode"] = _Enumeration(self, "ExposureMode", ["Timed", "TriggerWidth"], "Timed")
        n["ExposureTime"] = _Float(self, "ExposureTime", 15000.0, 6.0, 30_000_000.0, exp_access)
        n["GainAuto"] = _Enumeration(self, "GainAuto", ["Off", "Once", "Continuous"], "Continuous")
        n["Gain"] = _Float(self, "Gain", 0.0, 0.0, 47.994, gain_access)
        n["PixelFormat"] = _Enumeration(self, "PixelFormat", ["Mono8", "Mono16", "BayerRG8", "BayerRG16",
                                                              "RGB8", "BGR8"], "Mono8", idle)
        n["Width"] = _Integer(self, "Width", spec.width, 8, spec.width, idle)
        n["Height"] = _Integer(self, "Height", spec.height, 8, spec.height, idle)
        n["AcquisitionMode"] = _Enumeration(self, "AcquisitionMode", ["Continuous", "SingleFrame",
                                                                      "MultiFrame"], "Continuous", idle)
        n["ChunkModeActive"] = _Boolean(self, "ChunkModeActive", False, idle)
        n["ChunkSelector"] = _Enumeration(self, "ChunkSelector", ["Image", "CRC", "FrameID", "OffsetX",
                                                                  "OffsetY", "Width", "Height",
                                                                  "ExposureTime", "Gain", "BlackLevel",
                                                                  "PixelFormat", "Timestamp"], "Image",
                                          chunk_access, on_chunk_selected)
        n["ChunkEnable"] = _Boolean(self, "ChunkEnable", False, chunk_access)
        n["LineSelector"] = _Enumeration(self, "LineSelector", list(LINES), "Line0", None, on_line_selected)
        n["LineMode"] = _Enumeration(self, "LineMode", ["Input", "Output"], "Input", line_mode_access,
                                     on_line_mode)
        n["LineSource"] = _Enumeration(self, "LineSource", ["Off", "ExposureActive", "FrameTriggerWait",
                                                            "UserOutput0", "Counter0Active"], "Off",
                                       line_source_access, on_line_source)
        n["TimestampLatch"] = _Command(self, "TimestampLatch", self._latch)
        n["TimestampLatchValue"] = _Integer(self, "TimestampLatchValue", 0, access=lambda: RO)
        n["UserSetSelector"] = _Enumeration(self, "UserSetSelector", ["Default", "UserSet0", "UserSet1"],
                                            "Default", idle)
        n["UserSetLoad"] = _Command(self, "UserSetLoad", self._load_defaults,
                                    lambda: RO if self.streaming else WO)
        self._nodes = n
        self._tl_device = {"DeviceSerialNumber": _String(self, "DeviceSerialNumber", spec.serial),
                           "DeviceModelName": _String(self, "DeviceModelName", spec.model),
                           "DeviceVersion": _String(self, "DeviceVersion", spec.firmware)}
        self._stream_nodes: dict[str, _Node] = {
            "StreamBufferHandlingMode": _Enumeration(self, "StreamBufferHandlingMode",
                                                     ["OldestFirst", "OldestFirstOverwrite", "NewestOnly",
                                                      "NewestFirst"], "NewestOnly", idle),
            "StreamBufferCountMode": _Enumeration(self, "StreamBufferCountMode", ["Manual"], "Manual", idle),
            "StreamBufferCountManual": _Integer(self, "StreamBufferCountManual", 10, 1, 1000, idle),
            "StreamTotalBufferCount": _Integer(self, "StreamTotalBufferCount", 0, access=lambda: RO,
                                               getter=lambda: self.delivered_total),
            "StreamBufferUnderrunCount": _Integer(self, "StreamBufferUnderrunCount", 0, access=lambda: RO,
                                                  getter=lambda: self.dropped_no_buffer),
        }

    def _load_defaults(self) -> None:
        self.events.append("UserSetLoad")
        for name, value in {"TriggerMode": "Off", "TriggerSelector": "FrameStart",
                            "TriggerSource": "Software", "TriggerActivation": "RisingEdge",
                            "TriggerOverlap": "Off", "ExposureAuto": "Continuous", "GainAuto": "Continuous",
                            "PixelFormat": "Mono8", "LineSelector": "Line0"}.items():
            self._force(name, value)
        self._nodes["ChunkModeActive"]._value = False  # type: ignore[attr-defined]
        self._chunks_on.clear()
        self._line_sources.clear()

    def _latch(self) -> None:
        self._nodes["TimestampLatchValue"]._value = self.device_time_ns()  # type: ignore[attr-defined]

    def device_time_ns(self) -> int:
        return time.monotonic_ns() + self.spec.clock_offset_ns

    # CameraPtr API ------------------------------------------------------------------------------
    def IsValid(self) -> bool:  # noqa: N802
        return self.valid

    def Init(self) -> None:  # noqa: N802
        self.initialized = True
        self.events.append("Init")

    def IsInitialized(self) -> bool:  # noqa: N802
        return self.initialized

    def DeInit(self) -> None:  # noqa: N802
        if self.streaming:
            raise SpinnakerException("Camera is still streaming; call EndAcquisition() first",
                                     SPINNAKER_ERR_RESOURCE_IN_USE)
        self.initialized = False
        self.events.append("DeInit")

    def _need_init(self) -> None:
        if not self.initialized:
            raise SpinnakerException("Camera is not initialized", SPINNAKER_ERR_NOT_INITIALIZED)

    def GetNodeMap(self) -> INodeMap:  # noqa: N802
        self._need_init()
        return INodeMap(self._nodes)

    def GetTLDeviceNodeMap(self) -> INodeMap:  # noqa: N802
        return INodeMap(self._tl_device)

    def GetTLStreamNodeMap(self) -> INodeMap:  # noqa: N802
        return INodeMap(self._stream_nodes)

    def GetUniqueID(self) -> str:  # noqa: N802
        return self.spec.serial

    def BeginAcquisition(self) -> None:  # noqa: N802
        self._need_init()
        if self.streaming:
            raise SpinnakerException("Camera is already streaming", SPINNAKER_ERR_RESOURCE_IN_USE)
        self.streaming = True
        self.events.append("BeginAcquisition")

    def EndAcquisition(self) -> None:  # noqa: N802
        if not self.streaming:
            raise SpinnakerException("Camera is not started", SPINNAKER_ERR_NOT_AVAILABLE)
        self.streaming = False
        with self._lock:
            self._queue.clear()
        self.events.append("EndAcquisition")

    def IsStreaming(self) -> bool:  # noqa: N802
        return self.streaming

    def GetNextImage(self, grabTimeout: int = 0xFFFFFFFFFFFFFFFF) -> ImagePtr:  # noqa: N802, N803
        if not self.streaming:
            raise SpinnakerException("Camera is not started", SPINNAKER_ERR_NOT_AVAILABLE)
        if self._enum("TriggerMode") == "Off":
            self._produce()  # free running: a frame is always ready
        deadline = time.monotonic() + grabTimeout / 1000.0
        with self._lock:
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SpinnakerException(
                        "Failed waiting for EventData on NEW_BUFFER_DATA event.", SPINNAKER_ERR_TIMEOUT)
                self._lock.wait(left)
            image = self._queue.popleft()
            self._outstanding.add(id(image))
            self.delivered.append(image)
            self.delivered_total += 1
            return image

    def _release(self, image: ImagePtr) -> None:
        with self._lock:
            self._outstanding.discard(id(image))

    # test hooks ---------------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        """Images handed out and not released yet."""
        return len(self._outstanding)

    def pulse(self, line: str = "Line3", n: int = 1, t_host_ns: int | None = None) -> None:
        """n rising edges on an input line (the trigger MCU). `t_host_ns`: when the edge arrived,
        on the host's monotonic clock (a wire that delivers edges a little late still stamps the
        exposure at the edge); None: now."""
        for _ in range(n):
            self.pulses_seen += 1
            self._trigger(line, t_host_ns)

    def fail_next(self, n: int = 1) -> None:
        """The next n frames arrive incomplete (lost USB packets)."""
        self._fail_next += n

    def _trigger(self, source: str, t_host_ns: int | None = None) -> None:
        if (self.streaming and self._enum("TriggerMode") == "On" and self._enum("TriggerSource") == source
                and self._enum("TriggerActivation") in ("RisingEdge", "AnyEdge")):
            self._produce(t_host_ns)

    def _produce(self, t_host_ns: int | None = None) -> None:
        fid = self._next_id
        self._next_id += 1
        if self.spec.frame_id_modulo:
            self._next_id %= self.spec.frame_id_modulo
        t_ns = self.device_time_ns() if t_host_ns is None else int(t_host_ns) + self.spec.clock_offset_ns
        fmt = self._enum("PixelFormat")
        h, w = self._nodes["Height"]._value, self._nodes["Width"]._value  # type: ignore[attr-defined]
        base = np.roll(self._base[:h, :w], fid % w, axis=1)
        pixels = np.repeat(base[..., None], 3, axis=2).copy() if fmt in ("RGB8", "BGR8") else base.copy()
        incomplete = self._fail_next > 0
        if incomplete:
            self._fail_next -= 1
        chunk = None
        if self._nodes["ChunkModeActive"]._value and not incomplete:  # type: ignore[attr-defined]
            on = self._chunks_on
            chunk = ChunkData(fid if "FrameID" in on else 0, t_ns if "Timestamp" in on else 0,
                              self._nodes["ExposureTime"]._value if "ExposureTime" in on else 0.0,  # type: ignore[attr-defined]
                              self._nodes["Gain"]._value if "Gain" in on else 0.0)  # type: ignore[attr-defined]
        image = ImagePtr(self, pixels, fid, t_ns, chunk, incomplete)
        with self._lock:
            buffers = self._stream_nodes["StreamBufferCountManual"]._value  # type: ignore[attr-defined]
            if len(self._queue) + len(self._outstanding) >= buffers:
                mode = self._stream_nodes["StreamBufferHandlingMode"].symbolic  # type: ignore[attr-defined]
                if mode == "OldestFirst" or not self._queue:
                    self.dropped_no_buffer += 1
                    return
                self._queue.popleft()  # the *Overwrite / Newest* modes recycle the oldest queued buffer
                self.dropped_no_buffer += 1
            self._queue.append(image)
            self._lock.notify_all()

    def chunk_enabled(self) -> set[str]:
        return set(self._chunks_on)


def _chunk_enable_hook(cam: FakeCamera) -> None:
    """ChunkEnable writes go to the selected chunk."""
    node = cam._nodes["ChunkEnable"]
    original = node.SetValue

    def set_value(value: bool) -> None:
        original(value)
        chunk = cam._enum("ChunkSelector")
        if value:
            cam._chunks_on.add(chunk)
        else:
            cam._chunks_on.discard(chunk)

    node.SetValue = set_value  # type: ignore[method-assign]


class CameraList:
    def __init__(self, cams: list[FakeCamera]) -> None:
        self._cams = list(cams)

    def GetSize(self) -> int:  # noqa: N802
        return len(self._cams)

    def GetByIndex(self, index: int) -> FakeCamera:  # noqa: N802
        if not 0 <= index < len(self._cams):
            raise SpinnakerException(f"Index {index} out of range", SPINNAKER_ERR_INVALID_PARAMETER)
        return self._cams[index]

    def GetBySerial(self, serial: str) -> FakeCamera | None:  # noqa: N802
        for cam in self._cams:
            if cam.spec.serial == serial:
                return cam
        return None  # an invalid CameraPtr

    def Clear(self) -> None:  # noqa: N802
        self._cams = []


@dataclass
class LibraryVersion:
    major: int = 4
    minor: int = 0
    type: int = 0
    build: int = 116


class System:
    _instance: System | None = None

    @staticmethod
    def GetInstance() -> System:  # noqa: N802
        if System._instance is None:
            System._instance = System()
        _WORLD.instances += 1
        return System._instance

    def GetCameras(self) -> CameraList:  # noqa: N802
        return CameraList(_WORLD.cameras)

    def GetLibraryVersion(self) -> LibraryVersion:  # noqa: N802
        return LibraryVersion()

    def ReleaseInstance(self) -> None:  # noqa: N802
        if any(cam.initialized for cam in _WORLD.cameras):
            raise SpinnakerException("Can't clear a camera because something still holds a reference "
                                     "to the camera", SPINNAKER_ERR_RESOURCE_IN_USE)
        _WORLD.instances -= 1
        _WORLD.released += 1


class _World:
    def __init__(self) -> None:
        self.cameras: list[FakeCamera] = []
        self.instances = 0
        self.released = 0


_WORLD = _World()


def reset(*specs: CameraSpec) -> list[FakeCamera]:
    """A fresh set of attached cameras; returns them for the test to drive."""
    global _WORLD
    _WORLD = _World()
    System._instance = None
    _WORLD.cameras = [FakeCamera(s) for s in specs]
    for cam in _WORLD.cameras:
        _chunk_enable_hook(cam)
    return list(_WORLD.cameras)


def world() -> _World:
    return _WORLD
