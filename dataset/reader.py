"""Read RPEA sequence files (docs/rpea-format.md) and serve training samples.

`RPEASequence` is a numpy reader of one `<sequence>.h5`; `RPEADataset` is the torch Dataset over
a split. HDF5 handles are opened lazily and per process (a handle opened before a DataLoader fork
is never reused in the worker), so the dataset is safe with `num_workers > 0`. Crop and flip are
applied identically to image, events, label and masks; the event representation is computed from
the stored events at read time, so a new representation never needs a rebuild.

Speed (issue #6): a training sample chooses its crop window first and cuts every array to it
before any conversion, padding or flip, so only crop-sized arrays are converted, padded and
copied. The event representation is accumulated on the full grid (cheap, and it is what the
per-sample normalisation statistics are defined on), its statistics are taken in one numba pass,
and the scaling is applied to the crop only; the values equal "full frame, normalised, then
cropped" (tests/test_reader_fast.py checks this against that reference).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter used by RPEA files)
import numpy as np

from dataset.representations import (
    apply_event_frame_scale,
    apply_voxel_grid_stats,
    event_frame_with_scale,
    splat_density,
    voxel_grid,
    voxel_grid_stats,
)
from dataset.rpea_format import (
    READABLE_SCHEMAS,
    SAMPLE_DATASETS,
    grid_positions,
    nearest_grid_pixels,
    rectify_map_of,
    schema_of,
    t_offset_of,
)


class RPEAFormatError(ValueError):
    """A file does not follow the RPEA layout; the message names the file and the problem."""


def open_sequence_file(path: str | os.PathLike[str]) -> h5py.File:
    """An RPEA sequence file opened for reading; RPEAFormatError naming it when it is not HDF5
    (a text file, a truncated copy) or cannot be read."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise RPEAFormatError(f"{path}: cannot open as HDF5: {err}") from err


@dataclass
class PairEvents:
    """Events of one pair's window; `t_us` is absolute on the event-camera clock.

    `x`, `y` are continuous positions on the aligned image grid (float32: the stored sensor
    pixels through the file's `rectify_map`); `x_sensor`, `y_sensor` the stored pixels.
    """

    x: np.ndarray
    y: np.ndarray
    t_us: np.ndarray
    p: np.ndarray
    t0_us: int
    t1_us: int
    x_sensor: np.ndarray | None = None
    y_sensor: np.ndarray | None = None


