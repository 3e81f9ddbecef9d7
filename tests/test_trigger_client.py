"""The serial trigger client (rig/trigger/client.py) against the simulated MCU and scripted bad ports:
banner and version handshake, garbage, timeouts, a restart mid-session, a vanished port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
import serial

from rig.devices import TriggerSettings
from rig.registry import create_device
from rig.sim.mcu import SimMCU, SimSerial, SimTrigger
from rig.trigger import (
    SerialTrigger,
    TriggerDisconnected,
    TriggerProtocolError,
    TriggerRefused,
    TriggerReset,
    TriggerTimeout,
)
from rig.trigger import protocol as tp


class ScriptedPort:
    """A pyserial-like port: `answer(request_line) -> reply bytes`, plus bytes queued at start."""

    def __init__(self, answer: Callable[[str], bytes], initial: bytes = b"") -> None:
        self.answer = answer
        self.timeout = 0.01
        self.port = "scripted"
        self._out = bytearray(initial)
        self._in = bytearray()
        self.closed = False

    def write(self, data: bytes) -> int:
        self._in += data
        while b"\n" in self._in:
            line, _, rest = bytes(self._in).partition(b"\n")
            self._in = bytearray(rest)
            self._out += self.answer(line.decode("ascii", "replace"))
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._out)

    def read(self, size: int = 1) -> bytes:
        if not self._out:
            time.sleep(self.timeout)
            return b""
        data = bytes(self._out[:size])
        del self._out[:size]
        return data

    def close(self) -> None:
        self.closed = True


def mcu_answer(mcu: SimMCU) -> Callable[[str], bytes]:
    def answer(line: str) -> bytes:
        return b"".join((r + "\r\n").encode() for r in mcu.handle_line(line))

    return answer


def test_handshake_configure_start_via_registry() -> None:
    trig = create_device("trigger", "serial", port=SimSerial(), timeout_s=0.5)
    with trig:
        assert trig.banner == "READY rpea-trigger 1.0"
        info = trig.info()
        assert (info.backend, info.firmware) == ("serial", "1.0.0")
        assert info.extra["protocol"] == "1.0"
        status = trig.configure(TriggerSettings(rate_hz=30.0, width_us=5000, count=10))
        assert (status.state, status.rate_mhz, status.count) == ("idle", 30_000, 10)
        # The achieved period is reported exactly, in CPU cycles.
        assert trig.last_config["period_cyc"] == "533312"
        assert trig.last_config["achieved_rate_mhz"] == "30001"
        trig.start()
        assert trig.status().state == "running"
        trig.stop()
        assert trig.status().state == "idle"


def test_refused_command_raises_with_code() -> None:
    with SerialTrigger(SimSerial(), timeout_s=0.5) as trig:
        with pytest.raises(TriggerRefused) as err:
            trig.configure(TriggerSettings(rate_hz=20.0, width_us=60_000))
        assert err.value.code == tp.ERR_WIDTH_TOO_LONG
        assert "width too long for rate" in str(err.value)
        trig.start()
        with pytest.raises(TriggerRefused, match="ERR 9 busy"):
            trig.start()


def test_garbage_everywhere_is_skipped() -> None:
    mcu = SimMCU()
    inner = mcu_answer(mcu)
    noise = b"\x00\xff\xfe\x80garbage\r\n\x1b[2J\xde\xad\r\n"

    def answer(line: str) -> bytes:
        return noise + b"OK STOP pulses=99\r\n" + inner(line) + noise

    port = ScriptedPort(answer, initial=noise + b"READY rpea-trigger 1.0\r\n" + noise)
    with SerialTrigger(port, timeout_s=0.5, boot_wait_s=0.2) as trig:
        assert trig.version["fw"] == "1.0.0"
        status = trig.configure(TriggerSettings(rate_hz=10.0, width_us=1000))
        assert status.rate_mhz == 10_000
        assert trig.ping() < 0.5
    assert trig.garbage_lines > 0 and trig.stale_lines > 0


def test_silent_port_times_out_without_hanging() -> None:
    port = ScriptedPort(lambda line: b"")
    trig = SerialTrigger(port, timeout_s=0.3, boot_wait_s=0.1)
    t0 = time.monotonic()
    with pytest.raises(TriggerTimeout, match="no reply to PING"):
        trig.open()
    assert time.monotonic() - t0 < 1.5


def test_lost_reply_times_out_then_recovers() -> None:
    mcu = SimMCU()
    inner = mcu_answer(mcu)
    dropped = []

    def answer(line: str) -> bytes:
        if line == "STATUS" and not dropped:
            dropped.append(line)
            return b"STAT"  # half a line, then silence
        return inner(line)

    port = ScriptedPort(answer, initial=b"READY rpea-trigger 1.0\r\n")
    with SerialTrigger(port, timeout_s=0.3, boot_wait_s=0.0) as trig:
        with pytest.raises(TriggerTimeout, match="no reply to 'STATUS'"):
            trig.status()
        assert trig.status().state == "idle"  # resynchronised


def test_wrong_protocol_version_is_refused() -> None:
    def answer(line: str) -> bytes:
        if line == "PING":
            return b"PONG\r\n"
        return b"VERSION rpea-trigger 2.0 fw=2.0.0 board=uno f_cpu_hz=16000000\r\n"

    with pytest.raises(TriggerProtocolError, match="speaks protocol 2.0"):
        SerialTrigger(ScriptedPort(answer), timeout_s=0.3, boot_wait_s=0.0).open()

    def other(line: str) -> bytes:
        return b"PONG\r\n" if line == "PING" else b"VERSION marlin 1.0\r\n"

    with pytest.raises(TriggerProtocolError, match="not the rpea-trigger firmware"):
        SerialTrigger(ScriptedPort(other), timeout_s=0.3, boot_wait_s=0.0).open()


def test_reset_mid_session_raises_once_then_works() -> None:
    trig = SimTrigger(timeout_s=0.5)
    trig.open()
    trig.configure(TriggerSettings(rate_hz=100.0, width_us=1000))
    trig.start()
    trig.mcu.advance_to(1_000_000)
    assert trig.status().pulses_emitted == 100
    trig.mcu.reboot()
    trig.mcu.advance_to(1_500_000)
    with pytest.raises(TriggerReset, match="restarted .*configure and start it again"):
        trig.status()
    assert trig.resets_seen == 1
    status = trig.status()
    assert (status.state, status.pulses_emitted, status.rate_mhz) == ("idle", 0, 20_000)
    assert status.mcu_time_us == 500_000  # the MCU's clock restarted at the reboot
    trig.configure(TriggerSettings(rate_hz=100.0, width_us=1000))
    trig.start()
    trig.mcu.advance_to(1_600_000)
    assert trig.status().pulses_emitted == 10


def test_reset_without_banner_is_caught_by_the_clock() -> None:
    trig = SimTrigger(timeout_s=0.5)
    trig.open()
    trig.mcu.advance_to(3_000_000)
    trig.status()
    trig.mcu.reboot()
    trig.mcu.take_lines()  # the banner is lost on the wire
    trig.mcu.advance_to(3_100_000)
    with pytest.raises(TriggerReset, match="clock went back"):
        trig.status()
    assert trig.status().mcu_time_us == 100_000


def test_clock_unwraps_past_32_bits() -> None:
    trig = SimTrigger(timeout_s=0.5)
    trig.open()
    times = []
    for t_us in (4_000_000_000, 4_294_000_000, 4_295_000_000, 6_000_000_000):
        trig.mcu.advance_to(t_us)
        times.append(trig.status().mcu_time_us)
    assert times == [4_000_000_000, 4_294_000_000, 4_295_000_000, 6_000_000_000]


def test_pulse_reports_and_read_timeout() -> None:
    trig = SimTrigger(timeout_s=0.5)
    trig.open()
    t0 = time.monotonic()
    assert trig.read_pulses(timeout_s=0.2) == []
    assert 0.15 < time.monotonic() - t0 < 1.0
    trig.configure(TriggerSettings(rate_hz=20.0, width_us=5000, count=3))
    trig.start()
    trig.mcu.advance_to(10_000_000)
    pulses = trig.read_pulses(timeout_s=0.5)
    assert [p.index for p in pulses] == [0, 1, 2]
    assert [p.t_us - pulses[0].t_us for p in pulses] == [0, 50_000, 100_000]
    assert pulses[0].t_us == trig.start_t_us
    assert trig.status().state == "done"


def test_port_vanishing_raises_disconnected() -> None:
    port = SimSerial()
    trig = SerialTrigger(port, timeout_s=0.3)
    trig.open()
    port.close()
    with pytest.raises(TriggerDisconnected, match="disconnected"):
        trig.status()


def test_loop_url_is_recognised_as_a_loopback() -> None:
    with pytest.raises(TriggerProtocolError, match="echoes what is sent"):
        SerialTrigger("loop://", timeout_s=0.3).open()


def test_unreachable_socket_fails_fast() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(TriggerDisconnected, match="cannot open trigger port"):
        SerialTrigger(f"socket://127.0.0.1:{port}", timeout_s=0.3).open()


def test_socket_peer_closing_is_a_disconnect() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    mcu = SimMCU()

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"READY rpea-trigger 1.0\r\n")
        buf = b""
        while b"VERSION\n" not in buf:
            buf += conn.recv(100)
            for line in buf.split(b"\n")[:-1]:
                for reply in mcu.handle_line(line.decode()):
                    conn.sendall(reply.encode() + b"\r\n")
            buf = buf.split(b"\n")[-1] if not buf.endswith(b"VERSION\n") else buf
        conn.sendall(b"VERSION rpea-trigger 1.0 fw=1.0.0 board=uno f_cpu_hz=16000000\r\n")
        time.sleep(0.1)
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    trig = SerialTrigger(f"socket://127.0.0.1:{port}", timeout_s=0.5)
    trig.open()
    thread.join(timeout=2)
    with pytest.raises(TriggerDisconnected, match="disconnected"):
        trig.status()
    trig.close()


def test_bad_polarity_is_caught_before_sending() -> None:
    with SerialTrigger(SimSerial(), timeout_s=0.3) as trig:
        with pytest.raises(Exception, match="polarity"):
            trig.configure(TriggerSettings(polarity="up"))


def test_serial_exception_type_is_wrapped() -> None:
    class Dying(ScriptedPort):
        def read(self, size: int = 1) -> bytes:
            raise serial.SerialException("device reports readiness to read but returned no data")

    with pytest.raises(TriggerDisconnected, match="SerialException"):
        SerialTrigger(Dying(lambda line: b""), timeout_s=0.3, boot_wait_s=0.0).open()
