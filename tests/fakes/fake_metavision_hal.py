"""A hardware-free stand-in for OpenEB's `metavision_hal`, injected as sys.modules["metavision_hal"].

Two flavours, chosen by `reset(..., openeb_version=...)`: "4.6.2" and "5.1.1" (the default), each
with that release's Python names and return types, taken from OpenEB's `hal/python/bindings`:
- `I_EventsStream.get_latest_raw_data()`: 4.6 returns `RawDataBuffer` (a pybind11 `bind_vector` of
  std::vector<uint8_t>: `len()`, indexing, no `size()`, no buffer protocol); 5.x returns `RawBuffer`,
  which binds only `size()` (no `len()`, no buffer protocol). `I_Decoder.decode` takes the same type;
- module-level `RawDataBuffer` and the deprecated `Channel` exist in 4.6 only, `RawBuffer` in 5.x only;
  `I_HW_Identification.get_system_id` and `CameraDescription.system_id` in 4.6 only.
Facilities, by their real getter and method names: DeviceDiscovery (open / list /
list_available_sources), get_i_geometry, get_i_hw_identification, get_i_ll_biases (set / get /
get_all_biases / get_bias_info -> LL_Bias_Info), get_i_roi (I_ROI.Window), get_i_erc_module,
get_i_antiflicker_module (I_AntiFlickerModule.AntiFlickerMode.BandStop / BandPass),
get_i_digital_event_mask (get_pixel_masks -> I_PixelMask set_mask / get_mask), get_i_trigger_in
(I_TriggerIn.Channel), get_i_events_stream, get_i_events_stream_decoder, get_i_event_cd_decoder,
get_i_event_ext_trigger_decoder, and module-level get_hal_software_info().
Behaviours copied from the HAL and the IMX636 plugin (same in 4.6.2 and 5.1.1):
- a HAL refusal is OpenEB's `HalException`, which pybind11 turns into a plain `RuntimeError` whose
  text is framed by dashed lines ("Metavision HAL exception", "Error 102001: ..."): out-of-range
  biases, ERC counts, anti-flicker bands, duty cycles and thresholds raise it with the HAL's words;
- an argument that does not fit the binding's C++ type (a negative or > 32-bit uint32_t, a float
  for an int) raises TypeError, as pybind11 does;
- a facility the device lacks is None (`CameraSpec.missing` names getters that return None);
- raw logging happens inside get_latest_raw_data, as in the HAL: only buffers that the caller
  moves along reach the file, after a `% key value` header that ends with `% end`;
  `I_EventsStream.stop()` stops the logging and, on a live camera, drops buffers not yet taken;
- the stream is real EVT3 (encoded by the project's EVT3 writer from a ground-truth script), cut
  into driver buffers that become available over time after start(); or, with `CameraSpec.live`,
  generated as it goes and paced by the wall clock (a buffer of `buffer_period_s` of sensor time
  becomes available once that time has passed, plus `live_latency_s`), as a camera streams it,
  nothing pre-rendered (for long soaks: `benchmarks/soak.py`);
- trigger edges appear only for enabled trigger-in channels, events only inside an enabled ROI and
  never from a pixel an enabled digital-event-mask slot holds;
- callbacks get numpy arrays with Metavision's EventCD / EventExtTrigger dtypes.
"""

from __future__ import annotations

import enum
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EVENT_CD_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")])
EVENT_EXT_TRIGGER_DTYPE = np.dtype([("p", "<i2"), ("t", "<i8"), ("id", "<i2")])

OPENEB_VERSIONS = ("4.6.2", "5.1.1")
DEFAULT_VERSION = "5.1.1"

# IMX636 biases: (recommended range, allowed range), offsets from factory default, from OpenEB's
# hal_psee_plugins/include/devices/imx636/imx636_bias_settings{,_iterator}.h. I_LL_Biases::set checks
# the recommended range (get_bias_range) unless range checks are bypassed.
IMX636_BIASES = {"bias_diff": ((-25, 23), (-150, 200)), "bias_diff_off": ((-35, 190), (-150, 200)),
                 "bias_diff_on": ((-85, 140), (-150, 200)), "bias_fo": ((-35, 55), (-150, 200)),
                 "bias_hpf": ((0, 120), (0, 255)), "bias_refr": ((-20, 235), (-50, 255))}
