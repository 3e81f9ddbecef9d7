"""The RPEA HDF5 format (docs/rpea-format.md): schema constants and the atomic sequence writer.

`SequenceWriter` writes one `<sequence>.h5` into a temporary file beside the target and renames
it over the target only on `commit()`, so a crash never leaves a half-written sequence that looks
finished. Events are appended in streaming fashion (one decoded chunk at a time) and `ms_to_idx`
is built on the way, so memory stays bounded whatever the recording length. Validation lives in
`dataset.rpea_check`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from rig import __version__

SCHEMA_VERSION = "1.0"
TIMES_OF_DAY = ("day", "night", "dusk", "tunnel")
NUM_CLASSES = 19
IGNORE = 255
#: Event datasets are chunked by this many events (a pair window touches one or two chunks).
EVENT_CHUNK = 1 << 15
BLOSC_FILTER_ID = 32001

#: Per-pair datasets under `pairs/` and their dtypes.
PAIR_FIELDS: dict[str, type] = {
    "frame_id": np.int64,
    "frame_t_us": np.int64,
    "exposure_t0_us": np.int64,
    "exposure_t1_us": np.int64,
    "event_t0_us": np.int64,
    "event_t1_us": np.int64,
    "event_idx0": np.int64,
    "event_idx1": np.int64,
    "has_label": np.uint8,
    "overexposed_frac": np.float32,
    "underexposed_frac": np.float32,
    "is_night": np.uint8,
}
#: Extra per-pair provenance the builder adds (allowed by the format, not required).
PAIR_EXTRA_FIELDS: dict[str, type] = {"pulse_index": np.int64, "frame_index": np.int64}
ROOT_ATTRS = ("schema_version", "tool_version", "sequence", "scene", "time_of_day", "split",
              "source_session", "height", "width", "num_pairs")
EVENT_FIELDS: dict[str, type] = {"x": np.uint16, "y": np.uint16, "t": np.uint32, "p": np.uint8}


def compression() -> dict[str, Any]:
    """Blosc-zstd with bitshuffle, as DSEC (h5py dataset keyword arguments)."""
    return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside `path` and rename over it (readers never see half a file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


class SequenceWriter:
    """Writes one RPEA sequence file atomically (temp file + rename on `commit`).

    Order of use: `append_events` (any number of times, time-sorted chunks) -> `finish_events` ->
    `event_index` (window bounds -> slice indices) -> `create_pairs(n)` -> `write_image` /
    `write_label` / `write_mask` per pair -> `write_pairs` -> `commit(attrs)` (or `abort`).
    """

    def __init__(self, path: str | os.PathLike[str], height: int, width: int) -> None:
        self.path = Path(path)
        self.height, self.width = int(height), int(width)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".h5.tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp_path = Path(tmp)
        self.h5 = h5py.File(self.tmp_path, "w")
        ev = self.h5.create_group("events")
        self._ev = {name: ev.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                            chunks=(EVENT_CHUNK,), **compression())
                    for name, dtype in EVENT_FIELDS.items()}
        self.num_events = 0
        self.t_offset_us: int | None = None
        self._last_t = -1  # relative, last event appended
        self._ms: list[np.ndarray] = []
        self._next_ms = 0
        self.events_reordered = 0  # events whose time went back across chunks (clamped)
        self._events_done = False
        self.images: h5py.Dataset | None = None
        self.labels: h5py.Dataset | None = None
        self.masks: h5py.Dataset | None = None
        self.num_pairs = 0

    # -- events -------------------------------------------------------------------------------
    def append_events(self, x: np.ndarray, y: np.ndarray, t_us: np.ndarray, p: np.ndarray) -> None:
        """Append events already on the output grid; `t_us` absolute (event-camera clock)."""
        if self._events_done:
            raise RuntimeError(f"{self.path}: events already finished")
        n = int(t_us.size)
        if n == 0:
            return
        t_abs = np.asarray(t_us, np.int64)
        if np.any(np.diff(t_abs) < 0):  # decoders keep stream order; EVT3 may step back slightly
            order = np.argsort(t_abs, kind="stable")
            x, y, t_abs, p = x[order], y[order], t_abs[order], p[order]
        if self.t_offset_us is None:
            self.t_offset_us = int(t_abs[0])
        t_rel = t_abs - self.t_offset_us
        back = t_rel < self._last_t
        if back.any():
            self.events_reordered += int(back.sum())
            t_rel = np.maximum(t_rel, self._last_t)
        if t_rel[-1] >= 1 << 32:
            raise ValueError(f"{self.path}: recording longer than 71 minutes does not fit uint32 t")
        a = self.num_events
        for name, arr in (("x", x), ("y", y), ("t", t_rel), ("p", p)):
            ds = self._ev[name]
            ds.resize(a + n, axis=0)
            ds[a:a + n] = np.asarray(arr).astype(EVENT_FIELDS[name], copy=False)
        last_ms = int(t_rel[-1]) // 1000
        if last_ms >= self._next_ms:
            bounds = np.arange(self._next_ms, last_ms + 1, dtype=np.int64) * 1000
            self._ms.append(a + np.searchsorted(t_rel, bounds, side="left"))
            self._next_ms = last_ms + 1
        self._last_t = int(t_rel[-1])
        self.num_events = a + n

    def finish_events(self) -> None:
        """Write `t_offset` and `ms_to_idx` (one entry past the last event's millisecond)."""
        if self._events_done:
            return
        self._ms.append(np.array([self.num_events], np.int64))
        ms = np.concatenate(self._ms).astype(np.uint64)
        ev = self.h5["events"]
        ev.create_dataset("ms_to_idx", data=ms, **compression())
        ev.create_dataset("t_offset", data=np.int64(self.t_offset_us or 0))
        self._ms_to_idx = ms.astype(np.int64)
        self._events_done = True

    def event_index(self, t_abs_us: np.ndarray) -> np.ndarray:
        """Index of the first event with t >= each absolute time (the slice bound of a window)."""
        if not self._events_done:
            raise RuntimeError("finish_events() first")
        t_abs_us = np.asarray(t_abs_us, np.int64)
        out = np.empty(t_abs_us.size, np.int64)
        off = self.t_offset_us or 0
        ms = self._ms_to_idx
        tds = self._ev["t"]
        for i, ta in enumerate(t_abs_us):
            rel = int(ta) - off
            if rel <= 0:
                out[i] = 0
                continue
            m = rel // 1000
            if m >= ms.size - 1:
                out[i] = self.num_events
                continue
            a, b = int(ms[m]), int(ms[m + 1])  # every event in [1000 m, 1000 (m+1)) lies here
            out[i] = a + int(np.searchsorted(tds[a:b], rel, side="left")) if b > a else a
        return out

    # -- pairs --------------------------------------------------------------------------------
    def create_pairs(self, n: int, with_masks: bool = False) -> None:
        self.num_pairs = int(n)
        self.images, self.labels, self.masks = create_pair_datasets(
            self.h5, n, self.height, self.width, with_masks)

    def copy_pairs_from(self, src: h5py.File, row0: int = 0) -> None:
        """Take `images`, `labels`, `masks` of another file with the same layout into rows
        `row0...`, chunk by chunk, without recompressing (image worker processes wrote them)."""
        for name, dst in (("images", self.images), ("labels", self.labels), ("masks", self.masks)):
            if dst is None:
                continue
            ds = src[name]
            if (ds.shape[1:] != dst.shape[1:] or row0 + ds.shape[0] > dst.shape[0]
                    or ds.chunks != dst.chunks or ds.dtype != dst.dtype):
                raise ValueError(f"{src.filename}: {name} {ds.shape} {ds.chunks} does not fit "
                                 f"{dst.shape} {dst.chunks} at row {row0}")
            tail = (0,) * (ds.ndim - 1)
            for i in range(ds.shape[0]):
                info = ds.id.get_chunk_info_by_coord((i, *tail))
                if info.byte_offset is None:  # never written: reads as the fill value
                    continue
                mask, data = ds.id.read_direct_chunk((i, *tail))
                dst.id.write_direct_chunk((row0 + i, *tail), data, mask)

    def write_image(self, i: int, rgb: np.ndarray) -> None:
        self.images[i] = rgb

    def write_label(self, i: int, label: np.ndarray) -> None:
        self.labels[i] = label

    def write_mask(self, i: int, mask: np.ndarray) -> None:
        if self.masks is None:
            raise RuntimeError("create_pairs(with_masks=True) first")
        self.masks[i] = mask

    def write_pairs(self, pairs: dict[str, np.ndarray]) -> None:
        g = self.h5.require_group("pairs")
        fields = {**PAIR_FIELDS, **PAIR_EXTRA_FIELDS}
        missing = set(PAIR_FIELDS) - set(pairs)
        if missing:
            raise ValueError(f"pairs/ is missing {sorted(missing)}")
        for name, arr in pairs.items():
            arr = np.asarray(arr)
            if arr.shape != (self.num_pairs,):
                raise ValueError(f"pairs/{name}: shape {arr.shape}, expected ({self.num_pairs},)")
            g.create_dataset(name, data=arr.astype(fields.get(name, arr.dtype)))

    def write_calib(self, yaml_text: str) -> None:
        self.h5.require_group("calib").attrs["yaml"] = yaml_text

    def write_extra(self, name: str, text: str) -> None:
        """Free-form provenance (e.g. the sync report) as a string dataset under `build/`."""
        g = self.h5.require_group("build")
        g.create_dataset(name, data=text, dtype=h5py.string_dtype())

    # -- finish -------------------------------------------------------------------------------
    def commit(self, attrs: dict[str, Any]) -> str:
        """Write root attributes, close, rename over the target; returns the file's sha256."""
        self.finish_events()
        base = {"schema_version": SCHEMA_VERSION, "tool_version": __version__,
                "height": self.height, "width": self.width, "num_pairs": self.num_pairs}
        for k, v in {**base, **attrs}.items():
            self.h5.attrs[k] = v
        self.h5.flush()
        self.h5.close()
        with open(self.tmp_path, "rb") as f:
            os.fsync(f.fileno())
        digest = sha256_file(self.tmp_path)
        os.replace(self.tmp_path, self.path)
        return digest

    def abort(self) -> None:
        try:
            if self.h5.id.valid:
                self.h5.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> SequenceWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is not None or self.tmp_path.exists():
            self.abort()


def create_pair_datasets(h5: h5py.File, n: int, height: int, width: int, with_masks: bool
                         ) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset | None]:
    """`images`, `labels` (fill 255) and optionally `masks`: one compressed chunk per pair."""
    h, w = int(height), int(width)
    images = h5.create_dataset("images", shape=(n, h, w, 3), maxshape=(None, h, w, 3),
                               dtype=np.uint8, chunks=(1, h, w, 3), **compression())
    labels = h5.create_dataset("labels", shape=(n, h, w), maxshape=(None, h, w), dtype=np.uint8,
                               chunks=(1, h, w), fillvalue=IGNORE, **compression())
    masks = None
    if with_masks:
        masks = h5.create_dataset("masks", shape=(n, h, w), maxshape=(None, h, w), dtype=np.uint16,
                                  chunks=(1, h, w), **compression())
    return images, labels, masks


# -- index.json --------------------------------------------------------------------------------


def read_index(split_dir: Path) -> dict[str, Any]:
    path = Path(split_dir) / "index.json"
    if not path.is_file():
        return {"schema_version": SCHEMA_VERSION, "split": Path(split_dir).name, "sequences": []}
    try:
        data = json.loads(path.read_text())
        data["sequences"]  # noqa: B018 - the key must exist
    except (ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a valid RPEA index.json ({err})") from None
    return data


def update_index(split_dir: Path, entry: dict[str, Any]) -> None:
    """Insert or replace one sequence entry (by name), sorted by name, atomically."""
    split_dir = Path(split_dir)
    index = read_index(split_dir)
    seqs = [s for s in index["sequences"] if s.get("name") != entry["name"]]
    seqs.append(entry)
    seqs.sort(key=lambda s: s["name"])
    index.update({"schema_version": SCHEMA_VERSION, "split": split_dir.name, "sequences": seqs})
    write_json_atomic(split_dir / "index.json", index)
