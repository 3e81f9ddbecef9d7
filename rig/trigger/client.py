"""Host client of the trigger firmware (`firmware/PROTOCOL.md`): the `serial` TriggerController.

`SerialTrigger` opens a serial device (`/dev/ttyACM0`, `COM3`), a pyserial URL (`socket://host:port`
for the firmware running in QEMU, `loop://`) or any pyserial-like object, waits for the boot banner
(opening an Uno's port resets it), checks the protocol version, and then speaks strict
request/response. It never blocks longer than its timeouts, resynchronises after garbage, and
turns every failure into a `TriggerError` (a `DeviceError`) whose message names the port and what
happened: no reply, the MCU restarted, the port vanished, a refused command.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rig.devices import (
    DeviceError,
    DeviceInfo,
    DeviceLifecycle,
    PulseReport,
    TriggerSettings,
    TriggerStatus,
)
from rig.trigger import protocol as tp

_POLL_S = 0.02  # read granularity: the port's read timeout
_MAX_PARTIAL = 512  # bytes without a newline before the partial line is thrown away
_URL_PREFIXES = ("socket://", "loop://", "rfc2217://", "spy://", "alt://", "hwgrep://", "cp2110://")


class TriggerError(DeviceError):
    """The trigger MCU failed; the message names the port."""


class TriggerTimeout(TriggerError):
    """No (complete) reply arrived in time."""


class TriggerReset(TriggerError):
    """The MCU restarted (its boot banner arrived mid-session): pulses stopped, defaults restored."""


class TriggerDisconnected(TriggerError):
    """The serial port or socket went away."""


class TriggerProtocolError(TriggerError):
    """The other end does not speak a compatible version of the protocol."""


class TriggerRefused(TriggerError):
    """The firmware answered `ERR <code> <message>`."""

    def __init__(self, port: str, request: str, code: int, message: str) -> None:
        super().__init__(f"trigger on {port} refused {request!r}: ERR {code} {message}")
        self.request = request
        self.code = code
        self.message = message


def parse_status(line: str, mcu_time_us: int | None = None) -> TriggerStatus:
    """A `STATUS ...` reply as `TriggerStatus` (raises ValueError when a field is missing)."""
    words = line.split()
    if not words or words[0] != "STATUS":
        raise ValueError(f"not a STATUS line: {line!r}")
    kv = tp.parse_kv(words[1:])
    try:
        return TriggerStatus(
            state=kv["state"],
            pulses_emitted=int(kv["pulses"]),
            mcu_time_us=int(kv["t_us"]) if mcu_time_us is None else mcu_time_us,
            rate_mhz=int(kv["rate_mhz"]),
            width_us=int(kv["width_us"]),
            count=int(kv["count"]),
            error_flags=int(kv.get("err", "0"), 0),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"malformed STATUS line {line!r}: {exc}") from None


def describe_flags(flags: int) -> str:
    """`err=` bits by name, e.g. 'rx_overflow|report_overflow' ('' when none)."""
    return "|".join(name for bit, name in tp.FLAGS.items() if flags & bit)


def _is_url(port: str) -> bool:
    return port.startswith(_URL_PREFIXES)


class _Clock32:
    """Unwraps the MCU's 32-bit microsecond clock; a backward jump means the MCU restarted."""

    def __init__(self) -> None:
        self.last_raw: int | None = None
        self.high = 0

    def reset(self) -> None:
        self.last_raw, self.high = None, 0

    def unwrap(self, raw: int) -> int | None:
        """The unwrapped time, or None when time went backwards (not a wrap-around)."""
        if self.last_raw is not None and raw < self.last_raw:
            if self.last_raw - raw > (1 << 31):
                self.high += 1 << 32
            else:
                return None
        self.last_raw = raw
        return self.high + raw

    def unwrap_near(self, raw: int) -> int:
        """Unwrap a pulse time, which may lie a little before the last status time."""
        if self.last_raw is None:
            return raw
        value = self.high + raw
        reference = self.high + self.last_raw
        if value - reference > (1 << 31):
            value -= 1 << 32
        elif reference - value > (1 << 31):
            value += 1 << 32
        return value


