"""The simulated trigger MCU: the firmware's line protocol (`firmware/PROTOCOL.md`) with time
driven by the simulator, and an in-process serial port to reach it.

`SimMCU` is a byte-for-byte twin of the firmware's interpreter (`firmware/src/proto.c`): the same
table (`rig.trigger.protocol`), the same framing rules and the same replies; both are checked
against `firmware/tests/vectors.txt`. Pulse times follow the firmware's Timer1 arithmetic in CPU
cycles, so a simulated pulse train has the period the real board would achieve.

`SimSerial` is a pyserial-like port onto a `SimMCU`, and `SimTrigger` is the real client
(`rig.trigger.SerialTrigger`) talking through it: the simulated rig runs the same client code as
the hardware. All entry points are thread-safe: the simulator thread calls `advance_to` while the
recorder calls `status`.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from rig.devices import DeviceInfo, PulseReport
from rig.trigger import SerialTrigger, parse_status
from rig.trigger import protocol as tp

__all__ = ["SimMCU", "SimSerial", "SimTrigger", "parse_status"]

PROTOCOL_NAME = tp.PROTOCOL_NAME
PROTOCOL_VERSION = tp.PROTOCOL_VERSION
_MAX_PENDING_LINES = 4096  # PULSE lines buffered for a reader before they count as dropped
_MAX_REPORTS = 100_000  # take_reports() backlog kept when nobody collects it (oldest dropped)


class _ProtocolError(Exception):
    def __init__(self, code: int, key: str | None = None) -> None:
        super().__init__(code)
        self.line = tp.err_line(code, key)


def _parse_u32(text: str) -> int | None:
    """Decimal digits only, 1..10 of them, at most 2^32-1 (as `parse_u32` in proto.c)."""
    if not 1 <= len(text) <= 10 or not all("0" <= c <= "9" for c in text):
        return None
    value = int(text)
    return value if value <= tp.UINT32_MAX else None


class SimMCU:
    """Pulse generator and protocol interpreter of the trigger firmware, in simulated time (us)."""

    def __init__(self, name: str = PROTOCOL_NAME, board: str = "sim") -> None:
        self.name = name
        self.board = board
        self.now_us = 0  # simulator time (us); the MCU's own clock counts from _boot_us
        self._boot_us = 0
        self.state = "idle"
        self.pulses_emitted = 0
        self.config: dict[str, int | str] = dict(tp.DEFAULTS)
        plan = tp.plan_timer(int(self.config["rate_mhz"]), int(self.config["width_us"]))
        assert isinstance(plan, tp.TimerPlan)
        self.plan: tp.TimerPlan = plan
        self._run_plan = plan
        self._run_count = 0
        self._run_report = False
        self._start_cyc = 0  # cycle time of pulse 0's rising edge
        self._reports: deque[PulseReport] = deque(maxlen=_MAX_REPORTS)
        self._lines: list[str] = []  # asynchronous PULSE lines for a serial reader
        self._flags = 0
        self._line = bytearray()
        self._too_long = False
        self._bad_char = False
        self._lock = threading.RLock()

    # ---- the simulator's side

    def banner(self) -> str:
        return tp.banner(self.name)

    def reboot(self) -> None:
        """The MCU restarts (reset button, brown-out): defaults back, its clock from 0, the
        banner sent; simulator time goes on."""
        with self._lock:
            self._boot_us = self.now_us
            self.state = "idle"
            self.pulses_emitted = 0
            self.config = dict(tp.DEFAULTS)
            plan = tp.plan_timer(int(self.config["rate_mhz"]), int(self.config["width_us"]))
            assert isinstance(plan, tp.TimerPlan)
            self.plan = self._run_plan = plan
            self._flags = 0
            self._line, self._too_long, self._bad_char = bytearray(), False, False
            self._lines = [self.banner()]

    def _mcu_us(self, sim_us: int) -> int:
        """What the firmware's 32-bit clock shows at simulator time `sim_us`."""
        return (sim_us - self._boot_us) & tp.UINT32_MAX

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def rate_mhz(self) -> int:
        return int(self.config["rate_mhz"])

    @property
    def width_us(self) -> int:
        return int(self.config["width_us"])

    @property
    def count(self) -> int:
        return int(self.config["count"])

    @property
    def period_us(self) -> float:
        """The achieved period (what the firmware's timer really produces)."""
        return self._run_plan.period_us if self.running else self.plan.period_us

    def _rise_cyc(self, index: int) -> int:
        return self._start_cyc + index * self._run_plan.period_cyc

    def next_rise_us(self) -> int | None:
        """When the next pulse rises (None when not running)."""
        with self._lock:
            if not self.running:
                return None
            return self._rise_cyc(self.pulses_emitted) // tp.CYCLES_PER_US

    def advance_to(self, t_us: int) -> list[tuple[int, int, int]]:
        """Move MCU time on to `t_us`; returns (index, rise_us, fall_us) of the pulses that rose
        before `t_us` (times unwrapped, microseconds since the MCU booted)."""
        out: list[tuple[int, int, int]] = []
        with self._lock:
            while self.running:
                rise_cyc = self._rise_cyc(self.pulses_emitted)
                rise_us = rise_cyc // tp.CYCLES_PER_US
                if rise_us >= t_us:
                    break
                index = self.pulses_emitted
                fall_us = (rise_cyc + self._run_plan.width_cyc) // tp.CYCLES_PER_US
                out.append((index, rise_us, fall_us))
                self._emit(index, rise_us)
                self.pulses_emitted += 1
                if self._run_count and self.pulses_emitted >= self._run_count:
                    self.state = "done"
            self.now_us = max(self.now_us, int(t_us))
        return out

    def _emit(self, index: int, rise_us: int) -> None:
        self._reports.append(PulseReport(index, rise_us))
        if self._run_report:
            if len(self._lines) < _MAX_PENDING_LINES:
                self._lines.append(f"PULSE {index} {self._mcu_us(rise_us)}")
            else:
                self._flags |= tp.FLAG_REPORT_OVERFLOW

    def take_reports(self) -> list[PulseReport]:
        """Every pulse since the last call (whether or not `report=1` sends PULSE lines)."""
        with self._lock:
            reports = list(self._reports)
            self._reports.clear()
            return reports

    def take_lines(self) -> list[str]:
        """Asynchronous lines (PULSE reports) waiting for the serial reader."""
        with self._lock:
            lines, self._lines = self._lines, []
            return lines

    # ---- the serial side

    def feed(self, data: bytes) -> list[str]:
        """Received bytes in, reply lines out (framing exactly as `proto_feed` in proto.c)."""
        replies: list[str] = []
        with self._lock:
            for byte in data:
                if byte == 0x0D:
                    continue
                if byte != 0x0A:
                    if len(self._line) >= tp.MAX_LINE:
                        self._too_long = True
                    elif byte == 0x09:
                        self._line.append(0x20)
                    elif byte < 0x20 or byte > 0x7E:
                        self._bad_char = True
                        self._line.append(0x3F)
                    else:
                        self._line.append(byte)
                    continue
                line = self._line.decode("ascii")
                too_long, bad_char = self._too_long, self._bad_char
                self._line, self._too_long, self._bad_char = bytearray(), False, False
                if too_long:
                    replies.append(tp.err_line(tp.ERR_LINE_TOO_LONG))
                elif bad_char:
                    replies.append(tp.err_line(tp.ERR_BAD_CHARACTER))
                else:
                    reply = self._execute(line)
                    if reply:
                        replies.append(reply)
        return replies

    def handle_line(self, line: str) -> list[str]:
        """One request line in (without its LF), reply lines out."""
        return self.feed(line.encode("utf-8", "replace") + b"\n")

    def status_line(self) -> str:
        with self._lock:
            return self._status()

    # ---- the interpreter (mirrors execute() in proto.c)

    def _execute(self, line: str) -> str:
        words = line.split(" ")
        words = [w for w in words if w]
        if not words:
            return ""
        cmd = words[0].upper()
        try:
            if cmd == "CONFIG":
                return self._config(words[1:])
            if cmd not in ("PING", "VERSION", "STATUS", "START", "STOP", "CLEAR"):
                raise _ProtocolError(tp.ERR_UNKNOWN_COMMAND)
            if len(words) > 1:
                raise _ProtocolError(tp.ERR_BAD_ARGUMENT)
            if cmd == "PING":
                return "PONG"
            if cmd == "VERSION":
                return (f"VERSION {tp.PROTOCOL_NAME} {tp.PROTOCOL_VERSION} "
                        f"fw={tp.FIRMWARE_VERSION} board={self.board} f_cpu_hz={tp.F_CPU_HZ}")
            if cmd == "STATUS":
                return self._status()
            if cmd == "START":
                return self._start()
            if cmd == "STOP":
                self.state = "idle"
                return f"OK STOP pulses={self.pulses_emitted}"
            flags, self._flags = self._flags, 0
            return f"OK CLEAR err=0x{flags:02X}"
        except _ProtocolError as exc:
            return exc.line

    def _config_words(self) -> str:
        c = self.config
        return (f"rate_mhz={c['rate_mhz']} width_us={c['width_us']} count={c['count']} "
                f"polarity={c['polarity']} report={c['report']}")

    def _config_reply(self) -> str:
        p = self.plan
        return (f"OK CONFIG {self._config_words()} period_cyc={p.period_cyc} "
                f"width_cyc={p.width_cyc} achieved_rate_mhz={p.achieved_rate_mhz} "
                f"achieved_width_us={p.achieved_width_us}")

    def _config(self, args: list[str]) -> str:
        if not args:
            return self._config_reply()
        if self.running:
            raise _ProtocolError(tp.ERR_BUSY)
        new = dict(self.config)
        seen: set[str] = set()
        for word in args:
            key, eq, value = word.partition("=")
            if not eq or not key:
                raise _ProtocolError(tp.ERR_BAD_ARGUMENT)
            name = key.lower()
            if name not in tp.CONFIG_KEYS:
                raise _ProtocolError(tp.ERR_UNKNOWN_KEY, key)
            if name in seen:
                raise _ProtocolError(tp.ERR_DUPLICATE_KEY, key)
            seen.add(name)
            if name == "polarity":
                if value.lower() not in tp.POLARITIES:
                    raise _ProtocolError(tp.ERR_BAD_VALUE, key)
                new[name] = value.lower()
                continue
            number = _parse_u32(value)
            if number is None:
                raise _ProtocolError(tp.ERR_BAD_VALUE, key)
            lo, hi = tp.LIMITS[name]
            if not lo <= number <= hi:
                raise _ProtocolError(tp.ERR_OUT_OF_RANGE, key)
            new[name] = number
        plan = tp.plan_timer(int(new["rate_mhz"]), int(new["width_us"]))
        if isinstance(plan, int):
            raise _ProtocolError(plan)
        self.config, self.plan = new, plan
        return self._config_reply()

    def _status(self) -> str:
        return (f"STATUS state={self.state} pulses={self.pulses_emitted} "
                f"t_us={self._mcu_us(self.now_us)} {self._config_words()} "
                f"err=0x{self._flags:02X}")

    def _start(self) -> str:
        if self.running:
            raise _ProtocolError(tp.ERR_BUSY)
        self._flags = 0
        self._run_plan = self.plan
        self._run_count = int(self.config["count"])
        self._run_report = bool(self.config["report"])
        # As pulse_start() in pulse.c: the counter restarts two ticks before TOP.
        self._start_cyc = self.now_us * tp.CYCLES_PER_US + 2 * self.plan.prescaler
        self.pulses_emitted = 0
        self.state = "running"
        self._lines.clear()
        return f"OK START t_us={self._mcu_us(self._start_cyc // tp.CYCLES_PER_US)}"


