#!/usr/bin/env python3
"""Print the achieved rate and width of the trigger firmware on a 16 MHz ATmega328P (computed
from the Timer1 arithmetic, exact) and, with --emulator, the rate measured on the real firmware
in qemu-system-avr against the host clock.

    python firmware/tools/timing_table.py               # the computed table
    python firmware/tools/timing_table.py --emulator    # plus QEMU measurements (~25 s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from rig.trigger import protocol as tp  # noqa: E402

RATES_HZ = (0.25, 1, 5, 10, 15, 20, 25, 29.97, 30, 50, 59.94, 60, 100, 120, 200, 500, 1000, 10000)
WIDTHS_US = (20, 100, 1000, 5000)


def computed_table() -> None:
    print("Computed on real 16 MHz timing (exact Timer1 arithmetic; the Uno's ceramic resonator")
    print("adds its own tolerance, typically +-0.5 %, on top of this quantisation error):\n")
    print(f"{'rate Hz':>9} {'presc':>5} {'tick us':>8} {'period_cyc':>10} {'achieved Hz':>14} "
          f"{'rate err ppm':>12} | " + " ".join(f"{'w=' + str(w) + 'us err':>13}" for w in WIDTHS_US))
    worst_rate_ppm = 0.0
    for rate_hz in RATES_HZ:
        rate_mhz = round(rate_hz * 1000)
        plan = tp.plan_timer(rate_mhz, WIDTHS_US[0])
        assert isinstance(plan, tp.TimerPlan)
        achieved_hz = tp.F_CPU_HZ / plan.period_cyc
        err_ppm = (achieved_hz / (rate_mhz / 1000) - 1) * 1e6
        worst_rate_ppm = max(worst_rate_ppm, abs(err_ppm))
        cells = []
        for width_us in WIDTHS_US:
            p = tp.plan_timer(rate_mhz, width_us)
            if isinstance(p, int):
                cells.append(f"{'ERR ' + str(p):>13}")
            else:
                err_ns = (p.width_cyc / tp.CYCLES_PER_US - width_us) * 1000
                cells.append(f"{err_ns:>+10.1f} ns")
        print(f"{rate_hz:>9g} {plan.prescaler:>5} {plan.prescaler / 16:>8g} {plan.period_cyc:>10} "
              f"{achieved_hz:>14.6f} {err_ppm:>+12.2f} | " + " ".join(cells))
    print(f"\nworst rate quantisation error in this table: {worst_rate_ppm:.2f} ppm")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_rates(seconds: float) -> None:
    from rig.devices import TriggerSettings
    from rig.trigger import SerialTrigger

    qemu = shutil.which("qemu-system-avr")
    if qemu is None:
        print("\nqemu-system-avr not installed: no emulator measurement")
        return
    subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), "emu"], check=True)
    elf = REPO / "firmware" / "build" / "trigger-emu.elf"
    print(f"\nMeasured in qemu-system-avr ({seconds:g} s per rate, pulses between two STATUS "
          f"replies vs host clock; load average {os.getloadavg()[0]:.1f}):\n")
    print(f"{'rate Hz':>8} {'pulses':>7} {'host s':>8} {'measured Hz':>12} {'error %':>8} "
          f"{'MCU clock vs host %':>20}")
    for rate_hz in (10, 20, 50, 100):
        port = _free_port()
        proc = subprocess.Popen(
            [qemu, "-M", "uno", "-bios", str(elf), "-display", "none", "-monitor", "none",
             "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            with SerialTrigger(f"socket://127.0.0.1:{port}", timeout_s=2.0) as trig:
                trig.configure(TriggerSettings(rate_hz=rate_hz, width_us=1000))
                trig.start()
                time.sleep(0.2)
                a, t0 = trig.status(), time.monotonic()
                time.sleep(seconds)
                b, t1 = trig.status(), time.monotonic()
                trig.stop()
        finally:
            proc.terminate()
            proc.wait(timeout=5)
        n = b.pulses_emitted - a.pulses_emitted
        host_s = t1 - t0
        measured = n / host_s
        mcu_s = (b.mcu_time_us - a.mcu_time_us) / 1e6
        print(f"{rate_hz:>8g} {n:>7} {host_s:>8.3f} {measured:>12.4f} "
              f"{(measured / rate_hz - 1) * 100:>+8.2f} {(mcu_s / host_s - 1) * 100:>+20.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulator", action="store_true", help="also measure in QEMU")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement per rate")
    args = parser.parse_args()
    computed_table()
    if args.emulator:
        emulator_rates(args.seconds)


if __name__ == "__main__":
    main()
