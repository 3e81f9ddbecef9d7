"""Read RPEA sequence files (docs/rpea-format.md) and serve training samples.

`RPEASequence` is a numpy reader of one `<sequence>.h5`; `RPEADataset` is the torch Dataset over
a split. HDF5 handles are opened lazily and per process (a handle opened before a DataLoader fork
is never reused in the worker), so the dataset is safe with `num_workers > 0`. Crop and flip are
applied identically to image, events, label and masks; the event representation is computed from
the stored events at read time, so a new representation never needs a rebuild.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter used by RPEA files)
import numpy as np

from dataset.representations import (
    event_frame,
    normalize_event_frame,
    normalize_voxel_grid,
    voxel_grid,
)

REQUIRED = ("images", "labels", "events/x", "events/y", "events/t", "events/p",
            "pairs/event_idx0", "pairs/event_idx1", "pairs/event_t0_us", "pairs/event_t1_us")


class RPEAFormatError(ValueError):
    """A file does not follow the RPEA layout; the message names the file and the problem."""


@dataclass
class PairEvents:
    """Events of one pair's window; `t_us` is absolute on the event-camera clock."""

    x: np.ndarray
    y: np.ndarray
    t_us: np.ndarray
    p: np.ndarray
    t0_us: int
    t1_us: int


class RPEASequence:
    """One RPEA sequence file, opened lazily (and re-opened after a fork)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: RPEA sequence file not found")
        self._h5: h5py.File | None = None
        self._pid = -1
        f = self.h5
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise RPEAFormatError(f"{self.path}: not an RPEA file, missing {', '.join(missing)}")
        n, h, w = f["images"].shape[:3]
        if f["images"].shape[3:] != (3,) or f["labels"].shape != (n, h, w):
            raise RPEAFormatError(
                f"{self.path}: images {f['images'].shape} / labels {f['labels'].shape} disagree")
        self.num_pairs, self.height, self.width = int(n), int(h), int(w)
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        self.t_offset_us = int(f["events/t_offset"][()]) if "events/t_offset" in f else 0
        self.has_masks = "masks" in f
        pairs = f["pairs"]
        self.pairs = {k: pairs[k][()] for k in pairs.keys()}
        if "has_label" not in self.pairs:
            self.pairs["has_label"] = np.ones(n, np.uint8)

    @property
    def h5(self) -> h5py.File:
        """The process-local open handle."""
        if self._h5 is None or self._pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as err:
                raise RPEAFormatError(f"{self.path}: cannot open as HDF5: {err}") from err
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"] = None, -1
        return state

    def __len__(self) -> int:
        return self.num_pairs

    @property
    def time_of_day(self) -> str:
        return str(self.attrs.get("time_of_day", "day"))

    def is_night(self, i: int) -> bool:
        if "is_night" in self.pairs:
            return bool(self.pairs["is_night"][i])
        return self.time_of_day in ("night", "tunnel")

    def image(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        return self.h5["images"][i]

    def label(self, i: int) -> np.ndarray:
        """Train ids uint8 (H, W), 255 = ignore."""
        return self.h5["labels"][i]

    def masks(self, i: int) -> np.ndarray | None:
        """Instance id map uint16 (H, W), 0 = none; None when the file has no masks."""
        return self.h5["masks"][i] if self.has_masks else None

    def events(self, i: int) -> PairEvents:
        """The pair's events, sliced by `pairs/event_idx0:event_idx1`."""
        a, b = int(self.pairs["event_idx0"][i]), int(self.pairs["event_idx1"][i])
        ev = self.h5["events"]
        if b < a or b > ev["t"].shape[0]:
            raise RPEAFormatError(f"{self.path}: pair {i} has a bad event slice [{a}, {b})")
        t = ev["t"][a:b].astype(np.int64) + self.t_offset_us
        return PairEvents(ev["x"][a:b], ev["y"][a:b], t, ev["p"][a:b],
                          int(self.pairs["event_t0_us"][i]), int(self.pairs["event_t1_us"][i]))

    def representation(self, i: int, kind: str = "frame", bins: int = 5,
                       shift_xy: tuple[int, int] = (0, 0), normalize: bool = True) -> np.ndarray:
        """Event representation (C, H, W) float32 of pair i; `shift_xy` moves events by pixels."""
        e = self.events(i)
        x = e.x.astype(np.int64) + shift_xy[0]
        y = e.y.astype(np.int64) + shift_xy[1]
        shape = (self.height, self.width)
        if kind == "frame":
            rep = event_frame(x, y, e.t_us, e.p, shape, e.t0_us, e.t1_us)
            return normalize_event_frame(rep) if normalize else rep
        if kind == "voxel":
            rep = voxel_grid(x, y, e.t_us, e.p, shape, bins, e.t0_us, e.t1_us)
            return normalize_voxel_grid(rep) if normalize else rep
        raise ValueError(f"unknown event representation {kind!r} (use 'frame' or 'voxel')")


