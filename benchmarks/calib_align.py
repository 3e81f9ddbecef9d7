"""EventAligner throughput (events/s on one core) and ImageAligner frame rate, on the default
simulated rig's true calibration. Run by hand: `python benchmarks/calib_align.py`."""

from __future__ import annotations

import time

import numpy as np

from calibration.accuracy import calibration_from_geometry
from calibration.align import EventAligner, ImageAligner
from rig.sim.optics import default_rig


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    import numba

    numba.set_num_threads(1)
    rows = []
    for full_res in (False, True):
        geometry = default_rig(full_res=full_res)
        calib = calibration_from_geometry(geometry)
        t0 = time.perf_counter()
        aligner = EventAligner(calib)
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        n = 20_000_000
        x = rng.integers(0, geometry.event.width, n).astype(np.uint16)
        y = rng.integers(0, geometry.event.height, n).astype(np.uint16)
        aligner.map_events(x[:1000], y[:1000])  # compile / load the cached kernel
        dt = best_of(lambda a=aligner, xs=x, ys=y: a.map_events(xs, ys))
        img_al = ImageAligner(calib)
        bayer = rng.integers(0, 255, (geometry.frame.height, geometry.frame.width), np.uint8)
        dt_img = best_of(lambda a=img_al, b=bayer: a.align(b, "BayerRG8"), 10)
        rows.append((f"{geometry.event.width}x{geometry.event.height}", build_s, n / dt / 1e6,
                     f"{geometry.frame.width}x{geometry.frame.height}", 1.0 / dt_img))
    print(f"{'events':>10} {'LUT build s':>12} {'Mev/s (1 core)':>15} {'frame':>10} "
          f"{'frames/s (debayer+remap)':>25}")
    for ev, b, mevs, fr, fps in rows:
        print(f"{ev:>10} {b:12.2f} {mevs:15.0f} {fr:>10} {fps:25.0f}")


if __name__ == "__main__":
    main()
