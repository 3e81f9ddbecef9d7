"""Wall time of a simulated recording at default size, as a ratio to real time.

    .venv/bin/python benchmarks/sim_record.py            # 60 s day scenario (the issue's target: <= 3x)
    .venv/bin/python benchmarks/sim_record.py --quick    # 5 s
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rig.recorder import RecordOptions, record_session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scenarios", default="day")
    ap.add_argument("--quick", action="store_true", help="5 s per scenario")
    args = ap.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    rows = []
    for scenario in args.scenarios.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            s = record_session(RecordOptions(out_dir=Path(tmp) / "s", duration_s=seconds, scenario=scenario,
                                             seed=1, show_status=False))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            size_mb = sum(p.stat().st_size for p in (Path(tmp) / "s").rglob("*") if p.is_file()) / 1e6
        c = s.counts
        rows.append((scenario, seconds, wall, wall / seconds, c["frames_received"], c["events"] / 1e6,
                     c["events"] / seconds / 1e6, size_mb, s.status, cpu / seconds))
    print(f"{'scenario':12} {'sim_s':>6} {'wall_s':>7} {'wall/real':>9} {'cpu/real':>8} {'frames':>6} "
          f"{'Mev':>7} {'Mev/s':>6} {'MB':>7}  status")
    for r in rows:
        print(f"{r[0]:12} {r[1]:6.1f} {r[2]:7.1f} {r[3]:9.2f} {r[9]:8.2f} {r[4]:6d} {r[5]:7.2f} "
              f"{r[6]:6.2f} {r[7]:7.1f}  {r[8]}")
    print(f"cpu/real: CPU seconds of all threads per recorded second ({os.cpu_count()} cores here; "
          "wall/real approaches cpu/real / cores when the cores are free)")


if __name__ == "__main__":
    main()