class RPEASequence:
    """One RPEA sequence file, opened lazily (and re-opened after a fork)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: RPEA sequence file not found")
        self._h5: h5py.File | None = None
        self._pid = -1
        self._ds: dict[str, h5py.Dataset] = {}
        f = self.h5
        missing = [k for k in SAMPLE_DATASETS if k not in f]
        if missing:
            raise RPEAFormatError(f"{self.path}: not an RPEA file, missing {', '.join(missing)}")
        n, h, w = f["images"].shape[:3]
        if f["images"].shape[3:] != (3,) or f["labels"].shape != (n, h, w):
            raise RPEAFormatError(
                f"{self.path}: images {f['images'].shape} / labels {f['labels'].shape} disagree")
        self.num_pairs, self.height, self.width = int(n), int(h), int(w)
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        self.schema_version = schema_of(f)
        if self.schema_version not in READABLE_SCHEMAS:
            raise RPEAFormatError(f"{self.path}: RPEA schema {self.schema_version} is not one this "
                                  f"version reads ({', '.join(READABLE_SCHEMAS)}); update the toolkit")
        self.t_offset_us = t_offset_of(f)
        self._rectify_map: np.ndarray | None = None
        self._rectify_loaded = False
        self._density: np.ndarray | None = None
        self.has_masks = "masks" in f
        pairs = f["pairs"]
        self.pairs = {k: pairs[k][()] for k in pairs.keys()}
        if "has_label" not in self.pairs:
            self.pairs["has_label"] = np.ones(n, np.uint8)

    @property
    def h5(self) -> h5py.File:
        """The process-local open handle."""
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = open_sequence_file(self.path)
            self._pid = os.getpid()
            self._ds = {}
        return self._h5

    def _dataset(self, name: str) -> h5py.Dataset:
        """A cached dataset object of the process-local handle (lookups cost ~50 us each)."""
        f = self.h5
        ds = self._ds.get(name)
        if ds is None:
            ds = self._ds[name] = f[name]
        return ds

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._ds = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"], state["_ds"] = None, -1, {}
        state["_rectify_map"], state["_rectify_loaded"] = None, False  # re-read by the worker
        state["_density"] = None
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
        return self._dataset("images")[i]

    def label(self, i: int) -> np.ndarray:
        """Train ids uint8 (H, W), 255 = ignore."""
        return self._dataset("labels")[i]

    def masks(self, i: int) -> np.ndarray | None:
        """Instance id map uint16 (H, W), 0 = none; None when the file has no masks."""
        return self._dataset("masks")[i] if self.has_masks else None

    @property
    def rectify_map(self) -> np.ndarray | None:
        """The file's sensor-pixel -> grid map (None for schema 1.0: x/y stored on the grid)."""
        if not self._rectify_loaded:
            self._rectify_map = rectify_map_of(self.h5)
            self._rectify_loaded = True
        return self._rectify_map

    @property
    def density(self) -> np.ndarray | None:
        """The sub-pixel splat's divisor on this file's grid (`splat_density` of every sensor
        pixel's grid position), None for schema 1.0 files (events stored on grid pixels)."""
        if self._density is None and self.rectify_map is not None:
            self._density = splat_density(self.rectify_map.reshape(-1, 2), (self.height, self.width))
        return self._density

    def events(self, i: int) -> PairEvents:
        """The pair's events, sliced by `pairs/event_idx0:event_idx1`, placed on the grid."""
        a, b = int(self.pairs["event_idx0"][i]), int(self.pairs["event_idx1"][i])
        t_ds = self._dataset("events/t")
        if b < a or b > t_ds.shape[0]:
            raise RPEAFormatError(f"{self.path}: pair {i} has a bad event slice [{a}, {b})")
        t = t_ds[a:b].astype(np.int64) + self.t_offset_us
        xs, ys = self._dataset("events/x")[a:b], self._dataset("events/y")[a:b]
        try:
            xg, yg = grid_positions(self.rectify_map, xs, ys)
        except ValueError as err:
            raise RPEAFormatError(f"{self.path}: pair {i}: {err}") from None
        return PairEvents(xg, yg, t, self._dataset("events/p")[a:b],
                          int(self.pairs["event_t0_us"][i]), int(self.pairs["event_t1_us"][i]),
                          xs, ys)

    def representation(self, i: int, kind: str = "frame", bins: int = 5,
                       shift_xy: tuple[int, int] = (0, 0), normalize: bool = True) -> np.ndarray:
        """Event representation (C, H, W) float32 of pair i; `shift_xy` moves events by pixels."""
        return self.representation_window(i, kind, bins, shift_xy, normalize=normalize)

    def representation_window(
        self, i: int, kind: str = "frame", bins: int = 5, shift_xy: tuple[int, int] = (0, 0),
        window: tuple[int, int, int, int] | None = None, flip: bool = False,
        normalize: bool = True,
    ) -> np.ndarray:
        """The representation cut to `window` = (y0, x0, h, w) (zeros beyond the grid), mirrored
        left-right when `flip`: equal to `representation(...)[:, y0:y0+h, x0:x0+w]` padded and
        flipped, but only the window is scaled and copied."""
        if kind not in ("frame", "voxel"):
            raise ValueError(f"unknown event representation {kind!r} (use 'frame' or 'voxel')")
        e = self.events(i)
        density = self.density
        x: np.ndarray
        y: np.ndarray
        if density is None:  # schema 1.0: events stored on grid pixels
            x, y, _ = nearest_grid_pixels(e.x, e.y, self.height, self.width)
        else:  # sensor pixels through the rectify map: splatted sub-pixel
            x, y = e.x.astype(np.float64), e.y.astype(np.float64)
        if shift_xy[0]:
            x = x + shift_xy[0]
        if shift_xy[1]:
            y = y + shift_xy[1]
        shape = (self.height, self.width)
        frame_scale: float = 0.0
        voxel_stats: tuple[float, float] | None = None
        if kind == "frame":
            full, frame_scale = event_frame_with_scale(x, y, e.t_us, e.p, shape, e.t0_us, e.t1_us,
                                                       density=density)
        else:
            full = voxel_grid(x, y, e.t_us, e.p, shape, bins, e.t0_us, e.t1_us, density=density)
            voxel_stats = voxel_grid_stats(full) if normalize else None
        y0, x0, ch, cw = window if window is not None else (0, 0, self.height, self.width)
        rep = crop_window(full, 1, y0, x0, ch, cw, 0, flip)
        if normalize:
            if kind == "frame":
                apply_event_frame_scale(rep, frame_scale)
            else:
                apply_voxel_grid_stats(rep, voxel_stats)
        return rep


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


def has_split(root: str | Path, split: str) -> bool:
    """Whether `<root>/<split>/` holds sequence files (a split that training can use)."""
    try:
        return bool(split_files(root, split))
    except (FileNotFoundError, RPEAFormatError):
        return False


