"""Benchmark: training-loader throughput (samples/s) of `dataset.reader.RPEADataset`.

512x512 random crops with flips, 3-channel event frames (and optionally voxel grids), through a
torch DataLoader with 0, 1 and 2 workers. Runs on a built dataset (`--data`, e.g. the output of
`make demo`) or, by default, on a synthetic one of the simulator's default aligned size written
with the real RPEA writer (images with texture, ~`--events-per-pair` events per pair).

    .venv/bin/python benchmarks/loader.py                      # synthetic data, ~1 min
    .venv/bin/python benchmarks/loader.py --data demo/rpea --split train --batches 30
    .venv/bin/python benchmarks/loader.py --data demo/rpea --compact --no-masks
CPU ms per sample sums the main process and the workers (/proc), so it depends far less on how
loaded the machine is than samples/s does.
Target (issue #6): >= 100 samples/s at 512x512 with 2 workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataset.rpea_format import SequenceWriter, identity_rectify_map, update_index  # noqa: E402


def synthetic_dataset(root: Path, sequences: int, pairs: int, h: int, w: int,
                      events_per_pair: int, seed: int = 0) -> Path:
    """A split `train` of textured images and random events at the given size."""
    rng = np.random.default_rng(seed)
    period = 50_000
    for s in range(sequences):
        path = root / "train" / f"synth_{s:02d}.h5"
        with SequenceWriter(path, h, w) as wr:
            for k in range(pairs):
                t = np.sort(rng.integers(k * period, (k + 1) * period, events_per_pair))
                wr.append_events(rng.integers(0, w, t.size).astype(np.uint16),
                                 rng.integers(0, h, t.size).astype(np.uint16), t,
                                 rng.integers(0, 2, t.size).astype(np.uint8))
            wr.finish_events()
            t0 = np.arange(pairs) * period
            wr.create_pairs(pairs, with_masks=True)
            base = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
            import cv2

            for i in range(pairs):
                img = cv2.resize(np.roll(base, i, axis=1), (w, h), interpolation=cv2.INTER_LINEAR)
                img = np.clip(img.astype(np.int16) + rng.integers(-8, 8, img.shape), 0, 255)
                wr.write_image(i, img.astype(np.uint8))
                wr.write_label(i, (img[..., 0] // 14).astype(np.uint8))
                wr.write_mask(i, (img[..., 1] // 32).astype(np.uint16))
            wr.write_pairs({
                "frame_id": np.arange(pairs), "frame_t_us": t0, "exposure_t0_us": t0,
                "exposure_t1_us": t0 + 5000, "event_t0_us": t0, "event_t1_us": t0 + period,
                "event_idx0": wr.event_index(t0), "event_idx1": wr.event_index(t0 + period),
                "has_label": np.ones(pairs, np.uint8),
                "overexposed_frac": np.zeros(pairs, np.float32),
                "underexposed_frac": np.zeros(pairs, np.float32),
                "is_night": np.zeros(pairs, np.uint8)})
            wr.write_calib("synthetic")
            wr.write_rectify_map(identity_rectify_map(h, w))
            sha = wr.commit({"sequence": path.stem, "scene": "urban", "time_of_day": "day",
                             "split": "train", "source_session": path.stem})
        update_index(path.parent, {"name": path.stem, "file": path.name, "num_pairs": pairs,
                                   "num_labelled": pairs, "sha256": sha, "time_of_day": "day",
                                   "scene": "urban", "session": path.stem})
    return root


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of other processes (the DataLoader workers), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def measure(root: Path, split: str, workers: int, batches: int, batch_size: int, crop: int,
            representation: str, masks: bool = True, compact: bool = False
            ) -> tuple[float, float]:
    """(samples/s, CPU ms per sample over the main process and its workers); with `compact` the
    main process widens labels/masks to int64 (`widen_batch`) inside the timed loop."""
    import torch
    from torch.utils.data import DataLoader

    from dataset.reader import RPEADataset, widen_batch

    ds = RPEADataset(root, split, representation=representation, crop_hw=(crop, crop), hflip=True,
                     with_masks=masks, compact=compact)
    dl = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                    persistent_workers=workers > 0, drop_last=True,
                    generator=torch.Generator().manual_seed(0))
    it = iter(dl)
    next(it)  # warm-up: worker start, numba compile, first file opens
    pids = [w.pid for w in getattr(it, "_workers", [])]
    n, t0, c0 = 0, time.perf_counter(), time.process_time() + _cpu_s(pids)
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(dl)
            b = next(it)
        if compact:
            b = widen_batch(b)
        n += b["image"].shape[0]
    wall = time.perf_counter() - t0
    cpu_ms = (time.process_time() + _cpu_s(pids) - c0) / n * 1000
    return n / wall, cpu_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="built RPEA dataset (default: synthetic)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--representation", default="frame", choices=["frame", "voxel"])
    ap.add_argument("--size", default="507x910", help="synthetic HxW (default: the simulator's "
                    "default aligned grid, roughly)")
    ap.add_argument("--events-per-pair", type=int, default=150_000)
    ap.add_argument("--no-masks", action="store_true", help="RPEADataset(with_masks=False)")
    ap.add_argument("--compact", action="store_true", help="RPEADataset(compact=True): uint8 "
                    "labels / uint16 masks across the worker boundary, widened in the main "
                    "process")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            h, w = (int(v) for v in args.size.split("x"))
            t = time.perf_counter()
            root = synthetic_dataset(Path(tmp), 3, 24, h, w, args.events_per_pair)
            print(f"synthetic dataset {h}x{w}, 72 pairs, {args.events_per_pair} events/pair "
                  f"written in {time.perf_counter() - t:.1f} s")
        print(f"cores available: {len(os.sched_getaffinity(0))}, load average "
              f"{os.getloadavg()[0]:.1f} (a loaded machine lowers the wall-clock rates)")
        mode = ("no masks" if args.no_masks else "masks") + (", compact" if args.compact else "")
        print(f"| workers | samples/s ({args.crop}x{args.crop}, {args.representation}, "
              f"batch {args.batch_size}, {mode}) | CPU ms per sample (main + workers) |")
        print("|---:|---:|---:|")
        for wk in args.workers:
            rate, cpu_ms = measure(root, args.split, wk, args.batches, args.batch_size, args.crop,
                                   args.representation, not args.no_masks, args.compact)
            print(f"| {wk} | {rate:.1f} | {cpu_ms:.1f} |")


if __name__ == "__main__":
    main()
