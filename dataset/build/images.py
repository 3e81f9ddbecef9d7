"""The image half of a sequence: per pair, debayer + align + crop the frame, tag its exposure
conditions, attach labels and masks; in worker processes (one contiguous range of pairs each,
into temporary files with the final layout) while the caller streams the events."""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter)
import numpy as np

from calibration.io import load_calibration
from dataset import conditions as cond
from dataset.alignment import Alignment
from dataset.build.labels import LabelSource
from dataset.build.options import BuildOptions, SessionPlan
from dataset.rpea_format import create_pair_datasets
from rig.session import SessionReader
from rig.sync import SyncResult


def has_masks(reader: Any) -> bool:
    truth = reader.ground_truth
    return truth is not None and truth.has_instances()


def make_pair_images(reader: Any, sequence: str, opts: BuildOptions, align: Any, sync: SyncResult,
                     images: h5py.Dataset, labels: h5py.Dataset, masks: h5py.Dataset | None,
                     progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Per pair: debayer + align the frame, tag its conditions, attach labels and masks.

    Preparation runs `opts.threads` pairs ahead in threads (cv2 releases the GIL); the HDF5
    writes stay in this thread (h5py serialises them anyway).
    """
    n = sync.num_pairs
    pix_fmt = reader.pixel_format
    over = np.zeros(n, np.float32)
    under = np.zeros(n, np.float32)
    has_label = np.zeros(n, np.uint8)
    label_src = LabelSource(reader, sequence, opts, align, sync)
    try:
        def prepare(i: int) -> tuple:
            rgb = align.image(reader.frame(int(sync.frame_index[i])), pix_fmt)
            o, u = cond.exposure_fractions(rgb, opts.alpha, opts.beta)
            return rgb, o, u, label_src.label(i), label_src.mask(i) if masks is not None else None

        with ThreadPoolExecutor(max_workers=max(1, opts.threads)) as pool:
            ahead = 2 * max(1, opts.threads)
            futures = {j: pool.submit(prepare, j) for j in range(min(n, ahead))}
            for i in range(n):
                rgb, over[i], under[i], lab, m = futures.pop(i).result()
                if i + ahead < n:
                    futures[i + ahead] = pool.submit(prepare, i + ahead)
                images[i] = rgb
                if lab is not None:
                    labels[i] = lab
                    has_label[i] = 1
                if m is not None and masks is not None:
                    masks[i] = m
                if progress:
                    progress("pairs", i + 1, n)
    finally:
        label_src.close()
    return {"over": over, "under": under, "has_label": has_label,
            "label_source": label_src.kind, "labels_missing": label_src.missing}


def _image_worker(session: str, sequence: str, opts: BuildOptions, pairs: dict[str, np.ndarray],
                  height: int, width: int, path: str, row0: int) -> dict[str, Any]:
    """The image half of a parallel build, in its own process: writes images/labels/masks to a
    temporary file with the final layout (so the chunks can be copied as they are)."""
    reader = SessionReader(session)
    try:
        align = Alignment.from_file(opts.calib_path)
        n = len(pairs["pulse_index"])  # the worker's pairs only: counts and period do not matter
        sync = SyncResult(pulse_index=pairs["pulse_index"], frame_index=pairs["frame_index"],
                          frame_id=pairs["frame_id"], edge_t_us=pairs["edge_t_us"],
                          edge_fall_t_us=np.full(n, -1, np.int64), num_pulses=n, num_edges=n,
                          num_frames=n, period_us=0.0)
        with_masks = opts.write_masks and has_masks(reader)
        with h5py.File(path, "w") as f:
            images, labels, masks = create_pair_datasets(f, sync.num_pairs, height, width,
                                                         with_masks)
            out = make_pair_images(reader, sequence, opts, align, sync, images, labels, masks)
        out.update(path=path, with_masks=with_masks, row0=row0)
        return out
    finally:
        reader.close()


class ImageJob:
    """Processes making the pair images (one contiguous range of pairs each) while the caller
    streams the events."""

    def __init__(self, pool: ProcessPoolExecutor, futures: list[Any], paths: list[str]) -> None:
        self.pool, self.futures, self.paths = pool, futures, paths

    @classmethod
    def start(cls, p: SessionPlan, opts: BuildOptions, reader: Any, sync: SyncResult,
              out_path: Path) -> ImageJob:

        calib_w, calib_h = _calib_size(opts.calib_path)
        n = sync.num_pairs
        k = max(1, min(opts.image_workers, n))
        bounds = np.linspace(0, n, k + 1).astype(int)
        # spawn, not fork: the parent holds open HDF5 files
        pool = ProcessPoolExecutor(max_workers=k, mp_context=mp.get_context("spawn"))
        futures, paths = [], []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.images{a}.", suffix=".h5.tmp",
                                       dir=out_path.parent)
            os.close(fd)
            pairs = {"pulse_index": sync.pulse_index[a:b], "frame_index": sync.frame_index[a:b],
                     "frame_id": sync.frame_id[a:b], "edge_t_us": sync.edge_t_us[a:b]}
            futures.append(pool.submit(_image_worker, str(reader.path), p.name, opts, pairs,
                                       calib_h, calib_w, tmp, int(a)))
            paths.append(tmp)
        return cls(pool, futures, paths)

    def finish(self) -> list[dict[str, Any]]:
        try:
            return [f.result() for f in self.futures]
        finally:
            self.pool.shutdown()

    def cancel(self) -> None:
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for path in self.paths:
            Path(path).unlink(missing_ok=True)


def _calib_size(calib_path: Path) -> tuple[int, int]:
    w, h = load_calibration(calib_path).output_size
    return int(w), int(h)
