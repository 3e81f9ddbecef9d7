"""The simulated trigger MCU: the shared conformance vectors, pulse timing against the firmware's
timer arithmetic, thread safety, and the in-process serial port."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rig.devices import TriggerController, TriggerSettings
from rig.sim.mcu import SimMCU, SimSerial, SimTrigger
from rig.trigger import protocol as tp

VECTORS = Path(__file__).resolve().parents[1] / "firmware" / "tests" / "vectors.txt"


def test_vectors_on_sim_mcu() -> None:
    mcu = SimMCU()
    blocks = tp.load_vectors(VECTORS)
    assert len(blocks) > 50
    failures = []
    for block in blocks:
        replies = mcu.feed(block.request)
        ok = len(replies) == len(block.replies) and all(
            tp.reply_matches(e, a) for e, a in zip(block.replies, replies, strict=False))
        if not ok:
            failures.append(f"vectors.txt:{block.lineno} {block.source!r}: expected "
                            f"{list(block.replies)}, got {replies}")
    assert not failures, "\n".join(failures)


def test_banner_and_version() -> None:
    mcu = SimMCU()
    assert mcu.banner() == "READY rpea-trigger 1.0"
    assert mcu.handle_line("VERSION") == [
        "VERSION rpea-trigger 1.0 fw=1.0.0 board=sim f_cpu_hz=16000000"]


def _configure(mcu: SimMCU, line: str) -> None:
    reply = mcu.handle_line(line)
    assert reply and reply[0].startswith("OK CONFIG"), reply


def test_pulse_times_follow_timer_arithmetic() -> None:
    mcu = SimMCU()
    mcu.advance_to(1000)
    _configure(mcu, "CONFIG rate_mhz=30000 width_us=5000")
    (start,) = mcu.handle_line("START")
    # 30 Hz: 8333 ticks of /64 -> 533312 cycles = 33332 us; pulse 0 rises 2 ticks (8 us) later.
    assert start == "OK START t_us=1008"
    assert mcu.next_rise_us() == 1008
    pulses = mcu.advance_to(1000 + 2_000_000)
    assert len(pulses) == 61  # rises at 1008 + k * 33332 us < 2_001_000
    for k, (index, rise_us, fall_us) in enumerate(pulses):
        assert index == k
        assert rise_us == (1008 * 16 + k * 533_312) // 16
        assert fall_us == (1008 * 16 + k * 533_312 + 80_000) // 16
    assert [r.index for r in mcu.take_reports()] == list(range(61))
    assert mcu.take_reports() == []
    assert mcu.pulses_emitted == 61 and mcu.running


def test_count_ends_in_done_and_stop_halts() -> None:
    mcu = SimMCU()
    _configure(mcu, "CONFIG rate_mhz=100000 width_us=1000 count=5")
    mcu.handle_line("START")
    assert len(mcu.advance_to(10_000_000)) == 5
    assert mcu.state == "done" and mcu.next_rise_us() is None
    assert mcu.handle_line("STATUS")[0].startswith("STATUS state=done pulses=5 ")
    _configure(mcu, "CONFIG count=0")
    mcu.handle_line("START")
    # 100 Hz runs on /8: pulse 0 rises 2 ticks = 1 us after START, then every 10 ms.
    assert len(mcu.advance_to(10_050_002)) == 6
    assert mcu.handle_line("STOP") == ["OK STOP pulses=6"]
    assert mcu.advance_to(20_000_000) == []
    assert mcu.state == "idle"


def test_status_clock_wraps_like_the_firmware() -> None:
    mcu = SimMCU()
    mcu.advance_to((1 << 32) + 5)
    assert " t_us=5 " in mcu.handle_line("STATUS")[0]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_break_the_interpreter(data: bytes) -> None:
    mcu = SimMCU()
    replies = mcu.feed(data)
    for line in replies:
        assert line.split()[0] in {"ERR", "PONG", "VERSION", "STATUS", "OK"}, line
        assert len(line) < 200
    # A bare LF ends any half line (its reply, if any, is an ERR); then PING answers.
    tail = mcu.feed(b"\n")
    assert all(line.startswith(("ERR", "OK", "STATUS", "PONG", "VERSION")) for line in tail)
    assert mcu.feed(b"PING\n") == ["PONG"]


def test_sim_serial_sends_banner_and_pulse_lines() -> None:
    mcu = SimMCU()
    port = SimSerial(mcu, timeout=0.01)
    assert port.read(100) == b"READY rpea-trigger 1.0\r\n"
    port.write(b"CONFIG rate_mhz=50000 report=1\nSTART\n")
    mcu.advance_to(50_000)
    text = b""
    while chunk := port.read(4096):
        text += chunk
    lines = text.decode().split("\r\n")
    assert lines[0].startswith("OK CONFIG") and lines[1] == "OK START t_us=1"
    assert lines[2:5] == ["PULSE 0 1", "PULSE 1 20001", "PULSE 2 40001"]


def test_sim_trigger_is_a_trigger_controller_and_thread_safe() -> None:
    trig = SimTrigger()
    assert isinstance(trig, TriggerController)
    trig.open()
    assert trig.info().backend == "sim"
    trig.configure(TriggerSettings(rate_hz=1000.0, width_us=100))
    trig.start()
    stop = threading.Event()

    def simulate() -> None:
        # at most 2 s of MCU time (2000 pulses): fewer than the MCU buffers for a slow reader
        # (4096 lines; beyond that it drops them as the firmware would), however slowly the
        # main thread runs on a loaded machine
        t_us = 0
        while not stop.is_set() and t_us < 2_000_000:
            t_us += 700
            trig.mcu.advance_to(t_us)

    thread = threading.Thread(target=simulate)
    thread.start()
    try:
        seen = []
        for _ in range(100):
            status = trig.status()
            seen.append((status.mcu_time_us, status.pulses_emitted))
        pulses = trig.read_pulses()
    finally:
        stop.set()
        thread.join()
    assert seen == sorted(seen)  # time and counts only ever grow
    assert seen[-1][0] > 0
    indices = [p.index for p in pulses]
    assert indices == list(range(len(indices)))
    assert all(b.t_us - a.t_us == 1000 for a, b in zip(pulses, pulses[1:], strict=False))


def test_realtime_sim_port_runs_on_the_host_clock() -> None:
    trig = SimTrigger(realtime=True)
    trig.open()
    trig.configure(TriggerSettings(rate_hz=200.0, width_us=500))
    trig.start()
    t0 = time.monotonic()
    first = trig.status()
    time.sleep(0.3)
    second = trig.status()
    host_s = time.monotonic() - t0
    trig.stop()
    rate = (second.pulses_emitted - first.pulses_emitted) / host_s
    assert 150 < rate < 250, rate