def split_files(root: str | Path, split: str) -> list[Path]:
    """Sequence files of `<root>/<split>/`, in index.json order when the index exists."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: split folder not found")
    index = folder / "index.json"
    if index.is_file():
        try:
            seqs = json.loads(index.read_text())["sequences"]
        except (ValueError, KeyError) as err:
            raise RPEAFormatError(f"{index}: bad index.json: {err}") from err
        files = [folder / s["file"] for s in seqs]
    else:
        files = sorted(folder.glob("*.h5"))
    if not files:
        raise FileNotFoundError(f"{folder}: no RPEA sequence files")
    return files


def event_channels(representation: str, bins: int = 5) -> int:
    """Channel count of a representation, for building the event encoder."""
    return 3 if representation == "frame" else int(bins)


class RPEADataset:
    """Pairs of one split as dicts of torch tensors.

    Each sample: `image` uint8 (3, h, w), `events` float32 (C, h, w), `label` int64 (h, w) with
    255 = ignore, `masks` int64 (h, w) when the file has masks, `is_night` int, `index` int.
    `crop_hw` takes a random crop (padded with ignore where the image is smaller), `hflip` a
    random horizontal flip, both shared by every array. `misalign_px` shifts the events by that
    many pixels in a random direction (fixed per sample and seed: Table 4 of the paper).
    `transform(sample_numpy) -> sample_numpy` runs last, in the worker, on numpy arrays with
    `image` as (h, w, 3) uint8, before conversion to tensors.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        representation: str = "frame",
        bins: int = 5,
        crop_hw: tuple[int, int] | None = None,
        hflip: bool = False,
        labelled_only: bool = True,
        misalign_px: float = 0.0,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        if representation not in ("frame", "voxel"):
            raise ValueError(f"unknown event representation {representation!r}")
        self.sequences = [RPEASequence(f) for f in split_files(root, split)]
        self.representation, self.bins = representation, bins
        self.crop_hw, self.hflip = crop_hw, hflip
        self.misalign_px, self.transform, self.seed = misalign_px, transform, seed
        self.epoch = 0
        self.items: list[tuple[int, int]] = []
        for s, seq in enumerate(self.sequences):
            for i in range(seq.num_pairs):
                if not labelled_only or seq.pairs["has_label"][i]:
                    self.items.append((s, i))

    @property
    def event_channels(self) -> int:
        return event_channels(self.representation, self.bins)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call once per epoch; deterministic for resume)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def shift_for(self, idx: int) -> tuple[int, int]:
        """The misalignment offset (dx, dy) for sample idx: |(dx, dy)| ~ misalign_px."""
        if self.misalign_px <= 0:
            return (0, 0)
        rng = np.random.default_rng([self.seed, 7919, idx])
        angle = rng.uniform(0, 2 * math.pi)
        return (int(round(self.misalign_px * math.cos(angle))),
                int(round(self.misalign_px * math.sin(angle))))

    def sample_numpy(self, idx: int) -> dict[str, Any]:
        """The augmented sample as numpy arrays (image (h, w, 3) uint8)."""
        s, i = self.items[idx]
        seq = self.sequences[s]
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        image = seq.image(i)
        label = seq.label(i).astype(np.int64)
        events = seq.representation(i, self.representation, self.bins, self.shift_for(idx))
        masks = seq.masks(i)
        arrays: dict[str, np.ndarray] = {"image": image, "label": label,
                                         "events": np.moveaxis(events, 0, -1)}
        if masks is not None:
            arrays["masks"] = masks.astype(np.int64)
        if self.crop_hw is not None:
            arrays = _random_crop(arrays, self.crop_hw, rng)
        if self.hflip and rng.random() < 0.5:
            arrays = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in arrays.items()}
        arrays["events"] = np.ascontiguousarray(np.moveaxis(arrays["events"], -1, 0))
        arrays["is_night"] = int(seq.is_night(i))
        arrays["index"] = idx
        if self.transform is not None:
            arrays = self.transform(arrays)
        return arrays

    def __getitem__(self, idx: int) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {}
        for k, v in self.sample_numpy(idx).items():
            if isinstance(v, np.ndarray):
                if k == "image":
                    v = np.ascontiguousarray(v.transpose(2, 0, 1))
                out[k] = torch.from_numpy(np.ascontiguousarray(v))
            else:
                out[k] = v
        return out


_PAD = {"image": 0, "label": 255, "events": 0, "masks": 0}


def _random_crop(arrays: dict[str, np.ndarray], crop_hw: tuple[int, int],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Same random window for every (H, W, ...) array; pad (label: 255) if the crop is larger."""
    ch, cw = crop_hw
    h, w = arrays["image"].shape[:2]
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        arrays = {k: np.pad(v, [(0, ph), (0, pw)] + [(0, 0)] * (v.ndim - 2),
                            constant_values=_PAD.get(k, 0)) for k, v in arrays.items()}
        h, w = h + ph, w + pw
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    return {k: v[y0:y0 + ch, x0:x0 + cw] for k, v in arrays.items()}