IMX636_BIAS_RANGES = {name: rec for name, (rec, _allowed) in IMX636_BIASES.items()}

# HalErrorCode values (hal/cpp/include/metavision/hal/utils/hal_error_code.h).
VALUE_OUT_OF_RANGE = 0x102001
NON_EXISTING_VALUE = 0x102002
UINT32_MAX = 2**32 - 1

_STATE: dict[str, Any] = {"version": DEFAULT_VERSION, "cameras": [], "opened": []}


def openeb_version() -> str:
    return str(_STATE["version"])


def _major() -> int:
    return int(openeb_version().split(".")[0])


def hal_error(code: int, text: str) -> RuntimeError:
    """What a C++ HalException looks like in Python: a RuntimeError with BaseException's framing."""
    rule = "-" * 48
    return RuntimeError(f"\n{rule}\nMetavision HAL exception\n\nError {code:x}: {text}\n\n{rule}\n")


def _check_uint32(method: str, *values: Any) -> None:
    """pybind11 refuses a value that does not fit uint32_t with a TypeError."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 <= int(v) <= UINT32_MAX:
            raise TypeError(f"{method}(): incompatible function arguments. The following argument types "
                            f"are supported: ... Invoked with: {values!r}")


def _check_int(method: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{method}(): incompatible function arguments. Invoked with: {value!r}")


# -- version-specific buffer types -------------------------------------------------------------------
class _OpenEB46:
    class RawDataBuffer:
        """pybind11 bind_vector<std::vector<uint8_t>>: len() is the size in bytes."""

        def __init__(self, data: bytes, cd: np.ndarray, ext: np.ndarray) -> None:
            self._data, self._cd, self._ext = data, cd, ext

        def __len__(self) -> int:
            return len(self._data)

        def __getitem__(self, i: int) -> int:
            return self._data[i]

        def __bool__(self) -> bool:
            return bool(self._data)


class _OpenEB5:
    class RawBuffer:
        """DataTransfer::BufferPtr as OpenEB 5 binds it: `size()` only."""

        def __init__(self, data: bytes, cd: np.ndarray, ext: np.ndarray) -> None:
            self._data, self._cd, self._ext = data, cd, ext

        def size(self) -> int:
            return len(self._data)


def _buffer_type() -> type:
    return _OpenEB46.RawDataBuffer if _major() == 4 else _OpenEB5.RawBuffer


def __getattr__(name: str) -> Any:
    """Module attributes that exist in one OpenEB version only."""
    if name == "RawDataBuffer" and _major() == 4:
        return _OpenEB46.RawDataBuffer
    if name == "RawBuffer" and _major() >= 5:
        return _OpenEB5.RawBuffer
    if name == "Channel" and _major() == 4:
        warnings.warn("metavision_hal.Channel is deprecated since v4.0.1, use "
                      "metavision_hal.I_TriggerIn.Channel instead.", stacklevel=2)
        return I_TriggerIn.Channel
    raise AttributeError(f"module 'metavision_hal' has no attribute {name!r}")


class SoftwareInfo:
    def get_version(self) -> str:
        return openeb_version()

    def get_version_major(self) -> int:
        return _major()


def get_hal_software_info() -> SoftwareInfo:
    return SoftwareInfo()


# -- facilities ---------------------------------------------------------------------------------------
class I_ROI:  # noqa: N801
    class Mode(enum.IntEnum):
        ROI = 0
        RONI = 1

    class Window:
        def __init__(self, x: int, y: int, width: int, height: int) -> None:
            self.x, self.y, self.width, self.height = x, y, width, height

        def to_string(self) -> str:
            return f"[{self.x}, {self.y}, {self.width}, {self.height}]"

    def __init__(self) -> None:
        self.window: I_ROI.Window | None = None
        self.enabled = False

    def set_window(self, roi: I_ROI.Window) -> None:
        self.window = roi

    def enable(self, enable: bool) -> bool:
        self.enabled = bool(enable)
        return True


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
    missing: tuple[str, ...] = ()  # facility getters that return None (e.g. "get_i_antiflicker_module")
    mask_slots: int = 64  # Gen41DigitalEventMask::NUM_MASK_REGISTERS_
    # A live sensor instead of `events`/`triggers`: live(t0_us, t1_us, t_start_monotonic) -> (events,
    # triggers) of the sensor time [t0_us, t1_us) (rig.evt3 dtypes, sorted; sensor time counts from
    # start(), which happened at t_start_monotonic), called once per buffer in real time.
    live: Any = None
    live_latency_s: float = 0.02  # a live buffer is ready this long after its sensor time ended


class _Geometry:
    def __init__(self, spec: CameraSpec) -> None:
        self._spec = spec

    def get_width(self) -> int:
        return self._spec.width

    def get_height(self) -> int:
        return self._spec.height


class SensorInfo:
    name, major_version, minor_version = "IMX636", 4, 2


class I_HW_Identification:  # noqa: N801
    def __init__(self, spec: CameraSpec) -> None:
        self._spec = spec
        if _major() == 4:  # removed from the bindings in 5.0
            self.get_system_id = lambda: 49

    def get_serial(self) -> str:
        return self._spec.serial

    def get_integrator(self) -> str:
        return "Prophesee"

    def get_sensor_info(self) -> SensorInfo:
        return SensorInfo()

    def get_current_data_encoding_format(self) -> str:
        return "EVT3"

    def get_available_data_encoding_formats(self) -> list[str]:
        return ["EVT3", "EVT21"]

    def get_system_info(self) -> dict[str, str]:
        return {"System Version": "4.6.0", "Serial": self._spec.serial}


class LL_Bias_Info:  # noqa: N801
    def __init__(self, recommended: tuple[int, int], allowed: tuple[int, int]) -> None:
        self._recommended, self._allowed = recommended, allowed

    def get_description(self) -> str:
        return ""

    def get_category(self) -> str:
        return ""

    def get_bias_range(self) -> tuple[int, int]:
        return self._recommended  # no DeviceConfig range-check bypass

    def get_bias_allowed_range(self) -> tuple[int, int]:
        return self._allowed

    def get_bias_recommended_range(self) -> tuple[int, int]:
        return self._recommended

    def is_modifiable(self) -> bool:
        return True


class I_LL_Biases:  # noqa: N801
    """I_LL_Biases::set/get of hal/cpp/src/facilities/i_ll_biases.cpp, with the IMX636's biases."""

    def __init__(self) -> None:
        self.values = {name: 0 for name in IMX636_BIASES}

    def _unavailable(self, bias_name: str) -> RuntimeError:
        return hal_error(NON_EXISTING_VALUE, f'Unavailable bias: "{bias_name}".')

    def set(self, bias_name: str, bias_value: int) -> bool:
        _check_int("set", bias_value)
        if bias_name not in IMX636_BIASES:
            raise self._unavailable(bias_name)
        lo, hi = IMX636_BIASES[bias_name][0]
        if not lo <= bias_value <= hi:
            raise hal_error(VALUE_OUT_OF_RANGE, f'Invalid value {bias_value} for bias "{bias_name}". Value '
                                                f"should be within range [{lo}, {hi}].")
        self.values[bias_name] = int(bias_value)
        return True

    def get(self, bias_name: str) -> int:
        if bias_name not in self.values:
            raise self._unavailable(bias_name)
        return self.values[bias_name]

    def get_all_biases(self) -> dict[str, int]:
        return dict(self.values)

    def get_bias_info(self, bias_name: str) -> LL_Bias_Info:
        if bias_name not in IMX636_BIASES:
            raise self._unavailable(bias_name)
        return LL_Bias_Info(*IMX636_BIASES[bias_name])


