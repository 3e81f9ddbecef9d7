"""A hardware-free stand-in for OpenEB's `metavision_hal`, injected as sys.modules["metavision_hal"].

It copies the names the backend uses (DeviceDiscovery.open / list / list_available_sources,
get_i_geometry, get_i_hw_identification, get_i_ll_biases (set/get/get_all_biases), get_i_roi with
I_ROI.Window, get_i_erc_module, get_i_trigger_in with I_TriggerIn.Channel, get_i_events_stream
(start/stop/poll_buffer/get_latest_raw_data/log_raw_data/stop_log_raw_data),
get_i_events_stream_decoder (decode), get_i_event_cd_decoder and get_i_event_ext_trigger_decoder
(add_event_buffer_callback/remove_callback)) and these behaviours:
- raw logging happens inside get_latest_raw_data, as in the HAL: only buffers that the caller
  moves along reach the file, after a `% key value` header that ends with `% end`;
- the stream is real EVT3 (encoded by the project's EVT3 writer from a ground-truth script), cut
  into driver buffers that become available over time after start();
- trigger edges appear only for enabled trigger-in channels, events only inside an enabled ROI;
- biases outside their allowed range are refused (set returns False);
- callbacks get numpy arrays with Metavision's EventCD / EventExtTrigger dtypes.
"""

from __future__ import annotations

import enum
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EVENT_CD_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")])
EVENT_EXT_TRIGGER_DTYPE = np.dtype([("p", "<i2"), ("t", "<i8"), ("id", "<i2")])

# IMX636 bias offsets from factory default, allowed ranges as OpenEB's imx636 plugin states them.
IMX636_BIAS_RANGES = {"bias_diff": (-25, 23), "bias_diff_off": (-35, 190), "bias_diff_on": (-85, 140),
                      "bias_fo": (-35, 55), "bias_hpf": (0, 120), "bias_refr": (-20, 235)}


class I_TriggerIn:  # noqa: N801 (SDK name)
    class Channel(enum.IntEnum):
        MAIN = 0
        AUX = 1
        LOOPBACK = 2


class I_ROI:  # noqa: N801
    class Mode(enum.IntEnum):
        ROI = 0
        RONI = 1

    class Window:
        def __init__(self, x: int, y: int, width: int, height: int) -> None:
            self.x, self.y, self.width, self.height = x, y, width, height

        def to_string(self) -> str:
            return f"[{self.x}, {self.y}, {self.width}, {self.height}]"


@dataclass
class CameraSpec:
    serial: str = "00050423"
    width: int = 1280
    height: int = 720
    plugin: str = "hal_plugin_imx636_evk4"
    events: np.ndarray | None = None  # rig.evt3.EVENT_DTYPE ground truth (t, x, y, p)
    triggers: np.ndarray | None = None  # rig.evt3.TRIGGER_DTYPE ground truth (t, id, value)
    n_buffers: int = 20
    buffer_period_s: float = 0.002  # a new driver buffer every this long after start()
    trigger_channel_ids: dict[str, int] = field(default_factory=lambda: {"MAIN": 0, "LOOPBACK": 6})


class RawDataBuffer:
    """The opaque vector of bytes `get_latest_raw_data` returns (len() is its size in bytes)."""

    def __init__(self, data: bytes, cd: np.ndarray, ext: np.ndarray) -> None:
        self._data, self._cd, self._ext = data, cd, ext

    def __len__(self) -> int:
        return len(self._data)


class _Geometry:
    def __init__(self, spec: CameraSpec) -> None:
        self._spec = spec

    def get_width(self) -> int:
        return self._spec.width

    def get_height(self) -> int:
        return self._spec.height


class _SensorInfo:
    name, major_version, minor_version = "IMX636", 4, 2


class _HwIdentification:
    def __init__(self, spec: CameraSpec) -> None:
        self._spec = spec

    def get_serial(self) -> str:
        return self._spec.serial

    def get_integrator(self) -> str:
        return "Prophesee"

    def get_sensor_info(self) -> _SensorInfo:
        return _SensorInfo()

    def get_current_data_encoding_format(self) -> str:
        return "EVT3"

    def get_available_data_encoding_formats(self) -> list[str]:
        return ["EVT3", "EVT21"]

    def get_system_info(self) -> dict[str, str]:
        return {"System Version": "4.6.0", "Serial": self._spec.serial}


class _Biases:
    def __init__(self) -> None:
        self.values = {name: 0 for name in IMX636_BIAS_RANGES}

    def set(self, bias_name: str, bias_value: int) -> bool:
        lo, hi = IMX636_BIAS_RANGES.get(bias_name, (0, -1))
        if not lo <= bias_value <= hi:
            return False
        self.values[bias_name] = int(bias_value)
        return True

    def get(self, bias_name: str) -> int:
        return self.values[bias_name]

    def get_all_biases(self) -> dict[str, int]:
        return dict(self.values)


