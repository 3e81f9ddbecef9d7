"""Prophesee EVK4 through OpenEB's HAL Python bindings (`metavision_hal`), behind `EventCamera`.

The HAL writes `events.raw` itself (`I_EventsStream.log_raw_data`): a pump thread only moves the
driver's buffers along (`poll_buffer` / `get_latest_raw_data`) and hands them to the HAL decoder,
whose C++ callbacks give per-buffer event counts and the EXT_TRIGGER edges. No event byte is
parsed or copied by Python. `metavision_hal` is imported when the backend is created, so the
toolkit runs without OpenEB and a missing SDK is one `BackendUnavailable` line.

Written against OpenEB 4.6 and 5.x (their `hal/python/bindings` differ where this module cares in
one place: `get_latest_raw_data()` returns a `RawDataBuffer` with `len()` in 4.6 and a `RawBuffer`
with only `size()` in 5.x, see `raw_size`). A refusal of the HAL (C++ `HalException`) reaches Python
as a plain `RuntimeError`; every one is turned into a `DeviceError` that names the setting.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rig.backends._genicam import import_sdk
from rig.biasfile import BiasFileError, load_bias_file
from rig.devices import (
    AntiFlickerSettings,
    DeviceError,
    DeviceInfo,
    EventCameraLifecycle,
    EventCameraSettings,
    EventRates,
)

INSTALL_HINT = ("build OpenEB 4.6 or 5.x from source with Python bindings (-DCOMPILE_PYTHON3_BINDINGS=ON) "
                "and put its lib/python3/site-packages on PYTHONPATH, see docs/hardware.md")
#: EXT_TRIGGER channel ids of Gen4.1 / IMX636 EVKs, by OpenEB's I_TriggerIn.Channel names.
CHANNEL_IDS = {"MAIN": 0, "AUX": 1, "LOOPBACK": 6}
#: I_AntiFlickerModule.AntiFlickerMode member for each rig.yaml mode.
ANTIFLICKER_MODES = {"band_stop": "BandStop", "band_pass": "BandPass"}
#: How long the pump sleeps when the driver has no buffer ready (keeps a core free).
IDLE_SLEEP_S = 0.001
#: Window of the live event-rate estimate.
RATE_WINDOW_S = 1.0
#: At stop, buffers already in the driver's queue are logged for at most this long before stop().
DRAIN_LIMIT_S = 1.0


def load_hal() -> Any:
    return import_sdk("metavision_hal", "the metavision event-camera backend", INSTALL_HINT)


def _facility(device: Any, getter: str) -> Any:
    """The facility `getter` returns, or None where the device (or this OpenEB) has none."""
    fn = getattr(device, getter, None)
    return fn() if fn is not None else None


def openeb_version(hal: Any) -> str:
    """The OpenEB release of the loaded bindings (`get_hal_software_info().get_version()`), "" if unknown."""
    try:
        return str(hal.get_hal_software_info().get_version())
    except Exception:  # noqa: BLE001 - an older or partial binding: the version is only informative
        return ""


def raw_size(raw: Any) -> int:
    """Bytes in what `I_EventsStream.get_latest_raw_data()` returned.

    OpenEB 5.x: a `RawBuffer` that binds only `size()` (no `len()`, no buffer protocol); OpenEB 4.6:
    a `RawDataBuffer`, pybind11's bound std::vector<uint8_t>, with `len()` and no `size()`.
    """
    size = getattr(raw, "size", None)
    if callable(size):
        return int(size())
    nbytes = getattr(raw, "nbytes", None)  # a numpy array (its .size counts items, not bytes)
    if isinstance(nbytes, int):
        return nbytes
    return len(raw)


def hal_message(exc: BaseException) -> str:
    """The informative part of a HAL refusal: OpenEB's HalException text is framed by dashed lines
    and the category name ("Metavision HAL exception"), which would split a one-line error."""
    lines = (line.strip() for line in str(exc).splitlines())
    useful = [line for line in lines if line and set(line) != {"-"} and line != "Metavision HAL exception"]
    return " ".join(useful) or type(exc).__name__


class MetavisionEventCamera(EventCameraLifecycle):
    """An EVK4 (or any OpenEB-supported camera) recording its native raw stream to a file.

    `serial`: the camera's serial (None or "": the first camera). `count_cd_events`: let the HAL
    decode CD events so the live rate counts them (C++ work plus one Python call per buffer); off,
    only bytes and trigger edges are counted and the event rate reads 0.
    """

    backend = "metavision"

    def __init__(self, serial: str | None = None, *, count_cd_events: bool = True, **_ignored: Any) -> None:
        self._hal_module = load_hal()
        self.serial = str(serial) if serial else ""
        self.count_cd_events = count_cd_events
        self.width = 0
        self.height = 0
        self._device: Any = None
        self._identity: dict[str, str] = {}
        self._system_info: dict[str, str] = {}
        self._applied: dict[str, Any] = {}
        self._trigger_channel_id: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None
        self._pump_error: BaseException | None = None
        self._raw_path: Path | None = None
        self._stream: Any = None
        self._decoder: Any = None
        self._callback_ids: list[tuple[Any, Any]] = []
        self.openeb_version = openeb_version(self._hal_module)
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._events = 0
        self._triggers = 0
        self._trigger_edges = 0
        self._bytes = 0
        self._buffers = 0
        self._t_start = time.monotonic()
        self._history: collections.deque[tuple[float, int]] = collections.deque()

    @property
    def device_name(self) -> str:
        return f"Prophesee camera {self._identity.get('serial') or self.serial or ''}".strip()

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        try:
            device = self._hal_module.DeviceDiscovery.open(self.serial)
        except Exception as exc:  # noqa: BLE001 - HalException and friends
            raise DeviceError(f"cannot open Prophesee camera {self.serial or '(first)'}: "
                              f"{hal_message(exc)}") from exc
        if device is None:
            which = f"with serial {self.serial}" if self.serial else "at all"
            raise DeviceError(f"no Prophesee camera found {which} (check USB3, udev rules and the "
                              "OpenEB plugins path, see docs/hardware.md)")
        self._device = device
        self._mark_open()
        geometry = _facility(device, "get_i_geometry")
        if geometry is not None:
            self.width, self.height = int(geometry.get_width()), int(geometry.get_height())
        hw = _facility(device, "get_i_hw_identification")
        if hw is not None:
            sensor = hw.get_sensor_info()
            self._identity = {
                "serial": str(hw.get_serial()),
                "integrator": str(hw.get_integrator()),
                "sensor": f"{getattr(sensor, 'name', '')} {getattr(sensor, 'major_version', '')}."
                          f"{getattr(sensor, 'minor_version', '')}".strip(),
                "encoding": str(hw.get_current_data_encoding_format()),
            }
            info = hw.get_system_info() if hasattr(hw, "get_system_info") else {}
            self._system_info = {str(k): str(v) for k, v in dict(info or {}).items()}
            self._identity["firmware"] = next(
                (v for k, v in self._system_info.items() if "version" in k.lower()), "")

    def close(self) -> None:
        if self.is_running:
            self.stop_recording()
        self._device = None  # the HAL closes the camera when the last reference goes
        self._mark_closed()

    def info(self) -> DeviceInfo:
        rates = self.rates()
        return DeviceInfo(kind="event_camera", backend=self.backend,
                          model=" ".join(x for x in (self._identity.get("integrator", ""),
                                                     self._identity.get("sensor", "")) if x),
                          serial=self._identity.get("serial", self.serial),
                          firmware=self._identity.get("firmware", ""),
                          extra={"applied": self._applied, "encoding": self._identity.get("encoding", ""),
                                 "openeb_version": self.openeb_version,
                                 "system_info": self._system_info,
                                 "geometry": [self.width, self.height],
                                 "counts": {"events": rates.events_total, "triggers": rates.triggers_total,
                                            "trigger_edges": self._trigger_edges,
                                            "bytes": rates.bytes_written, "buffers": self._buffers}})

    # -- configuration ---------------------------------------------------------------------------
    def configure(self, settings: EventCameraSettings) -> None:
        """Apply every setting; what is not asked for is switched off (no state leaks from a previous
        program). `info().extra["applied"]` holds what the camera reports back."""
        self._require_stopped("configure()")
        device = self._device
        self._applied = {"biases": self._set_biases(device, settings),
                         "roi": self._set_roi(device, settings.roi),
                         "erc_rate_ev_s": self._set_erc(device, settings.erc_rate_ev_s),
                         "antiflicker": self._set_antiflicker(device, settings.antiflicker),
                         "hot_pixels": self._set_hot_pixels(device, settings.hot_pixels),
                         "trigger_in_channel": self._set_trigger_in(device, settings.trigger_in_channel)}
        self._mark_configured()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call the HAL; a refusal (HalException -> RuntimeError, or pybind11's TypeError for an
        argument outside the C++ type) becomes a DeviceError that says what was being set."""
        try:
            return fn(*args)
        except (RuntimeError, TypeError) as exc:
            raise DeviceError(f"{self.device_name}: {what} refused by the HAL: {hal_message(exc)}") from exc

    def _missing(self, facility: str, setting: str) -> DeviceError:
        return DeviceError(f"{self.device_name}: this camera (or this OpenEB) has no {facility}, but "
                           f"event_camera.settings.{setting} asks for it")

    def _set_biases(self, device: Any, settings: EventCameraSettings) -> dict[str, int]:
        from_file = dict(settings.biases_from_file)
        if settings.biases_file and not from_file:
            try:
                from_file = load_bias_file(settings.biases_file, sensor=None).values()
            except BiasFileError as exc:
                raise DeviceError(f"{self.device_name}: {exc}") from None
        wanted = {**from_file, **settings.biases}
        ll = _facility(device, "get_i_ll_biases")
        if ll is None:
            if wanted:
                raise self._missing("bias facility (I_LL_Biases)", "biases")
            return {}
        known = dict(ll.get_all_biases())
        for name, value in wanted.items():
            source = ("event_camera.settings.biases" if name in settings.biases
                      else f"bias file {settings.biases_file}")
            if name not in known:
                raise DeviceError(f"{self.device_name}: unknown bias {name!r} (from {source}); this sensor "
                                  f"has: {', '.join(sorted(known))}")
            lo_hi = self._bias_range(ll, name)
            allowed = f" (allowed range [{lo_hi[0]}, {lo_hi[1]}])" if lo_hi else ""
            if lo_hi is not None and not lo_hi[0] <= int(value) <= lo_hi[1]:
                raise DeviceError(f"{self.device_name}: bias {name} = {value} (from {source}) refused: "
                                  f"outside its allowed range [{lo_hi[0]}, {lo_hi[1]}]")
            try:
                ok = ll.set(name, int(value))
            except (RuntimeError, TypeError) as exc:  # HalException: out of range, not modifiable, ...
                raise DeviceError(f"{self.device_name}: bias {name} = {value} (from {source}) refused by the "
                                  f"HAL{allowed}: {hal_message(exc)}") from exc
            if ok is False:
                raise DeviceError(f"{self.device_name}: bias {name} = {value} (from {source}) refused by the "
                                  f"HAL{allowed}")
        return {name: int(ll.get(name)) for name in sorted(known)}

    @staticmethod
    def _bias_range(ll: Any, name: str) -> tuple[int, int] | None:
        """The range `I_LL_Biases.set` enforces (`get_bias_info(name).get_bias_range()`)."""
        info = getattr(ll, "get_bias_info", None)
        if info is None:
            return None
        try:
            lo, hi = info(name).get_bias_range()
        except (RuntimeError, AttributeError, TypeError, ValueError):
            return None
        return int(lo), int(hi)

    def _set_roi(self, device: Any, roi: tuple[int, int, int, int] | None) -> list[int] | None:
        facility = _facility(device, "get_i_roi")
        if facility is None:
            if roi is not None:
                raise self._missing("ROI facility (I_ROI)", "roi")
            return None
        if roi is None:
            facility.enable(False)
            return None
        x, y, w, h = (int(v) for v in roi)
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > self.width or y + h > self.height:
            raise DeviceError(f"{self.device_name}: ROI {roi} outside the {self.width}x{self.height} sensor")
        self._call(f"ROI {roi}", facility.set_window, self._hal_module.I_ROI.Window(x, y, w, h))
        facility.enable(True)
        return [x, y, w, h]

    def _set_erc(self, device: Any, rate_ev_s: float | None) -> float | None:
        erc = _facility(device, "get_i_erc_module")
        if erc is None:
            if rate_ev_s is not None:
                raise self._missing("event-rate controller (I_ErcModule)", "erc_rate_ev_s")
            return None
        if rate_ev_s is None:
            erc.enable(False)
            return None
        lo, hi = int(erc.get_min_supported_cd_event_rate()), int(erc.get_max_supported_cd_event_rate())
        if not lo <= rate_ev_s <= hi:
            raise DeviceError(f"{self.device_name}: event-rate controller limit {rate_ev_s:g} ev/s outside "
                              f"the sensor's range [{lo}, {hi}] ev/s")
        self._call(f"event-rate controller limit {rate_ev_s:g} ev/s", erc.set_cd_event_rate, int(rate_ev_s))
        self._call("enabling the event-rate controller", erc.enable, True)
        return float(erc.get_cd_event_rate())

    def _set_antiflicker(self, device: Any, afk: AntiFlickerSettings | None) -> dict[str, Any] | None:
        module = _facility(device, "get_i_antiflicker_module")
        wanted = afk is not None and afk.enabled
        if module is None:
            if wanted:
                raise self._missing("anti-flicker filter (I_AntiFlickerModule)", "antiflicker")
            return None
        module.enable(False)  # the filter takes its parameters while off (AntiFlickerFilter::enable)
        if afk is None or not wanted:
            return None
        lo, hi = int(module.get_min_supported_frequency()), int(module.get_max_supported_frequency())
        if not lo <= afk.low_hz <= afk.high_hz <= hi:
            raise DeviceError(f"{self.device_name}: anti-flicker band {afk.low_hz}-{afk.high_hz} Hz outside "
                              f"the sensor's {lo}-{hi} Hz (or low above high)")
        if afk.mode not in ANTIFLICKER_MODES:
            raise DeviceError(f"{self.device_name}: anti-flicker mode {afk.mode!r} is not one of "
                              f"{', '.join(ANTIFLICKER_MODES)}")
        modes = self._hal_module.I_AntiFlickerModule.AntiFlickerMode
        self._call(f"anti-flicker band {afk.low_hz}-{afk.high_hz} Hz", module.set_frequency_band,
                  int(afk.low_hz), int(afk.high_hz))
        self._call(f"anti-flicker mode {afk.mode}", module.set_filtering_mode,
                  getattr(modes, ANTIFLICKER_MODES[afk.mode]))
        if afk.duty_cycle_percent is not None:
            self._call(f"anti-flicker duty cycle {afk.duty_cycle_percent} %", module.set_duty_cycle,
                      float(afk.duty_cycle_percent))
        for which, value in (("start", afk.start_threshold), ("stop", afk.stop_threshold)):
            if value is None:
                continue
            t_lo = int(getattr(module, f"get_min_supported_{which}_threshold")())
            t_hi = int(getattr(module, f"get_max_supported_{which}_threshold")())
            if not t_lo <= value <= t_hi:
                raise DeviceError(f"{self.device_name}: anti-flicker {which} threshold {value} outside the "
                                  f"sensor's [{t_lo}, {t_hi}]")
            self._call(f"anti-flicker {which} threshold {value}", getattr(module, f"set_{which}_threshold"),
                      int(value))
        if self._call("enabling the anti-flicker filter", module.enable, True) is False:
            raise DeviceError(f"{self.device_name}: enabling the anti-flicker filter failed")
        mode = module.get_filtering_mode()
        mode_name = next((k for k, v in ANTIFLICKER_MODES.items() if getattr(modes, v) == mode), str(mode))
        return {"enabled": bool(module.is_enabled()), "low_hz": int(module.get_band_low_frequency()),
                "high_hz": int(module.get_band_high_frequency()),
                "mode": mode_name,
                "duty_cycle_percent": float(module.get_duty_cycle()),
                "start_threshold": int(module.get_start_threshold()),
                "stop_threshold": int(module.get_stop_threshold())}

    def _set_hot_pixels(self, device: Any, pixels: list[tuple[int, int]]) -> list[list[int]]:
        """One digital-event-mask slot per hot pixel; the other slots are switched off."""
        mask = _facility(device, "get_i_digital_event_mask")
        if mask is None:
            if pixels:
                raise self._missing("digital event mask (I_DigitalEventMask)", "hot_pixels")
            return []
        slots = list(mask.get_pixel_masks())
        if len(pixels) > len(slots):
            raise DeviceError(f"{self.device_name}: {len(pixels)} hot pixels but the sensor's digital event "
                              f"mask has {len(slots)} slots")
        for x, y in pixels:
            if not (0 <= x < self.width and 0 <= y < self.height):
                raise DeviceError(f"{self.device_name}: hot pixel ({x}, {y}) outside the "
                                  f"{self.width}x{self.height} sensor")
        for i, slot in enumerate(slots):
            x, y, on = (*pixels[i], True) if i < len(pixels) else (0, 0, False)
            if self._call(f"pixel mask ({x}, {y})", slot.set_mask, int(x), int(y), on) is False:
                raise DeviceError(f"{self.device_name}: pixel mask ({x}, {y}) refused")
        return [[int(v) for v in slot.get_mask()[:2]] for slot in slots if slot.get_mask()[2]]

    def _set_trigger_in(self, device: Any, channel: int | None) -> int | None:
        trig = _facility(device, "get_i_trigger_in")
        self._trigger_channel_id = None
        if trig is None:
            if channel is not None:
                raise self._missing("trigger-in facility (I_TriggerIn)", "trigger_in_channel")
            return None
        channels = self._channels(trig)
        if channel is None:
            for enum_value in channels.values():
                trig.disable(enum_value)
            return None
        if int(channel) not in channels:
            raise DeviceError(f"{self.device_name}: no trigger-in channel {channel} (available ids: "
                              f"{sorted(channels)})")
        if trig.enable(channels[int(channel)]) is False:
            raise DeviceError(f"{self.device_name}: enabling trigger-in channel {channel} failed")
        self._trigger_channel_id = int(channel)
        return int(channel)

    def _channels(self, trig: Any) -> dict[int, Any]:
        """EXT_TRIGGER id -> I_TriggerIn.Channel value, from the camera where it says."""
        enum = self._hal_module.I_TriggerIn.Channel
        if hasattr(trig, "get_available_channels"):
            return {int(ch_id): ch for ch, ch_id in dict(trig.get_available_channels()).items()}
        return {ch_id: getattr(enum, name) for name, ch_id in CHANNEL_IDS.items() if hasattr(enum, name)}

    # -- recording -------------------------------------------------------------------------------
    def start_recording(self, raw_path: str | os.PathLike[str]) -> None:
        """Start the stream with HAL raw logging to `raw_path` and the pump thread."""
        self._require_stopped("start_recording()")
        device = self._device
        stream = _facility(device, "get_i_events_stream")
        if stream is None:
            raise DeviceError(f"{self.device_name}: no events stream facility")
        decoder = _facility(device, "get_i_events_stream_decoder")
        self._callback_ids = []
        trig_dec = _facility(device, "get_i_event_ext_trigger_decoder")
        if trig_dec is not None:
            self._callback_ids.append((trig_dec, trig_dec.add_event_buffer_callback(self._on_triggers)))
        cd_dec = _facility(device, "get_i_event_cd_decoder") if self.count_cd_events else None
        if cd_dec is not None:
            self._callback_ids.append((cd_dec, cd_dec.add_event_buffer_callback(self._on_cd)))
        path = Path(raw_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if stream.log_raw_data(str(path)) is False:
            raise DeviceError(f"{self.device_name}: the HAL refused to log raw data to {path}")
        self._reset_counters()
        self._history.append((time.monotonic(), 0))
        self._stream, self._decoder, self._raw_path = stream, decoder, path
        self._pump_error = None
        self._stop.clear()
        stream.start()
        self._pump = threading.Thread(target=self._run_pump, name="evk-raw-pump", daemon=True)
        self._pump.start()
        self._mark_running()

    def _on_cd(self, events: Any) -> None:
        with self._lock:
            self._events += len(events)

    def _on_triggers(self, events: Any) -> None:
        n = len(events)
        if n == 0:
            return
        rising = events["p"] == 1
        if self._trigger_channel_id is not None:
            rising &= events["id"] == self._trigger_channel_id
        with self._lock:
            self._trigger_edges += n
            self._triggers += int(rising.sum())

    def _pump_once(self) -> int:
        """Move one driver buffer through the logger (and the decoder); <0 at end of stream."""
        ret = self._stream.poll_buffer()
        if ret <= 0:
            return ret
        raw = self._stream.get_latest_raw_data()  # logged to events.raw by the HAL here
        n = raw_size(raw)
        if self._decoder is not None and n:
            self._decoder.decode(raw)
        with self._lock:
            self._bytes += n
            self._buffers += 1
        return ret

    def _run_pump(self) -> None:
        try:
            while not self._stop.is_set():
                ret = self._pump_once()
                if ret < 0:  # a live camera's stream ends only when asked to: it went away
                    if not self._stop.is_set():
                        self._pump_error = DeviceError(
                            f"{self.device_name}: the event stream ended by itself (camera "
                            "unplugged or its USB link reset?)")
                    break
                if ret == 0:
                    time.sleep(IDLE_SLEEP_S)
                self._sample_rate()
        except BaseException as exc:  # reported by stop_recording
            self._pump_error = exc

    def _sample_rate(self) -> None:
        now = time.monotonic()
        with self._lock:
            hist = self._history
            if not hist or now - hist[-1][0] >= 0.05:
                hist.append((now, self._events))
            while len(hist) > 2 and now - hist[1][0] > RATE_WINDOW_S:
                hist.popleft()

    def stop_recording(self) -> None:
        """Log and count what the driver already holds, then stop the stream and close events.raw.

        `I_EventsStream::stop()` ends the raw log and, on a live camera, releases the buffers not yet
        taken (OpenEB 4.6 and 5.x alike), so the drain comes first: what is counted is exactly what the
        file holds.
        """
        if self._pump is None:
            return
        self._stop.set()
        self._pump.join()
        self._pump = None
        self._mark_stopped()
        stream = self._stream
        try:
            deadline = time.monotonic() + DRAIN_LIMIT_S
            while self._pump_error is None and time.monotonic() < deadline:
                try:
                    if self._pump_once() <= 0:
                        break
                except Exception as exc:  # noqa: BLE001 - reported below like a pump failure
                    self._pump_error = exc
        finally:
            try:
                stream.stop()
            finally:
                stream.stop_log_raw_data()
                for facility, cb_id in self._callback_ids:
                    if hasattr(facility, "remove_callback"):
                        facility.remove_callback(cb_id)
                self._callback_ids = []
                self._stream = self._decoder = None
        if self._pump_error is not None:
            raise DeviceError(f"{self.device_name}: event stream failed: {hal_message(self._pump_error)}") \
                from self._pump_error

    def rates(self) -> EventRates:
        """Live counters; raises DeviceError once the stream failed mid-recording (camera
        unplugged, HAL error), so the recorder stops at its next look instead of at the end."""
        error = self._pump_error
        if error is not None and self._pump is not None:
            if isinstance(error, DeviceError):
                raise error
            raise DeviceError(f"{self.device_name}: event stream failed: {hal_message(error)}") \
                from error
        with self._lock:
            hist = list(self._history)
            events, triggers, nbytes = self._events, self._triggers, self._bytes
        rate = 0.0
        now = time.monotonic() if self._pump is not None else (hist[-1][0] if hist else 0.0)
        if hist and now > hist[0][0]:
            rate = (events - hist[0][1]) / (now - hist[0][0])
        return EventRates(events_total=events, event_rate_ev_s=rate, triggers_total=triggers,
                          bytes_written=nbytes)


def list_cameras() -> list[dict[str, str]]:
    """Serials (and plugin names where the HAL says) of every camera OpenEB sees, for `rig devices`."""
    hal = load_hal()
    discovery = hal.DeviceDiscovery
    if hasattr(discovery, "list_available_sources"):
        return [{"serial": str(d.serial), "plugin": str(getattr(d, "plugin_name", "")),
                 "integrator": str(getattr(d, "integrator_name", ""))}
                for d in discovery.list_available_sources()]
    return [{"serial": str(s)} for s in discovery.list()]