def event_channels(representation: str, bins: int = 5) -> int:
    """Channel count of a representation, for building the event encoder."""
    return 3 if representation == "frame" else int(bins)


if TYPE_CHECKING:  # a map-style torch Dataset, without importing torch to read a file
    from torch.utils.data import Dataset

    _DatasetBase = Dataset[dict[str, Any]]
else:
    _DatasetBase = object


class RPEADataset(_DatasetBase):
    """Pairs of one split as dicts of torch tensors.

    Each sample: `image` uint8 (3, h, w), `events` float32 (C, h, w), `label` int64 (h, w) with
    255 = ignore, `masks` int64 (h, w) when the file has masks, `is_night` int, `index` int.
    `short_side` works at a lower resolution: every pair is shrunk (never enlarged) so that its
    shorter side has that many pixels (image and events by area, labels and masks by nearest), so
    a crop sees as much of the scene on a full-size recording as on a small one; with
    `full_label` the label stays at the grid's resolution (evaluation: the metric is counted on
    the original pixels, the logits are upsampled to them).
    `crop_hw` takes a random crop (padded with ignore where the image is smaller), `hflip` a
    random horizontal flip, both shared by every array. `misalign_px` shifts the events by that
    many pixels in a random direction (fixed per sample and seed: Table 4 of the paper).
    `transform(sample_numpy) -> sample_numpy` runs last, in the worker, on numpy arrays with
    `image` as (h, w, 3) uint8, before conversion to tensors.

    Two opt-in switches for DataLoader throughput (defaults keep the behaviour above):
    `with_masks=False` never reads masks; `compact=True` keeps `label` uint8 and `masks` uint16
    (the file's dtypes), so ~45% fewer bytes cross the worker boundary (which costs ~1 ms of CPU
    per MB on a 2-core machine); call `widen_batch(batch)` in the main process (or after moving
    the batch to the GPU) to get the int64 tensors back.
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
        with_masks: bool = True,
        compact: bool = False,
        short_side: int | None = None,
        full_label: bool = False,
    ) -> None:
        if representation not in ("frame", "voxel"):
            raise ValueError(f"unknown event representation {representation!r}")
        self.sequences = [RPEASequence(f) for f in split_files(root, split)]
        self.representation, self.bins = representation, bins
        self.crop_hw, self.hflip = crop_hw, hflip
        self.misalign_px, self.transform, self.seed = misalign_px, transform, seed
        self.with_masks, self.compact = with_masks, compact
        self.short_side, self.full_label = short_side, full_label
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

    def scale_of(self, s: int) -> float:
        """Working resolution / grid resolution of sequence s (1: the grid itself)."""
        seq = self.sequences[s]
        return working_scale(seq.height, seq.width, self.short_side)

    def working_size(self, s: int) -> tuple[int, int]:
        """(h, w) of sequence s's pairs at the working resolution."""
        seq, k = self.sequences[s], self.scale_of(s)
        return max(1, round(seq.height * k)), max(1, round(seq.width * k))

    def crop_and_flip(self, idx: int) -> tuple[tuple[int, int, int, int], bool]:
        """The sample's window (y0, x0, h, w) at the working resolution (it may reach past the
        picture, which is then padded) and whether it is mirrored; deterministic per (seed,
        epoch, index)."""
        s, _ = self.items[idx]
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        h, w = self.working_size(s)
        if self.crop_hw is not None:
            ch, cw = int(self.crop_hw[0]), int(self.crop_hw[1])
            y0 = int(rng.integers(0, max(h, ch) - ch + 1))
            x0 = int(rng.integers(0, max(w, cw) - cw + 1))
        else:
            y0, x0, ch, cw = 0, 0, h, w
        flip = bool(self.hflip and rng.random() < 0.5)
        return (y0, x0, ch, cw), flip

    def sample_numpy(self, idx: int) -> dict[str, Any]:
        """The augmented sample as numpy arrays (image (h, w, 3) uint8)."""
        s, i = self.items[idx]
        seq = self.sequences[s]
        (y0, x0, ch, cw), flip = self.crop_and_flip(idx)
        k = self.scale_of(s)
        if k < 1.0:  # the window on the grid, shrunk to (ch, cw) below
            full = (int(y0 / k), int(x0 / k), max(1, round(ch / k)), max(1, round(cw / k)))
        else:
            full = (y0, x0, ch, cw)
        image = crop_window(seq.image(i), 0, *full, _PAD["image"], flip)
        label_full = seq.label(i)
        label = crop_window(label_full, 0, *full, _PAD["label"], flip)
        events = seq.representation_window(i, self.representation, self.bins,
                                           self.shift_for(idx), full, flip)
        masks = seq.masks(i) if self.with_masks else None
        if masks is not None:
            masks = crop_window(masks, 0, *full, _PAD["masks"], flip)
        if k < 1.0:
            image = cv2.resize(image, (cw, ch), interpolation=cv2.INTER_AREA)
            events = shrink_channels(events, ch, cw)
            if not self.full_label:
                label = cv2.resize(label, (cw, ch), interpolation=cv2.INTER_NEAREST)
            if masks is not None:
                masks = cv2.resize(masks, (cw, ch), interpolation=cv2.INTER_NEAREST)
        arrays: dict[str, Any] = {"image": image,
                                  "label": label if self.compact else label.astype(np.int64),
                                  "events": events}
        if masks is not None:
            arrays["masks"] = masks if self.compact else masks.astype(np.int64)
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


