"""Speed of the simulated rig alone (no recorder, no files): how long a simulated second takes.

    .venv/bin/python benchmarks/sim_speed.py                          # day, 10 s, default size
    .venv/bin/python benchmarks/sim_speed.py --scenarios day,night,overexposed,motion_blur --seconds 5
    .venv/bin/python benchmarks/sim_speed.py --full-res --seconds 2

Prints, per scenario: simulated seconds, wall seconds, wall / real time, CPU core-seconds per
simulated second (what matters on a busy machine), event rate, rendered event-camera tiles per
second (as full frames), frame sub-samples per frame, and where the time went. The first run
after a code change includes numba compilation: run twice.
"""

from __future__ import annotations

import argparse
import time

from rig.sim.world import SimConfig, SimRig


def run(scenario: str, seconds: float, full_res: bool, seed: int) -> dict:
    rig = SimRig(SimConfig(scenario=scenario, seed=seed, full_res=full_res))
    try:
        rig.run_pulses(1)  # warm-up: compiles/loads the kernels
        for k in rig.stats:
            rig.stats[k] = 0 if isinstance(rig.stats[k], int) else 0.0
        s0 = rig.sim_time_s
        t0, c0 = time.perf_counter(), time.process_time()
        frames = rig.run_pulses(max(1, round(seconds * 20)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        sim = rig.sim_time_s - s0
        st = dict(rig.stats)
        ntiles = len(rig._tile_dt)
    finally:
        rig.close()
    return {"scenario": scenario, "sim_s": sim, "wall_s": wall, "ratio": wall / sim,
            "cpu_per_s": cpu / sim, "mev_s": st["events_generated"] / sim / 1e6,
            "ev_frames_s": st["tiles_rendered"] / ntiles / sim,
            "sub_per_frame": st["frame_subsamples"] / max(1, st["frames_exposed"]),
            "frames": len(frames), "render_s": st["render_s"], "events_s": st["events_s"],
            "frames_s": st["frames_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="day")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--full-res", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rows = [run(s, args.seconds, args.full_res, args.seed) for s in args.scenarios.split(",")]
    print(f"{'scenario':12} {'sim_s':>6} {'wall_s':>7} {'wall/real':>9} {'cpu/s':>6} {'Mev/s':>6} "
          f"{'ev_fr/s':>7} {'sub/fr':>6} {'frames':>6} {'render':>7} {'events':>7} {'sensor':>7}")
    for r in rows:
        print(f"{r['scenario']:12} {r['sim_s']:6.2f} {r['wall_s']:7.1f} {r['ratio']:9.2f} "
              f"{r['cpu_per_s']:6.2f} {r['mev_s']:6.2f} {r['ev_frames_s']:7.1f} "
              f"{r['sub_per_frame']:6.1f} {r['frames']:6d} {r['render_s']:7.1f} {r['events_s']:7.1f} "
              f"{r['frames_s']:7.1f}")


if __name__ == "__main__":
    main()