class SerialTrigger(DeviceLifecycle):
    """`TriggerController` for the trigger firmware over a serial line (or its simulation).

    `port` is a device path, a pyserial URL or an already-open pyserial-like object (with `read`,
    `write`, `timeout`). `timeout_s` bounds each request; `boot_wait_s` is how long `open()` waits
    for the boot banner (None: 2.5 s for a device, which an Uno needs to pass its bootloader after
    the reset that opening the port causes, 0.3 s for URLs and objects).

    Every request needs `open()` first (`DeviceLifecycle`). Whether the pulse train runs is the
    MCU's state, not ours (a counted train ends by itself, a reset stops it), so configure and
    start while it runs are left to the firmware, which answers `ERR busy` (`TriggerRefused`).
    """

    error_type = TriggerError

    def __init__(self, port: Any, *, timeout_s: float = 1.0, boot_wait_s: float | None = None,
                 report_pulses: bool = True, baudrate: int = tp.BAUD) -> None:
        self._port_arg = port
        self.port_name = port if isinstance(port, str) else getattr(port, "port", None) or repr(port)
        self.timeout_s = float(timeout_s)
        if boot_wait_s is None:
            boot_wait_s = 2.5 if isinstance(port, str) and not _is_url(port) else 0.3
        self.boot_wait_s = float(boot_wait_s)
        self.report_pulses = report_pulses
        self.baudrate = baudrate
        self._ser: Any = None if isinstance(port, str) else port
        self._buf = bytearray()
        self._pulses: list[PulseReport] = []
        self._lock = threading.RLock()
        self._clock = _Clock32()
        self._reset_seen: str | None = None
        self._needs_resync = False
        self.version: dict[str, str] = {}
        self.banner: str | None = None
        self.last_config: dict[str, str] = {}
        self.start_t_us: int | None = None
        self.resets_seen = 0
        self.garbage_lines = 0
        self.stale_lines = 0

    # ---- context manager

    def __enter__(self) -> SerialTrigger:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def device_name(self) -> str:
        return f"trigger on {self.port_name}"

    # ---- TriggerController

    def open(self) -> None:
        """Open the port, wait for the banner, resynchronise, check the protocol version."""
        with self._lock:
            if self._ser is None:
                self._ser = self._open_port()
            elif getattr(self._ser, "is_open", True) is False and hasattr(self._ser, "open"):
                try:
                    self._ser.open()
                except Exception as exc:  # noqa: BLE001 - pyserial raises several types
                    raise TriggerDisconnected(
                        f"cannot reopen trigger port {self.port_name}: {exc}") from None
            try:
                self._ser.timeout = _POLL_S
            except (AttributeError, ValueError):
                pass
            self._buf.clear()
            self._pulses.clear()
            self._clock.reset()
            self._reset_seen = None
            self.banner = None
            resets_before = self.resets_seen
            deadline = time.monotonic() + self.boot_wait_s
            while self.banner is None:
                line = self._readline(deadline)
                if line is None:
                    break
                self._classify(line)
            self._reset_seen = None  # a banner now is the expected one
            self._resync()
            self._reset_seen = None  # the banner of the boot we waited for is no reset
            self.resets_seen = resets_before
            self._check_version(self._request("VERSION", "VERSION"))
            self._mark_open(fresh=True)  # a new handshake: configure and start again

    def close(self) -> None:
        with self._lock:
            if self._ser is not None:
                try:
                    self._ser.close()
                except Exception:  # noqa: BLE001 - closing a dead port must not raise
                    pass
                if isinstance(self._port_arg, str):
                    self._ser = None
            self._mark_closed()

    def info(self) -> DeviceInfo:
        v = self.version
        return DeviceInfo(
            kind="trigger",
            backend="serial",
            model=f"{v.get('name', tp.PROTOCOL_NAME)} ({v.get('board', '?')})",
            serial=str(self.port_name),
            firmware=v.get("fw", ""),
            extra={"protocol": v.get("protocol", ""), "f_cpu_hz": v.get("f_cpu_hz", ""),
                   "board": v.get("board", ""), "banner": self.banner or ""},
        )

    def configure(self, settings: TriggerSettings) -> TriggerStatus:
        """Send CONFIG; the reply's achieved period/width land in `last_config`."""
        self._require_open()
        if settings.polarity not in tp.POLARITIES:
            raise TriggerError(f"trigger on {self.port_name}: polarity must be one of "
                               f"{tp.POLARITIES}, not {settings.polarity!r}")
        request = (f"CONFIG rate_mhz={settings.rate_mhz} width_us={int(settings.width_us)} "
                   f"count={settings.count or 0} polarity={settings.polarity} "
                   f"report={int(self.report_pulses)}")
        reply = self._request(request, "OK CONFIG")
        self.last_config = tp.parse_kv(reply.split()[2:])
        self._mark_configured()  # the firmware takes CONFIG only while no train runs
        return self.status()

    def start(self) -> None:
        self._require_open()
        reply = self._request("START", "OK START")
        raw = int(tp.parse_kv(reply.split()[2:]).get("t_us", "0"))
        with self._lock:
            self._pulses.clear()
            self.start_t_us = self._clock.unwrap_near(raw)
        self._mark_running()

    def stop(self) -> None:
        self._require_open()
        self._request("STOP", "OK STOP")
        self._mark_stopped()

    def status(self) -> TriggerStatus:
        self._require_open()
        with self._lock:
            line = self._request("STATUS", "STATUS")
            try:
                raw = parse_status(line)
            except ValueError as exc:
                raise TriggerProtocolError(f"trigger on {self.port_name}: {exc}") from None
            t_us = self._clock.unwrap(raw.mcu_time_us)
            if t_us is None:
                self._clock.reset()
                self._clock.unwrap(raw.mcu_time_us)
                self._note_reset(f"its clock went back to {raw.mcu_time_us} us")
                self._raise_reset("STATUS")
            return parse_status(line, mcu_time_us=t_us)

    def read_pulses(self, timeout_s: float = 0.0) -> list[PulseReport]:
        """Pulse reports received so far; waits up to `timeout_s` for the first one."""
        self._require_open()
        with self._lock:
            deadline = time.monotonic() + max(0.0, timeout_s)
            try:
                self._pump(0.0)
                while not self._pulses and time.monotonic() < deadline:
                    self._pump(min(_POLL_S, deadline - time.monotonic()))
            except TriggerError:
                if not self._pulses:
                    raise
                # the link went away: the reports that made it first are handed over, the next
                # call raises
            pulses, self._pulses = self._pulses, []
            if self._reset_seen is not None and not pulses:
                self._raise_reset("read_pulses")
            return pulses

    # ---- extras used by the CLI and tests

    def ping(self) -> float:
        """Round-trip time of PING in seconds."""
        self._require_open()
        t0 = time.perf_counter()
        self._request("PING", "PONG")
        return time.perf_counter() - t0

    def clear_errors(self) -> int:
        self._require_open()
        reply = self._request("CLEAR", "OK CLEAR")
        return int(tp.parse_kv(reply.split()[2:]).get("err", "0"), 0)

    def request(self, line: str) -> str:
        """Send one raw request line; returns the reply line (an `ERR` raises TriggerRefused)."""
        self._require_open()
        return self._request(line, "")

    # ---- internals

    def _open_port(self) -> Any:
        try:
            import serial
        except ImportError:
            raise TriggerError("the serial trigger needs pyserial: pip install pyserial") from None
        try:
            ser = serial.serial_for_url(self._port_arg, do_not_open=True, baudrate=self.baudrate,
                                        timeout=_POLL_S, write_timeout=self.timeout_s)
            ser.open()
            return ser
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TriggerDisconnected(f"cannot open trigger port {self._port_arg}: {exc}") from None

    def _io_error(self, exc: BaseException) -> TriggerDisconnected:
        return TriggerDisconnected(
            f"trigger on {self.port_name} disconnected ({exc.__class__.__name__}: {exc}); "
            "check the USB cable / that the emulator is still running, then open it again")

    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise TriggerError(f"{self.device_name} is not open (call open() first)")
        try:
            self._ser.write(data)
            flush = getattr(self._ser, "flush", None)
            if flush is not None:
                flush()
        except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException, OSError, ...
            raise self._io_error(exc) from None

    def _read_some(self) -> bytes:
        if self._ser is None:
            raise TriggerError(f"{self.device_name} is not open (call open() first)")
        try:
            waiting = getattr(self._ser, "in_waiting", 0) or 0
            return self._ser.read(max(1, min(int(waiting), 4096))) or b""
        except Exception as exc:  # noqa: BLE001
            raise self._io_error(exc) from None

    def _readline(self, deadline: float) -> str | None:
        """The next complete line (without line ending), or None once `deadline` has passed."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buf[:nl]).rstrip(b"\r")
                del self._buf[: nl + 1]
                try:
                    line = raw.decode("ascii")
                except UnicodeDecodeError:
                    self.garbage_lines += 1
                    continue
                if line and not line.isprintable():
                    self.garbage_lines += 1
                    continue
                return line
            if len(self._buf) > _MAX_PARTIAL:
                self._buf.clear()
                self.garbage_lines += 1
            if time.monotonic() >= deadline:
                return None
            self._buf += self._read_some()

    def _note_reset(self, why: str) -> None:
        """The MCU restarted. Pulse reports that arrived before it stay queued: those pulses were
        sent (`read_pulses` hands them over before it raises TriggerReset); a new START or a new
        `open()` clears them."""
        self.resets_seen += 1
        self._reset_seen = why
        self._clock.reset()

    def _raise_reset(self, request: str) -> None:
        why, self._reset_seen = self._reset_seen, None
        raise TriggerReset(
            f"trigger MCU on {self.port_name} restarted ({why}) before the reply to {request!r}: "
            "the pulse train stopped and the configuration is back to defaults; configure and "
            "start it again")

    def _classify(self, line: str) -> str | None:
        """Handle asynchronous lines; returns the line when it may be a reply."""
        if line.startswith("PULSE "):
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                self._pulses.append(PulseReport(int(parts[1]),
                                                self._clock.unwrap_near(int(parts[2]))))
            else:
                self.garbage_lines += 1
            return None
        if line.startswith("READY "):
            self.banner = line
            self._note_reset(f"boot banner {line!r}")
            return None
        return line

    def _pump(self, wait_s: float) -> None:
        """Handle whatever has arrived (asynchronous lines) for up to `wait_s`."""
        deadline = time.monotonic() + wait_s
        while True:
            line = self._readline(deadline)
            if line is None:
                return
            if self._classify(line) is not None:
                self.stale_lines += 1

    def _resync(self) -> None:
        """End whatever half line the MCU holds, then skip everything up to a fresh PONG."""
        nl = self._buf.rfind(b"\n")
        if nl + 1 < len(self._buf):  # a truncated line from before the trouble: drop it
            del self._buf[nl + 1 :]
            self.garbage_lines += 1
        self._write(b"\nPING\n")
        deadline = time.monotonic() + self.timeout_s
        while True:
            line = self._readline(deadline)
            if line is None:
                raise TriggerTimeout(
                    f"no reply to PING from the trigger on {self.port_name} within "
                    f"{self.timeout_s:g} s: is the trigger firmware running there (flashed, "
                    "right port, 115200 baud)?")
            if line == "PING":
                raise TriggerProtocolError(
                    f"the port {self.port_name} echoes what is sent (a loopback?), it is not the "
                    "trigger firmware")
            if self._classify(line) == "PONG":
                self._needs_resync = False
                return

    def _request(self, request: str, expect: str) -> str:
        with self._lock:
            if self._needs_resync:
                self._resync()
            self._pump(0.0)
            if self._reset_seen is not None:
                self._raise_reset(request)
            self._write(request.encode("ascii") + b"\n")
            deadline = time.monotonic() + self.timeout_s
            while True:
                line = self._readline(deadline)
                if line is None:
                    self._needs_resync = True
                    raise TriggerTimeout(
                        f"no reply to {request!r} from the trigger on {self.port_name} within "
                        f"{self.timeout_s:g} s")
                reply = self._classify(line)
                if self._reset_seen is not None:
                    self._raise_reset(request)
                if reply is None:
                    continue
                if reply.startswith("ERR "):
                    code_text, _, message = reply[4:].partition(" ")
                    code = int(code_text) if code_text.isdigit() else -1
                    raise TriggerRefused(str(self.port_name), request, code, message)
                if reply == request:
                    raise TriggerProtocolError(
                        f"the port {self.port_name} echoes what is sent (a loopback?), it is not "
                        "the trigger firmware")
                if reply.startswith(expect):
                    return reply
                self.stale_lines += 1

    def _check_version(self, line: str) -> None:
        words = line.split()
        if len(words) < 3 or words[1] != tp.PROTOCOL_NAME:
            raise TriggerProtocolError(
                f"device on {self.port_name} is not the {tp.PROTOCOL_NAME} firmware: {line!r}")
        major = words[2].split(".")[0]
        if major != tp.PROTOCOL_VERSION.split(".")[0]:
            raise TriggerProtocolError(
                f"trigger on {self.port_name} speaks protocol {words[2]}, this client speaks "
                f"{tp.PROTOCOL_VERSION}: flash the firmware from firmware/ (make flash)")
        self.version = {"name": words[1], "protocol": words[2], **tp.parse_kv(words[3:])}