class _Roi:
    def __init__(self) -> None:
        self.window: I_ROI.Window | None = None
        self.enabled = False

    def set_window(self, roi: I_ROI.Window) -> None:
        self.window = roi

    def enable(self, enable: bool) -> None:
        self.enabled = bool(enable)


class _Erc:
    def __init__(self) -> None:
        self.rate, self.enabled = 0, False

    def enable(self, b: bool) -> None:
        self.enabled = bool(b)

    def is_enabled(self) -> bool:
        return self.enabled

    def set_cd_event_rate(self, events_per_sec: int) -> bool:
        self.rate = min(int(events_per_sec) // 1000 * 1000, 320_000_000)  # kev granularity
        return True

    def get_cd_event_rate(self) -> int:
        return self.rate


class _TriggerIn:
    def __init__(self, spec: CameraSpec) -> None:
        self._ids = {getattr(I_TriggerIn.Channel, k): v for k, v in spec.trigger_channel_ids.items()}
        self.enabled: set[int] = set()

    def enable(self, channel: I_TriggerIn.Channel) -> bool:
        if channel not in self._ids:
            return False
        self.enabled.add(self._ids[channel])
        return True

    def disable(self, channel: I_TriggerIn.Channel) -> bool:
        self.enabled.discard(self._ids.get(channel, -1))
        return channel in self._ids

    def is_enabled(self, channel: I_TriggerIn.Channel) -> bool:
        return self._ids.get(channel, -1) in self.enabled

    def get_available_channels(self) -> dict[I_TriggerIn.Channel, int]:
        return dict(self._ids)


class _EventDecoder:
    def __init__(self) -> None:
        self._callbacks: dict[int, Any] = {}
        self._next = 0

    def add_event_buffer_callback(self, cb: Any) -> int:
        self._next += 1
        self._callbacks[self._next] = cb
        return self._next

    def remove_callback(self, callback_id: int) -> bool:
        return self._callbacks.pop(callback_id, None) is not None

    def _emit(self, arr: np.ndarray) -> None:
        for cb in list(self._callbacks.values()):
            cb(arr)


class _StreamDecoder:
    def __init__(self, cd: _EventDecoder, ext: _EventDecoder) -> None:
        self._cd, self._ext = cd, ext
        self.last_timestamp = -1

    def decode(self, RawData: RawDataBuffer) -> None:  # noqa: N803 (binding's argument name)
        if len(RawData._cd):
            self._cd._emit(RawData._cd)
            self.last_timestamp = int(RawData._cd["t"][-1])
        if len(RawData._ext):
            self._ext._emit(RawData._ext)

    def get_last_timestamp(self) -> int:
        return self.last_timestamp


def _header(spec: CameraSpec) -> bytes:
    lines = ["camera_integrator_name Prophesee", f"date {time.strftime('%Y-%m-%d %H:%M:%S')}",
             "evt 3.0", f"format EVT3;height={spec.height};width={spec.width}", "generation 4.2",
             f"geometry {spec.width}x{spec.height}", "plugin_integrator_name Prophesee",
             f"plugin_name {spec.plugin}", "sensor_generation 4.2", f"serial_number {spec.serial}",
             "system_ID 49", "end"]
    return "".join(f"% {line}\n" for line in lines).encode()


class _EventsStream:
    def __init__(self, device: FakeDevice) -> None:
        self._dev = device
        self.started = False
        self._t0 = 0.0
        self._buffers: list[RawDataBuffer] = []
        self._next = 0
        self._latest: RawDataBuffer | None = None
        self._log: Any = None
        self.log_path: Path | None = None
        self.buffers_logged = 0

    def log_raw_data(self, f: str) -> bool:
        self._log = open(f, "wb")  # noqa: SIM115 (closed by stop_log_raw_data)
        self._log.write(_header(self._dev.spec))
        self.log_path = Path(f)
        return True

    def stop_log_raw_data(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def start(self) -> None:
        self._buffers = self._dev._make_buffers()
        self._next = 0
        self._t0 = time.monotonic()
        self.started = True

    def stop(self) -> None:
        if self.started:  # buffers not yet transferred by the driver never arrive
            elapsed = time.monotonic() - self._t0
            ready = min(len(self._buffers), int(elapsed / self._dev.spec.buffer_period_s) + 1)
            self._buffers = self._buffers[:ready]
        self.started = False

    def poll_buffer(self) -> int:
        if self._next >= len(self._buffers):
            return -1 if not self.started and self._buffers else 0
        if self.started:
            elapsed = time.monotonic() - self._t0
            if elapsed < self._next * self._dev.spec.buffer_period_s:
                return 0
        self._latest = self._buffers[self._next]
        self._next += 1
        return 1

    def wait_next_buffer(self) -> int:
        while (ret := self.poll_buffer()) == 0:
            time.sleep(0.0005)
        return ret

    def get_latest_raw_data(self) -> RawDataBuffer:
        buf, self._latest = self._latest, None
        if buf is None:
            return RawDataBuffer(b"", np.zeros(0, EVENT_CD_DTYPE), np.zeros(0, EVENT_EXT_TRIGGER_DTYPE))
        if self._log is not None:
            self._log.write(buf._data)
            self.buffers_logged += 1
        return buf

    @property
    def buffers_total(self) -> int:
        return len(self._buffers)


class FakeDevice:
    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        self.biases = _Biases()
        self.roi = _Roi()
        self.erc = _Erc()
        self.trigger_in = _TriggerIn(spec)
        self._cd = _EventDecoder()
        self._ext = _EventDecoder()
        self._decoder = _StreamDecoder(self._cd, self._ext)
        self.stream = _EventsStream(self)
        self.sent_events: np.ndarray | None = None
        self.sent_triggers: np.ndarray | None = None

    def get_i_geometry(self) -> _Geometry:
        return _Geometry(self.spec)

    def get_i_hw_identification(self) -> _HwIdentification:
        return _HwIdentification(self.spec)

    def get_i_ll_biases(self) -> _Biases:
        return self.biases

    def get_i_roi(self) -> _Roi:
        return self.roi

    def get_i_erc_module(self) -> _Erc:
        return self.erc

    def get_i_trigger_in(self) -> _TriggerIn:
        return self.trigger_in

    def get_i_events_stream(self) -> _EventsStream:
        return self.stream

    def get_i_events_stream_decoder(self) -> _StreamDecoder:
        return self._decoder

    def get_i_event_cd_decoder(self) -> _EventDecoder:
        return self._cd

    def get_i_event_ext_trigger_decoder(self) -> _EventDecoder:
        return self._ext

    def _make_buffers(self) -> list[RawDataBuffer]:
        """What the sensor sends under the current ROI and trigger-in settings, as EVT3 buffers."""
        from rig.evt3 import EVT3Writer, empty_events, empty_triggers

        spec = self.spec
        ev = spec.events if spec.events is not None else empty_events()
        tr = spec.triggers if spec.triggers is not None else empty_triggers()
        if self.roi.enabled and self.roi.window is not None:
            w = self.roi.window
            keep = ((ev["x"] >= w.x) & (ev["x"] < w.x + w.width)
                    & (ev["y"] >= w.y) & (ev["y"] < w.y + w.height))
            ev = ev[keep]
        tr = tr[np.isin(tr["id"], sorted(self.trigger_in.enabled))]
        self.sent_events, self.sent_triggers = ev, tr
        t_end = max(int(ev["t"][-1]) if len(ev) else 0, int(tr["t"][-1]) if len(tr) else 0) + 1
        edges = np.linspace(0, t_end, spec.n_buffers + 1).astype(np.int64)
        buffers = []
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stream.raw"
            writer = EVT3Writer(path, spec.width, spec.height)
            sizes, parts = [], []
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                e = ev[(ev["t"] >= a) & (ev["t"] < b)]
                t = tr[(tr["t"] >= a) & (tr["t"] < b)]
                sizes.append(writer.write(e, t))
                parts.append((e, t))
            header_bytes = writer.header_bytes
            writer.close()
            body = path.read_bytes()[header_bytes:]
        offset = 0
        for size, (e, t) in zip(sizes, parts, strict=True):
            cd = np.zeros(len(e), EVENT_CD_DTYPE)
            for name in ("x", "y", "p", "t"):
                cd[name] = e[name]
            ext = np.zeros(len(t), EVENT_EXT_TRIGGER_DTYPE)
            ext["t"], ext["id"], ext["p"] = t["t"], t["id"], t["value"]
            buffers.append(RawDataBuffer(body[offset:offset + size], cd, ext))
            offset += size
        return buffers


class CameraDescription:
    def __init__(self, spec: CameraSpec) -> None:
        self.serial = spec.serial
        self.integrator_name = "Prophesee"
        self.plugin_name = spec.plugin
        self.connection = "USB_LINK"
        self.system_id = 49


class DeviceDiscovery:
    @staticmethod
    def open(serial: str) -> FakeDevice | None:
        for spec in _WORLD["cameras"]:
            if serial in ("", spec.serial):
                device = FakeDevice(spec)
                _WORLD["opened"].append(device)
                return device
        return None

    @staticmethod
    def list() -> list[str]:
        return [f"Prophesee:{spec.plugin}:{spec.serial}" for spec in _WORLD["cameras"]]

    @staticmethod
    def list_available_sources() -> list[CameraDescription]:
        return [CameraDescription(spec) for spec in _WORLD["cameras"]]


_WORLD: dict[str, list[Any]] = {"cameras": [], "opened": []}


def reset(*specs: CameraSpec) -> None:
    _WORLD["cameras"] = list(specs)
    _WORLD["opened"] = []


def opened() -> list[FakeDevice]:
    return list(_WORLD["opened"])