class SimSerial:
    """A pyserial-like port wired to a `SimMCU` (what `SerialTrigger` reads and writes).

    `realtime=True` runs MCU time on the host's monotonic clock (for `rig trigger --port sim`);
    otherwise the simulator moves it with `SimMCU.advance_to`. The boot banner is sent once, as
    the firmware does when it starts.
    """

    def __init__(self, mcu: SimMCU | None = None, *, realtime: bool = False,
                 timeout: float | None = 0.05) -> None:
        self.mcu = mcu or SimMCU()
        self.realtime = realtime
        self.timeout = timeout
        self.port = "sim"
        self.is_open = True
        self._out = bytearray()
        self._lock = threading.Lock()
        self._t0_host = time.monotonic()
        self._t0_mcu_us = self.mcu.now_us
        self._out += (self.mcu.banner() + "\r\n").encode()

    def _tick(self) -> None:
        if self.realtime:
            elapsed_us = int((time.monotonic() - self._t0_host) * 1e6)
            self.mcu.advance_to(self._t0_mcu_us + elapsed_us)
        for line in self.mcu.take_lines():
            self._out += (line + "\r\n").encode()

    def _check_open(self) -> None:
        if not self.is_open:
            import serial

            raise serial.SerialException("simulated port is closed")

    def write(self, data: bytes) -> int:
        self._check_open()
        with self._lock:
            self._tick()
            for reply in self.mcu.feed(bytes(data)):
                self._out += (reply + "\r\n").encode()
        return len(data)

    @property
    def in_waiting(self) -> int:
        with self._lock:
            self._tick()
            return len(self._out)

    def read(self, size: int = 1) -> bytes:
        self._check_open()
        deadline = time.monotonic() + (self.timeout or 0.0)
        while True:
            with self._lock:
                self._tick()
                if self._out:
                    data = bytes(self._out[:size])
                    del self._out[:size]
                    return data
            if self.timeout is not None and time.monotonic() >= deadline:
                return b""
            time.sleep(0.001)

    def reset_input_buffer(self) -> None:
        with self._lock:
            self._out.clear()

    def reset_output_buffer(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def __repr__(self) -> str:
        return f"SimSerial(realtime={self.realtime})"


class SimTrigger(SerialTrigger):
    """`TriggerController` of the simulated rig: the real serial client on a `SimSerial`."""

    def __init__(self, mcu: SimMCU | None = None, *, realtime: bool = False,
                 timeout_s: float = 2.0) -> None:
        self.mcu = mcu or SimMCU()
        super().__init__(SimSerial(self.mcu, realtime=realtime), timeout_s=timeout_s,
                         boot_wait_s=0.0)

    def info(self) -> DeviceInfo:
        base = super().info()
        return DeviceInfo("trigger", "sim", base.model, "SIM-MCU-0001", base.firmware,
                          dict(base.extra))

