"""The simulated trigger MCU: the firmware's line protocol, with time driven by the simulator.

STUB written for the foundation; the firmware work replaces the protocol handling so that it
matches `firmware/PROTOCOL.md` exactly, keeping this Python API (the simulated rig uses it):

- `SimMCU.handle_line(line) -> list[str]`: one request line in, reply lines out;
- `SimMCU.advance_to(t_us) -> list[(index, rise_us, fall_us)]`: the simulator moves MCU time on
  and receives the pulses whose rising edge falls before `t_us`;
- `SimMCU.next_rise_us() -> int | None`: when the next pulse rises (None when not running);
- `SimTrigger`: the `TriggerController` the recorder uses on the simulated rig.
"""

from __future__ import annotations

import threading

from rig.devices import DeviceInfo, PulseReport, TriggerSettings, TriggerStatus

PROTOCOL_NAME = "rpea-trigger"
PROTOCOL_VERSION = "1.0"


class SimMCU:
    """Pulse generator state machine of the trigger firmware, in simulated time (us)."""

    def __init__(self, name: str = PROTOCOL_NAME) -> None:
        self.name = name
        self.now_us = 0
        self.rate_mhz = 20_000
        self.width_us = 1000
        self.count = 0
        self.running = False
        self.pulses_emitted = 0
        self._start_us = 0
        self._reports: list[PulseReport] = []
        self._lock = threading.RLock()

    def banner(self) -> str:
        return f"READY {self.name} {PROTOCOL_VERSION}"

    @property
    def period_us(self) -> float:
        return 1e9 / self.rate_mhz

    def next_rise_us(self) -> int | None:
        with self._lock:
            if not self.running:
                return None
            return self._start_us + round(self.pulses_emitted * self.period_us)

    def advance_to(self, t_us: int) -> list[tuple[int, int, int]]:
        out: list[tuple[int, int, int]] = []
        with self._lock:
            while self.running:
                rise = self._start_us + round(self.pulses_emitted * self.period_us)
                if rise >= t_us:
                    break
                out.append((self.pulses_emitted, rise, rise + self.width_us))
                self._reports.append(PulseReport(self.pulses_emitted, rise))
                self.pulses_emitted += 1
                if self.count and self.pulses_emitted >= self.count:
                    self.running = False
            self.now_us = max(self.now_us, t_us)
        return out

    def take_reports(self) -> list[PulseReport]:
        with self._lock:
            reports, self._reports = self._reports, []
            return reports

    def status_line(self) -> str:
        state = "running" if self.running else ("done" if self.pulses_emitted else "idle")
        return (f"STATUS state={state} pulses={self.pulses_emitted} t_us={self.now_us} "
                f"rate_mhz={self.rate_mhz} width_us={self.width_us} count={self.count} err=0")

    def handle_line(self, line: str) -> list[str]:
        words = line.strip().split()
        if not words:
            return []
        cmd, args = words[0].upper(), words[1:]
        with self._lock:
            if cmd == "PING":
                return ["PONG"]
            if cmd == "VERSION":
                return [f"VERSION {self.name} {PROTOCOL_VERSION}"]
            if cmd == "STATUS":
                return [self.status_line()]
            if cmd == "START":
                self.running, self.pulses_emitted, self._start_us = True, 0, self.now_us
                return [f"OK START t_us={self.now_us}"]
            if cmd == "STOP":
                self.running = False
                return [f"OK STOP pulses={self.pulses_emitted}"]
            if cmd == "CONFIG":
                try:
                    kv = dict(a.split("=", 1) for a in args)
                    self.rate_mhz = int(kv.get("rate_mhz", self.rate_mhz))
                    self.width_us = int(kv.get("width_us", self.width_us))
                    self.count = int(kv.get("count", self.count))
                except ValueError:
                    return ["ERR 2 bad argument"]
                return [f"OK CONFIG rate_mhz={self.rate_mhz} width_us={self.width_us} "
                        f"count={self.count}"]
            return [f"ERR 1 unknown command {cmd}"]


def parse_status(line: str) -> TriggerStatus:
    kv = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
    return TriggerStatus(kv["state"], int(kv["pulses"]), int(kv["t_us"]), int(kv["rate_mhz"]),
                         int(kv["width_us"]), int(kv["count"]), int(kv.get("err", "0"), 0))


class SimTrigger:
    """`TriggerController` of the simulated rig, talking to a `SimMCU` by protocol lines."""

    def __init__(self, mcu: SimMCU | None = None) -> None:
        self.mcu = mcu or SimMCU()

    def _ask(self, line: str) -> str:
        reply = self.mcu.handle_line(line)
        if not reply or reply[0].startswith("ERR"):
            raise RuntimeError(f"simulated trigger MCU refused {line!r}: {reply}")
        return reply[0]

    def open(self) -> None:
        self._ask("PING")

    def close(self) -> None:
        pass

    def info(self) -> DeviceInfo:
        return DeviceInfo("trigger", "sim", "SimMCU", "SIM-MCU-0001", PROTOCOL_VERSION)

    def configure(self, settings: TriggerSettings) -> TriggerStatus:
        self._ask(f"CONFIG rate_mhz={settings.rate_mhz} width_us={settings.width_us} "
                  f"count={settings.count or 0}")
        return self.status()

    def start(self) -> None:
        self._ask("START")

    def stop(self) -> None:
        self._ask("STOP")

    def status(self) -> TriggerStatus:
        return parse_status(self._ask("STATUS"))

    def read_pulses(self, timeout_s: float = 0.0) -> list[PulseReport]:
        return self.mcu.take_reports()