def working_scale(height: int, width: int, short_side: int | None) -> float:
    """Working resolution / grid resolution for a grid of `height` x `width`: the shorter side
    brought to `short_side`, never enlarged (1 without a short side)."""
    if not short_side:
        return 1.0
    return min(1.0, float(short_side) / min(height, width))


def to_working_resolution(image: np.ndarray, events: np.ndarray, short_side: int | None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """A whole pair (image (H, W, 3) uint8, events (C, H, W) float32) as `RPEADataset` with
    `short_side` serves it: shrunk by area, unchanged when the grid is already that small."""
    h, w = image.shape[:2]
    k = working_scale(h, w, short_side)
    if k >= 1.0:
        return image, events
    hh, ww = max(1, round(h * k)), max(1, round(w * k))
    return (cv2.resize(image, (ww, hh), interpolation=cv2.INTER_AREA),
            shrink_channels(events, hh, ww))


def shrink_channels(rep: np.ndarray, h: int, w: int) -> np.ndarray:
    """A (C, H, W) float32 representation shrunk to (C, h, w) by area: each output pixel holds
    the mean of the grid pixels it covers."""
    out = np.empty((rep.shape[0], h, w), np.float32)
    for c in range(rep.shape[0]):
        out[c] = cv2.resize(rep[c], (w, h), interpolation=cv2.INTER_AREA)
    return out


def widen_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """`label` and `masks` of a (batched) sample from `RPEADataset(compact=True)` as int64
    tensors, in place; a no-op on int64 ones. Run it where conversion is cheap (main process or
    after `.to(device)`), not in a worker."""
    import torch

    for k in ("label", "masks"):
        v = batch.get(k)
        if isinstance(v, torch.Tensor) and v.dtype != torch.int64:
            batch[k] = v.long()
    return batch


_CV2_FLIP_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16),
                    np.dtype(np.float32), np.dtype(np.float64))
_PAD = {"image": 0, "label": 255, "events": 0, "masks": 0}


def crop_window(a: np.ndarray, axis: int, y0: int, x0: int, h: int, w: int, fill: float,
                flip: bool) -> np.ndarray:
    """The (h, w) window at (y0, x0) of `a`'s axes (axis, axis + 1), padded with `fill` where it
    reaches past the array, then mirrored left-right when `flip`; C-contiguous.

    One copy of window size: the pad and the flip are written into the output directly, instead
    of padding the full array and copying it again to flip. The result never shares memory with
    `a` unless the window is all of `a`, unflipped.
    """
    full_h, full_w = a.shape[axis], a.shape[axis + 1]
    if y0 < 0 or x0 < 0 or h <= 0 or w <= 0:
        raise ValueError(f"bad crop window y0={y0} x0={x0} h={h} w={w}")
    hh, ww = max(min(full_h - y0, h), 0), max(min(full_w - x0, w), 0)
    lead = (slice(None),) * axis
    src = a[lead + (slice(y0, y0 + hh), slice(x0, x0 + ww))]
    if flip:
        if axis == 0 and a.ndim <= 3 and a.dtype in _CV2_FLIP_DTYPES and hh and ww:
            src = cv2.flip(src, 1)  # numpy's mirrored copy of (h, w, 3) uint8 is ~40x slower
            if src.ndim < a.ndim:  # OpenCV drops a trailing channel axis of 1
                src = src.reshape(hh, ww, *a.shape[2:])
        else:
            src = src[lead + (slice(None), slice(None, None, -1))]
    if hh == h and ww == w:
        if (hh, ww) == (full_h, full_w) and not flip:
            return np.ascontiguousarray(a)
        # a copy, never a view: a view would keep (and ship to the main process) the full array
        return np.array(src, order="C", copy=not flip or src.base is not None)
    out = np.full(a.shape[:axis] + (h, w) + a.shape[axis + 2:], fill, a.dtype)
    cols = slice(w - ww, w) if flip else slice(0, ww)
    out[lead + (slice(0, hh), cols)] = src
    return out
