"""Cost of the sub-pixel splat (issue 15): event frame and voxel grid from float grid positions
(bilinear, divided by the splat density) against nearest-pixel integer positions, same events,
same grid, same process. Run by hand: `python benchmarks/splat.py [--quick]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset.representations import event_frame_with_scale, voxel_grid  # noqa: E402


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer events and repeats")
    args = ap.parse_args()
    import numba

    numba.set_num_threads(1)
    h, w = 480, 640
    rng = np.random.default_rng(0)
    print(f"{'events':>9} {'kind':>6} {'nearest ms':>11} {'splat ms':>9} {'splat/nearest':>14}")
    for n in ((50_000,) if args.quick else (50_000, 200_000, 1_000_000)):
        xf = rng.uniform(0, w - 1, n)
        yf = rng.uniform(0, h - 1, n)
        t = np.sort(rng.integers(0, 50_000, n))
        p = rng.integers(0, 2, n)
        xi, yi = np.floor(xf + 0.5).astype(np.int64), np.floor(yf + 0.5).astype(np.int64)
        density = np.ones((h, w), np.float32)
        for kind in ("frame", "voxel"):
            near = _call(kind, xi, yi, t, p, (h, w), None)
            sub = _call(kind, xf, yf, t, p, (h, w), density)
            near()
            sub()  # compile both
            reps = 3 if args.quick else 9
            a, b = best_of(near, reps), best_of(sub, reps)
            print(f"{n:>9} {kind:>6} {a * 1e3:>11.2f} {b * 1e3:>9.2f} {b / a:>13.2f}x")


def _call(kind, x, y, t, p, shape, density):
    """The representation of `kind` on these events, as a function of no arguments."""
    if kind == "frame":
        return lambda: event_frame_with_scale(x, y, t, p, shape, 0, 50_000, density=density)
    return lambda: voxel_grid(x, y, t, p, shape, 5, 0, 50_000, density=density)

if __name__ == "__main__":
    main()
