"""Prophesee EVK4 through OpenEB's HAL Python bindings (`metavision_hal`), behind `EventCamera`.

The HAL writes `events.raw` itself (`I_EventsStream.log_raw_data`): a pump thread only moves the
driver's buffers along (`poll_buffer` / `get_latest_raw_data`) and hands them to the HAL decoder,
whose C++ callbacks give per-buffer event counts and the EXT_TRIGGER edges. No event byte is
parsed or copied by Python. `metavision_hal` is imported when the backend is created, so the
toolkit runs without OpenEB and a missing SDK is one `BackendUnavailable` line.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path
from typing import Any

from rig.backends._genicam import import_sdk
from rig.devices import DeviceError, DeviceInfo, EventCameraLifecycle, EventCameraSettings, EventRates

INSTALL_HINT = ("build OpenEB from source with Python bindings (-DCOMPILE_PYTHON3_BINDINGS=ON) and put "
                "its lib/python3/site-packages on PYTHONPATH, see docs/hardware.md")
#: EXT_TRIGGER channel ids of Gen4.1 / IMX636 EVKs, by OpenEB's I_TriggerIn.Channel names.
CHANNEL_IDS = {"MAIN": 0, "AUX": 1, "LOOPBACK": 6}
#: How long the pump sleeps when the driver has no buffer ready (keeps a core free).
IDLE_SLEEP_S = 0.001
#: Window of the live event-rate estimate.
RATE_WINDOW_S = 1.0


def load_hal() -> Any:
    return import_sdk("metavision_hal", "the metavision event-camera backend", INSTALL_HINT)


def _facility(device: Any, *getters: str) -> Any:
    """The first facility the device offers among `getters` (names changed across OpenEB versions)."""
    for name in getters:
        fn = getattr(device, name, None)
        if fn is not None:
            facility = fn()
            if facility is not None:
                return facility
    return None


class MetavisionEventCamera(EventCameraLifecycle):
    """An EVK4 (or any OpenEB-supported camera) recording its native raw stream to a file.

    `serial`: the camera's serial (None or "": the first camera). `count_cd_events`: let the HAL
    decode CD events so the live rate counts them (C++ work plus one Python call per buffer); off,
    only bytes and trigger edges are counted and the event rate reads 0.
    """

    backend = "metavision"

    def __init__(self, serial: str | None = None, *, count_cd_events: bool = True, **_ignored: Any) -> None:
        self._hal = load_hal()
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
            device = self._hal.DeviceDiscovery.open(self.serial)
        except Exception as exc:  # noqa: BLE001 - HalException and friends
            raise DeviceError(f"cannot open Prophesee camera {self.serial or '(first)'}: {exc}") from exc
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
                                 "system_info": self._system_info,
                                 "geometry": [self.width, self.height],
                                 "counts": {"events": rates.events_total, "triggers": rates.triggers_total,
                                            "trigger_edges": self._trigger_edges,
                                            "bytes": rates.bytes_written, "buffers": self._buffers}})

    # -- configuration ---------------------------------------------------------------------------
    def configure(self, settings: EventCameraSettings) -> None:
        self._require_stopped("configure()")
        device = self._device
        self._applied = {"biases": self._set_biases(device, settings.biases),
                         "roi": self._set_roi(device, settings.roi),
                         "erc_rate_ev_s": self._set_erc(device, settings.erc_rate_ev_s),
                         "trigger_in_channel": self._set_trigger_in(device, settings.trigger_in_channel)}
        self._mark_configured()

    def _set_biases(self, device: Any, biases: dict[str, int]) -> dict[str, int]:
        ll = _facility(device, "get_i_ll_biases")
        if ll is None:
            if biases:
                raise DeviceError(f"{self.device_name}: this camera has no bias facility")
            return {}
        known = dict(ll.get_all_biases())
        for name, value in biases.items():
            if name not in known:
                raise DeviceError(f"{self.device_name}: unknown bias {name!r} (this sensor has: "
                                  f"{', '.join(sorted(known))})")
            try:
                ok = ll.set(name, int(value))
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"{self.device_name}: bias {name} = {value} refused: {exc}") from exc
            if ok is False:
                raise DeviceError(f"{self.device_name}: bias {name} = {value} refused (out of range?)")
        return {name: int(ll.get(name)) for name in sorted(known)}

    def _set_roi(self, device: Any, roi: tuple[int, int, int, int] | None) -> list[int] | None:
        facility = _facility(device, "get_i_roi")
        if facility is None:
            if roi is not None:
                raise DeviceError(f"{self.device_name}: this camera has no ROI facility")
            return None
        if roi is None:
            facility.enable(False)
            return None
        x, y, w, h = (int(v) for v in roi)
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > self.width or y + h > self.height:
            raise DeviceError(f"{self.device_name}: ROI {roi} outside the {self.width}x{self.height} sensor")
        window_cls = getattr(getattr(self._hal, "I_ROI", None), "Window", None)
        window = window_cls(x, y, w, h) if window_cls is not None else self._hal.DeviceRoi(x, y, w, h)
        facility.set_window(window)
        facility.enable(True)
        return [x, y, w, h]

    def _set_erc(self, device: Any, rate_ev_s: float | None) -> float | None:
        erc = _facility(device, "get_i_erc_module", "get_i_erc")
        if erc is None:
            if rate_ev_s is not None:
                raise DeviceError(f"{self.device_name}: this camera has no event-rate controller")
            return None
        if rate_ev_s is None:
            erc.enable(False)
            return None
        erc.set_cd_event_rate(int(rate_ev_s))
        erc.enable(True)
        return float(erc.get_cd_event_rate())

    def _set_trigger_in(self, device: Any, channel: int | None) -> int | None:
        trig = _facility(device, "get_i_trigger_in")
        self._trigger_channel_id = None
        if trig is None:
            if channel is not None:
                raise DeviceError(f"{self.device_name}: this camera has no trigger-in facility")
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
        enum = self._hal.I_TriggerIn.Channel
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
        decoder = _facility(device, "get_i_events_stream_decoder", "get_i_decoder")
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
        n = len(raw)
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
                if ret < 0:
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
        """Stop the stream, log what the driver still holds, close events.raw."""
        if self._pump is None:
            return
        self._stop.set()
        self._pump.join()
        self._pump = None
        self._mark_stopped()
        stream = self._stream
        try:
            stream.stop()
            while self._pump_error is None and self._pump_once() > 0:  # drain
                pass
        finally:
            stream.stop_log_raw_data()
            for facility, cb_id in self._callback_ids:
                if hasattr(facility, "remove_callback"):
                    facility.remove_callback(cb_id)
            self._callback_ids = []
            self._stream = self._decoder = None
        if self._pump_error is not None:
            raise DeviceError(f"{self.device_name}: event stream failed: {self._pump_error}") \
                from self._pump_error

    def rates(self) -> EventRates:
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