class I_ErcModule:  # noqa: N801
    """Gen41Erc (IMX636): a 200 us count period, at most 640000 events per period
    (hal_psee_plugins/src/devices/gen41/gen41_erc.cpp); rates go through I_ErcModule's conversion."""

    COUNT_PERIOD_US = 200
    COUNT_MAX = 640_000

    def __init__(self) -> None:
        self.count, self.enabled = 4000, False

    def enable(self, b: bool) -> bool:
        self.enabled = bool(b)
        return True

    def is_enabled(self) -> bool:
        return self.enabled

    def erc_from_file(self, file_path: str) -> None:
        pass

    def get_count_period(self) -> int:
        return self.COUNT_PERIOD_US

    def set_cd_event_count(self, event_count: int) -> bool:
        _check_uint32("set_cd_event_count", event_count)
        if event_count > self.COUNT_MAX:
            raise hal_error(VALUE_OUT_OF_RANGE, f"Cannot set CD event count to :{event_count}. Value should "
                                                f"be in the range [0, {self.COUNT_MAX}]")
        self.count = int(event_count)
        return True

    def get_cd_event_count(self) -> int:
        return self.count

    def get_min_supported_cd_event_count(self) -> int:
        return 0

    def get_max_supported_cd_event_count(self) -> int:
        return self.COUNT_MAX

    def set_cd_event_rate(self, events_per_sec: int) -> bool:
        _check_uint32("set_cd_event_rate", events_per_sec)
        return self.set_cd_event_count(int(events_per_sec) * self.COUNT_PERIOD_US // 1_000_000)

    def get_cd_event_rate(self) -> int:
        return self.count * 1_000_000 // self.COUNT_PERIOD_US

    def get_min_supported_cd_event_rate(self) -> int:
        return 0

    def get_max_supported_cd_event_rate(self) -> int:
        return self.COUNT_MAX * 1_000_000 // self.COUNT_PERIOD_US

    @property
    def rate(self) -> int:
        return self.get_cd_event_rate()


class I_AntiFlickerModule:  # noqa: N801
    """AntiFlickerFilter (hal_psee_plugins/src/devices/common/antiflicker_filter.cpp): 50..520 Hz,
    duty cycle in sixteenths, start/stop thresholds 0..7; defaults 50-520 Hz, BAND_STOP, 50 %, 6, 4."""

    class AntiFlickerMode(enum.IntEnum):  # C++ enum { BAND_PASS, BAND_STOP }, Python names BandPass/BandStop
        BandPass = 0
        BandStop = 1

    def __init__(self) -> None:
        self.enabled = False
        self.low, self.high = 50, 520
        self.mode = I_AntiFlickerModule.AntiFlickerMode.BandStop
        self.inverted_duty_cycle = 8
        self.start, self.stop = 6, 4

    def enable(self, b: bool) -> bool:
        self.enabled = bool(b)
        return True

    def is_enabled(self) -> bool:
        return self.enabled

    def get_min_supported_frequency(self) -> int:
        return 50

    def get_max_supported_frequency(self) -> int:
        return 520

    def set_frequency_band(self, min_freq: int, max_freq: int) -> bool:
        _check_uint32("set_frequency_band", min_freq, max_freq)
        lo, hi = self.get_min_supported_frequency(), self.get_max_supported_frequency()
        if min_freq < lo or max_freq > hi or min_freq > max_freq:
            raise hal_error(VALUE_OUT_OF_RANGE, f"Invalid input frequencies. Expected: {lo} <= low_freq (= "
                                                f"{min_freq}) < high_freq (= {max_freq}) <= {hi}")
        self.low, self.high = int(min_freq), int(max_freq)
        return True

    def get_band_low_frequency(self) -> int:
        return self.low

    def get_band_high_frequency(self) -> int:
        return self.high

    def get_frequency_band(self) -> tuple[int, int]:
        return self.low, self.high

    def set_filtering_mode(self, mode: I_AntiFlickerModule.AntiFlickerMode) -> bool:
        if not isinstance(mode, I_AntiFlickerModule.AntiFlickerMode):
            raise TypeError(f"set_filtering_mode(): incompatible function arguments. Invoked with: {mode!r}")
        self.mode = mode
        return True

    def get_filtering_mode(self) -> I_AntiFlickerModule.AntiFlickerMode:
        return self.mode

    def set_duty_cycle(self, percent_activity: float) -> bool:
        if percent_activity <= 0.0 or percent_activity > 100.0:
            raise hal_error(VALUE_OUT_OF_RANGE, f"Invalid input duty cycle. Expected: 0 < duty_cycle (= "
                                                f"{percent_activity}) <= 100")
        self.inverted_duty_cycle = min(15, round(16 * (100.0 - percent_activity) / 100.0))
        return True

    def get_duty_cycle(self) -> float:
        return 100.0 - self.inverted_duty_cycle * 100.0 / 16.0

    def get_min_supported_duty_cycle(self) -> float:
        return 1.0 / 16.0

    def get_max_supported_duty_cycle(self) -> float:
        return 100.0

    def _threshold(self, which: str, threshold: int) -> int:
        _check_uint32(f"set_{which}_threshold", threshold)
        if threshold > 7:
            raise hal_error(VALUE_OUT_OF_RANGE, f"Invalid {which} threshold. Expected: 0 <= threshold (= "
                                                f"{threshold}) <= 7")
        return int(threshold)

    def set_start_threshold(self, threshold: int) -> bool:
        self.start = self._threshold("start", threshold)
        return True

    def set_stop_threshold(self, threshold: int) -> bool:
        self.stop = self._threshold("stop", threshold)
        return True

    def get_start_threshold(self) -> int:
        return self.start

    def get_stop_threshold(self) -> int:
        return self.stop

    def get_min_supported_start_threshold(self) -> int:
        return 0

    def get_max_supported_start_threshold(self) -> int:
        return 7

    def get_min_supported_stop_threshold(self) -> int:
        return 0

    def get_max_supported_stop_threshold(self) -> int:
        return 7


class I_PixelMask:  # noqa: N801
    def __init__(self) -> None:
        self.x, self.y, self.enabled = 0, 0, False

    def set_mask(self, x: int, y: int, enabled: bool) -> bool:
        _check_uint32("set_mask", x, y)
        self.x, self.y, self.enabled = int(x), int(y), bool(enabled)
        return True

    def get_mask(self) -> tuple[int, int, bool]:
        return self.x, self.y, self.enabled


class I_DigitalEventMask:  # noqa: N801
    def __init__(self, slots: int) -> None:
        self._masks = [I_PixelMask() for _ in range(slots)]

    def get_pixel_masks(self) -> list[I_PixelMask]:
        return list(self._masks)

    def masked(self) -> set[tuple[int, int]]:
        return {(m.x, m.y) for m in self._masks if m.enabled}


class I_TriggerIn:  # noqa: N801 (SDK name)
    class Channel(enum.IntEnum):
        MAIN = 0
        AUX = 1
        LOOPBACK = 2

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


class I_Decoder:  # noqa: N801 (the binding's class name for I_EventsStreamDecoder)
    def __init__(self, cd: _EventDecoder, ext: _EventDecoder) -> None:
        self._cd, self._ext = cd, ext
        self.last_timestamp = -1

    def decode(self, RawData: Any) -> None:  # noqa: N803 (binding's argument name)
        expected = _buffer_type()
        if not isinstance(RawData, expected):
            if _major() >= 5:  # raw_buffer.cast<DataTransfer::BufferPtr &>() fails
                raise RuntimeError(f"Unable to cast Python instance of type {type(RawData)} to C++ type "
                                   "'Metavision::DataTransfer::BufferPtr'")
            raise TypeError(f"decode(): incompatible function arguments. Invoked with: {RawData!r}")
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


class I_EventsStream:  # noqa: N801
    def __init__(self, device: FakeDevice) -> None:
        self._dev = device
        self.started = False
        self._t0 = 0.0
        self._buffers: list[Any] = []
        self._next = 0
        self._log: Any = None
        self.log_path: Path | None = None
        self.buffers_logged = 0
        self.buffers_dropped_at_stop = 0
        self._encoder: Any = None  # live streams: the EVT3 encoder, its state kept across buffers

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
        live = self._dev.spec.live is not None
        self._buffers = [] if live else self._dev._make_buffers()
        self._encoder = self._dev._live_encoder() if live else None
        self._next = 0
        self._t0 = time.monotonic()
        self.started = True

    def stop(self) -> None:
        """As I_EventsStream::stop on a live camera: available buffers are released, logging ends."""
        if self.started:
            available = self._ready() if self._encoder is not None else min(self._ready(), len(self._buffers))
            self.buffers_dropped_at_stop = max(0, available - self._next)
        self._buffers = self._buffers[:self._next]
        self.started = False
        self.stop_log_raw_data()

    def _ready(self) -> int:
        if self._encoder is not None:  # live: a buffer once its sensor time has passed
            spec = self._dev.spec
            return max(0, int((time.monotonic() - self._t0 - spec.live_latency_s) / spec.buffer_period_s))
        return int((time.monotonic() - self._t0) / self._dev.spec.buffer_period_s) + 1

    def poll_buffer(self) -> int:
        if not self.started:
            return -1
        if self._encoder is not None:
            return 1 if self._next < self._ready() else 0
        if self._next < len(self._buffers) and self._next < self._ready():
            return 1
        return 0

    def wait_next_buffer(self) -> int:
        while (ret := self.poll_buffer()) == 0:
            time.sleep(0.0005)
        return ret

    def get_latest_raw_data(self) -> Any:
        if self.poll_buffer() <= 0:
            return _buffer_type()(b"", np.zeros(0, EVENT_CD_DTYPE), np.zeros(0, EVENT_EXT_TRIGGER_DTYPE))
        if self._encoder is not None:
            period_us = int(round(self._dev.spec.buffer_period_s * 1e6))
            buf = self._dev._live_buffer(self._encoder, self._next * period_us,
                                         (self._next + 1) * period_us, self._t0)
        else:
            buf = self._buffers[self._next]
        self._next += 1
        if self._log is not None:
            self._log.write(buf._data)
            self.buffers_logged += 1
        return buf

    @property
    def buffers_total(self) -> int:
        return self._next if self._encoder is not None else len(self._buffers)


class FakeDevice:
    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        self.biases = I_LL_Biases()
        self.roi = I_ROI()
        self.erc = I_ErcModule()
        self.antiflicker = I_AntiFlickerModule()
        self.event_mask = I_DigitalEventMask(spec.mask_slots)
        self.trigger_in = I_TriggerIn(spec)
        self._cd = _EventDecoder()
        self._ext = _EventDecoder()
        self._decoder = I_Decoder(self._cd, self._ext)
        self.stream = I_EventsStream(self)
        self.sent_events: np.ndarray | None = None
        self.sent_triggers: np.ndarray | None = None

    def _facility(self, getter: str, facility: Any) -> Any:
        return None if getter in self.spec.missing else facility

    def get_i_geometry(self) -> _Geometry | None:
        return self._facility("get_i_geometry", _Geometry(self.spec))

    def get_i_hw_identification(self) -> I_HW_Identification | None:
        return self._facility("get_i_hw_identification", I_HW_Identification(self.spec))

    def get_i_ll_biases(self) -> I_LL_Biases | None:
        return self._facility("get_i_ll_biases", self.biases)

    def get_i_roi(self) -> I_ROI | None:
        return self._facility("get_i_roi", self.roi)

    def get_i_erc_module(self) -> I_ErcModule | None:
        return self._facility("get_i_erc_module", self.erc)

    def get_i_antiflicker_module(self) -> I_AntiFlickerModule | None:
        return self._facility("get_i_antiflicker_module", self.antiflicker)

    def get_i_digital_event_mask(self) -> I_DigitalEventMask | None:
        return self._facility("get_i_digital_event_mask", self.event_mask)

    def get_i_trigger_in(self) -> I_TriggerIn | None:
        return self._facility("get_i_trigger_in", self.trigger_in)

    def get_i_events_stream(self) -> I_EventsStream | None:
        return self._facility("get_i_events_stream", self.stream)

    def get_i_events_stream_decoder(self) -> I_Decoder | None:
        return self._facility("get_i_events_stream_decoder", self._decoder)

    def get_i_event_cd_decoder(self) -> _EventDecoder | None:
        return self._facility("get_i_event_cd_decoder", self._cd)

    def get_i_event_ext_trigger_decoder(self) -> _EventDecoder | None:
        return self._facility("get_i_event_ext_trigger_decoder", self._ext)

    def _sensed(self, ev: np.ndarray, tr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the sensor sends of `ev`/`tr` under the current ROI, mask and trigger-in settings."""
        spec = self.spec
        if self.roi.enabled and self.roi.window is not None:
            w = self.roi.window
            keep = ((ev["x"] >= w.x) & (ev["x"] < w.x + w.width)
                    & (ev["y"] >= w.y) & (ev["y"] < w.y + w.height))
            ev = ev[keep]
        masked = self.event_mask.masked()
        if masked:
            index = ev["y"].astype(np.int64) * spec.width + ev["x"]
            ev = ev[~np.isin(index, [y * spec.width + x for x, y in masked])]
        tr = tr[np.isin(tr["id"], sorted(self.trigger_in.enabled))]
        return ev, tr

    def _live_encoder(self) -> Any:
        from rig.evt.evt3 import _Encoder  # the EVT3 writer's word encoder, state kept across buffers

        return _Encoder(self.spec.width, self.spec.height)

    def _live_buffer(self, encoder: Any, t0_us: int, t1_us: int, t_start: float) -> Any:
        """One buffer of a live sensor: [t0_us, t1_us) from `spec.live`, encoded on."""
        ev, tr = self._sensed(*self.spec.live(t0_us, t1_us, t_start))
        cd = np.zeros(len(ev), EVENT_CD_DTYPE)
        for name in ("x", "y", "p", "t"):
            cd[name] = ev[name]
        ext = np.zeros(len(tr), EVENT_EXT_TRIGGER_DTYPE)
        ext["t"], ext["id"], ext["p"] = tr["t"], tr["id"], tr["value"]
        return _buffer_type()(encoder.encode(ev, tr).tobytes(), cd, ext)

    def _make_buffers(self) -> list[Any]:
        """What the sensor sends under the current ROI, mask and trigger-in settings, as EVT3 buffers."""
        from rig.evt3 import EVT3Writer, empty_events, empty_triggers

        spec = self.spec
        ev = spec.events if spec.events is not None else empty_events()
        tr = spec.triggers if spec.triggers is not None else empty_triggers()
        ev, tr = self._sensed(ev, tr)
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
        make = _buffer_type()
        for size, (e, t) in zip(sizes, parts, strict=True):
            cd = np.zeros(len(e), EVENT_CD_DTYPE)
            for name in ("x", "y", "p", "t"):
                cd[name] = e[name]
            ext = np.zeros(len(t), EVENT_EXT_TRIGGER_DTYPE)
            ext["t"], ext["id"], ext["p"] = t["t"], t["id"], t["value"]
            buffers.append(make(body[offset:offset + size], cd, ext))
            offset += size
        return buffers


class CameraDescription:
    def __init__(self, spec: CameraSpec) -> None:
        self.serial = spec.serial
        self.integrator_name = "Prophesee"
        self.plugin_name = spec.plugin
        self.connection = "USB_LINK"
        if _major() == 4:  # PluginCameraDescription.system_id: removed in 5.0
            self.system_id = 49


class DeviceDiscovery:
    @staticmethod
    def open(serial: str) -> FakeDevice | None:
        for spec in _STATE["cameras"]:
            if serial in ("", spec.serial):
                device = FakeDevice(spec)
                _STATE["opened"].append(device)
                return device
        return None

    @staticmethod
    def list() -> list[str]:
        return [f"Prophesee:{spec.plugin}:{spec.serial}" for spec in _STATE["cameras"]]

    @staticmethod
    def list_available_sources() -> list[CameraDescription]:
        return [CameraDescription(spec) for spec in _STATE["cameras"]]


def reset(*specs: CameraSpec, openeb_version: str = DEFAULT_VERSION) -> None:
    """Attached cameras, and which OpenEB release the module behaves as."""
    if openeb_version not in OPENEB_VERSIONS:
        raise ValueError(f"fake metavision_hal knows OpenEB {OPENEB_VERSIONS}, not {openeb_version}")
    _STATE["version"] = openeb_version
    _STATE["cameras"] = list(specs)
    _STATE["opened"] = []


def opened() -> list[FakeDevice]:
    return list(_STATE["opened"])
