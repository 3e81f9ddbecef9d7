"""The RPEA HDF5 format (docs/rpea-format.md): the schema, and the one writer of its files.

Everything that writes or checks an RPEA sequence file or a split's index.json goes through this
module: the layout constants (dataset names, dtypes, required datasets, pair fields, root
attributes, chunking; the compression is DSEC's, `dataset.events.compression`), `SequenceWriter`
for whole files, `edit_sequence` / `replace_masks` for changing a published file, and the
index.json functions. `SequenceWriter` writes one `<sequence>.h5` into a temporary file beside the
target and publishes it only on `commit()`, so a crash never leaves a half-written sequence that
looks finished. Events are appended in streaming fashion (one decoded chunk at a time) through
the DSEC event writer, which builds `ms_to_idx` on the way, so memory stays bounded whatever the
recording length. Validation lives in `dataset.rpea_check`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from common.atomic import atomic_path, write_json_atomic
from common.h5publish import PendingH5File
from dataset.events import EVENT_FIELDS, DsecWriter, apply_rectify_map, compression, first_index_at
from rig import __version__
from rig.evt.dsec import MS_TO_IDX, RECTIFY_MAP, T_OFFSET, find_event_index

SCHEMA_VERSION = "2.0"
#: Schema versions the reader and checker read (1.0: t_offset/ms_to_idx inside events/, x/y
#: already on the aligned grid; 2.0: DSEC's root layout, sensor x/y plus rectify_map).
READABLE_SCHEMAS = ("1.0", "2.0")
TIMES_OF_DAY = ("day", "night", "dusk", "tunnel")
NUM_CLASSES = 19
IGNORE = 255
#: Event datasets are chunked by this many events (a pair window touches one or two chunks).
EVENT_CHUNK = 1 << 15

# Names of the groups and the per-pair arrays, and the arrays' dtypes.
IMAGES, LABELS, MASKS = "images", "labels", "masks"
EVENTS, PAIRS, CALIB, BUILD = "events", "pairs", "calib", "build"
IMAGE_DTYPE, LABEL_DTYPE, MASK_DTYPE = np.uint8, np.uint8, np.uint16
#: Attribute of `masks` that says where its instance ids came from: `oracle` = ground truth (the
#: simulator's instances, which the builder and the synthetic generator store; a real recording
#: has none), `graph` / `sam` = computed from the images by `cacd masks`. Files written before
#: the attribute existed have none (source unknown).
MASK_SOURCE_ATTR = "source"
ORACLE_MASKS = "oracle"
MASK_SOURCES = (ORACLE_MASKS, "graph", "sam")

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
#: The event datasets (DSEC layout, `rig.evt.dsec`: `t_offset`, `ms_to_idx` and `rectify_map` at
#: the file root, where DSEC's EventSlicer reads them).
EVENT_DATASETS = (*(f"{EVENTS}/{k}" for k in EVENT_FIELDS), T_OFFSET, MS_TO_IDX, RECTIFY_MAP)
#: The same in schema 1.0 files (no rectify map; x/y on the aligned grid).
EVENT_DATASETS_1_0 = (*(f"{EVENTS}/{k}" for k in EVENT_FIELDS), f"{EVENTS}/t_offset",
                      f"{EVENTS}/ms_to_idx")
#: Groups and datasets every sequence file has (the pair fields are listed in PAIR_FIELDS).
REQUIRED_PATHS = (IMAGES, LABELS, PAIRS, CALIB, *EVENT_DATASETS)
#: What a reader needs to serve samples: images, labels, events and each pair's event slice.
SAMPLE_DATASETS = (IMAGES, LABELS, *(f"{EVENTS}/{k}" for k in EVENT_FIELDS),
                   *(f"{PAIRS}/{k}" for k in ("event_idx0", "event_idx1", "event_t0_us", "event_t1_us")))
#: Datasets that must carry the Blosc filter (`rpea check`).
COMPRESSED_DATASETS = (IMAGES, LABELS, f"{EVENTS}/x", f"{EVENTS}/t")
#: HDF5 filter id of that compression (`rpea check` looks for it).
BLOSC_FILTER_ID: int = compression()["compression"]


def schema_of(f: h5py.File) -> str:
    """The file's schema version ("1.0" for files that predate the attribute's meaning)."""
    v = f.attrs.get("schema_version", "1.0")
    return v.decode() if isinstance(v, bytes) else str(v)


def required_paths(schema: str) -> tuple[str, ...]:
    """What a file of `schema` must hold."""
    events = EVENT_DATASETS_1_0 if schema == "1.0" else EVENT_DATASETS
    return (IMAGES, LABELS, PAIRS, CALIB, *events)


def t_offset_of(f: h5py.File) -> int:
    """The events' `t_offset` (us), wherever the file's schema keeps it (0 when absent)."""
    ds = find_event_index(f, T_OFFSET, EVENTS)
    return int(ds[()]) if ds is not None else 0


def ms_index_of(f: h5py.File) -> h5py.Dataset | None:
    """The events' `ms_to_idx` dataset, wherever the file's schema keeps it."""
    return find_event_index(f, MS_TO_IDX, EVENTS)


def rectify_map_of(f: h5py.File) -> np.ndarray | None:
    """The file's rectify map (sensor pixel -> aligned grid), None for 1.0 files (x/y on the grid)."""
    return f[RECTIFY_MAP][()] if RECTIFY_MAP in f else None


def grid_positions(rectify_map: np.ndarray | None, x: np.ndarray, y: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Continuous aligned-grid positions (float32) of stored events: through the rectify map
    (schema 2.0), or the stored x/y themselves (1.0, already on the grid)."""
    if rectify_map is None:
        return np.asarray(x, np.float32), np.asarray(y, np.float32)
    return apply_rectify_map(rectify_map, x, y)


def nearest_grid_pixels(xf: np.ndarray, yf: np.ndarray, height: int, width: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest grid pixel (int64 x, y) of continuous positions and the mask of those inside."""
    xi = np.floor(np.asarray(xf) + np.float32(0.5)).astype(np.int64)
    yi = np.floor(np.asarray(yf) + np.float32(0.5)).astype(np.int64)
    inside = (xi >= 0) & (yi >= 0) & (xi < width) & (yi < height)
    return xi, yi, inside


def identity_rectify_map(height: int, width: int) -> np.ndarray:
    """The map of events that already sit on the grid (synthetic data): pixel (x, y) -> (x, y)."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs, ys], axis=-1)


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


class SequenceWriter:
    """Writes one RPEA sequence file atomically (temp file + rename on `commit`).

    Order of use: `append_events` (any number of times, time-sorted chunks) -> `finish_events` ->
    `event_index` (window bounds -> slice indices) -> `create_pairs(n)` -> `write_image` /
    `write_label` / `write_mask` per pair -> `write_pairs` -> `commit(attrs)` (or `abort`).
    `t_offset_us` defaults to the first event's time.
    """

    def __init__(self, path: str | os.PathLike[str], height: int, width: int, *,
                 t_offset_us: int | None = None) -> None:
        self.path = Path(path)
        self.height, self.width = int(height), int(width)
        self._file = PendingH5File(self.path)
        self.h5 = self._file.h5
        try:
            self._events = DsecWriter(self.h5, t_offset_us=t_offset_us, group=EVENTS,
                                      chunk_events=EVENT_CHUNK, reorder=True, index_end=True)
        except BaseException:
            self._file.abort()
            raise
        self._ms_to_idx: np.ndarray | None = None
        self.images: h5py.Dataset | None = None
        self.labels: h5py.Dataset | None = None
        self.masks: h5py.Dataset | None = None
        self.num_pairs = 0
        self._has_map = False

    # -- events -------------------------------------------------------------------------------
    @property
    def num_events(self) -> int:
        return self._events.count

    @property
    def events_reordered(self) -> int:
        """Events whose time went back across chunks (clamped to the last time written)."""
        return self._events.reordered

    @property
    def t_offset_us(self) -> int | None:
        return self._events.t_offset_us

    def append_events(self, x: np.ndarray, y: np.ndarray, t_us: np.ndarray, p: np.ndarray) -> None:
        """Append events: sensor pixels (mapped to the grid by the rectify map), `t_us` absolute
        (event-camera clock)."""
        if self._ms_to_idx is not None:
            raise RuntimeError(f"{self.path}: events already finished")
        self._events.append_xytp(x, y, t_us, p)

    def finish_events(self) -> None:
        """Write `t_offset` and `ms_to_idx` (one entry past the last event's millisecond)."""
        if self._ms_to_idx is not None:
            return
        self._events.close()
        self._ms_to_idx = self._events.ms_index[()]

    def write_rectify_map(self, rectify_map: np.ndarray) -> None:
        """`/rectify_map` (sensor H, W, 2): each sensor pixel's position on the aligned grid."""
        self._events.write_rectify_map(rectify_map, grid_width=self.width, grid_height=self.height)
        self._has_map = True

    def event_index(self, t_abs_us: np.ndarray) -> np.ndarray:
        """Index of the first event with t >= each absolute time (the slice bound of a window)."""
        if self._ms_to_idx is None:
            raise RuntimeError("finish_events() first")
        t = self._events.group["t"]
        off = self.t_offset_us or 0
        return np.array([first_index_at(t, int(ta) - off, self._ms_to_idx)
                         for ta in np.asarray(t_abs_us, np.int64)], np.int64)

    # -- pairs --------------------------------------------------------------------------------
    def create_pairs(self, n: int, with_masks: bool = False, mask_source: str = ORACLE_MASKS
                     ) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset | None]:
        """The `images`, `labels` (and `masks`) datasets of n pairs, to be filled by row.
        Masks written with the pairs are ground-truth instances (`mask_source` oracle) unless
        the caller says otherwise."""
        self.num_pairs = int(n)
        images, labels, masks = create_pair_datasets(self.h5, n, self.height, self.width, with_masks,
                                                     mask_source)
        self.images, self.labels, self.masks = images, labels, masks
        return images, labels, masks

    def copy_pairs_from(self, src: h5py.File, row0: int = 0) -> None:
        """Take `images`, `labels`, `masks` of another file with the same layout into rows
        `row0...`, chunk by chunk, without recompressing (image worker processes wrote them)."""
        for name, dst in ((IMAGES, self.images), (LABELS, self.labels), (MASKS, self.masks)):
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
        if self.images is None:
            raise RuntimeError("create_pairs() first")
        self.images[i] = rgb

    def write_label(self, i: int, label: np.ndarray) -> None:
        if self.labels is None:
            raise RuntimeError("create_pairs() first")
        self.labels[i] = label

    def write_mask(self, i: int, mask: np.ndarray) -> None:
        if self.masks is None:
            raise RuntimeError("create_pairs(with_masks=True) first")
        self.masks[i] = mask

    def write_pairs(self, pairs: dict[str, np.ndarray]) -> None:
        g = self.h5.require_group(PAIRS)
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
        self.h5.require_group(CALIB).attrs["yaml"] = yaml_text

    def write_extra(self, name: str, text: str) -> None:
        """Free-form provenance (e.g. the sync report) as a string dataset under `build/`."""
        g = self.h5.require_group(BUILD)
        g.create_dataset(name, data=text, dtype=h5py.string_dtype())

    # -- finish -------------------------------------------------------------------------------
    def commit(self, attrs: dict[str, Any]) -> str:
        """Write root attributes, close, publish under the target name; returns the file's sha256."""
        self.finish_events()
        if not self._has_map:
            raise RuntimeError(f"{self.path}: write_rectify_map() before commit (schema {SCHEMA_VERSION} "
                               "needs it; identity_rectify_map for events already on the grid)")
        base = {"schema_version": SCHEMA_VERSION, "tool_version": __version__,
                "height": self.height, "width": self.width, "num_pairs": self.num_pairs}
        for k, v in {**base, **attrs}.items():
            self.h5.attrs[k] = v
        self._file.commit()
        return sha256_file(self.path)

    def abort(self) -> None:
        self._file.abort()

    def __enter__(self) -> SequenceWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if not self._file.finished:
            self.abort()


def create_pair_datasets(h5: h5py.File, n: int, height: int, width: int, with_masks: bool,
                         mask_source: str = ORACLE_MASKS
                         ) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset | None]:
    """`images`, `labels` (fill 255) and optionally `masks` (ground truth unless `mask_source`
    says otherwise): one compressed chunk per pair."""
    h, w = int(height), int(width)
    images = h5.create_dataset(IMAGES, shape=(n, h, w, 3), maxshape=(None, h, w, 3),
                               dtype=IMAGE_DTYPE, chunks=(1, h, w, 3), **compression())
    labels = h5.create_dataset(LABELS, shape=(n, h, w), maxshape=(None, h, w), dtype=LABEL_DTYPE,
                               chunks=(1, h, w), fillvalue=IGNORE, **compression())
    masks = create_masks_dataset(h5, n, h, w, mask_source) if with_masks else None
    return images, labels, masks


def create_masks_dataset(h5: h5py.File, n: int, height: int, width: int,
                         source: str | None) -> h5py.Dataset:
    """The `masks` dataset (instance ids, 0 = none): one compressed chunk per pair, its
    `source` attribute set (one of MASK_SOURCES; None: not recorded)."""
    if source is not None and source not in MASK_SOURCES:
        raise ValueError(f"mask source {source!r}: expected {' | '.join(MASK_SOURCES)}")
    h, w = int(height), int(width)
    ds = h5.create_dataset(MASKS, shape=(n, h, w), maxshape=(None, h, w), dtype=MASK_DTYPE,
                           chunks=(1, h, w), **compression())
    if source is not None:
        ds.attrs[MASK_SOURCE_ATTR] = source
    return ds


def mask_source_of(f: h5py.File) -> str | None:
    """Where the file's `masks` came from (MASK_SOURCES), "" when it records none (written
    before the attribute existed), None when the file has no masks."""
    if MASKS not in f:
        return None
    value = f[MASKS].attrs.get(MASK_SOURCE_ATTR, "")
    return value.decode() if isinstance(value, bytes) else str(value)


# -- changing a published file -----------------------------------------------------------------


@contextlib.contextmanager
def edit_sequence(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """A copy of the sequence file `path`, open for editing; it replaces `path` atomically when
    the block ends without an error (a failure leaves the original untouched)."""
    with atomic_path(path, suffix=".h5.tmp") as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            yield f


def replace_masks(path: str | os.PathLike[str], masks: np.ndarray, source: str | None = None,
                  attrs: dict[str, str] | None = None) -> str:
    """Store `masks` (N, H, W) as the `masks` dataset of a sequence file (replacing any, oracle
    masks included), with the layout `SequenceWriter` gives it and `source` (MASK_SOURCES; None:
    not recorded) plus any other `attrs` as its attributes; returns the new file's sha256."""
    masks = np.asarray(masks)
    with edit_sequence(path) as f:
        n, h, w = f[IMAGES].shape[:3]
        if masks.shape != (n, h, w):
            raise ValueError(f"{path}: masks {masks.shape} do not match the images {(n, h, w)}")
        if MASKS in f:
            del f[MASKS]
        ds = create_masks_dataset(f, n, h, w, source)
        ds[...] = masks
        for k, v in (attrs or {}).items():
            ds.attrs[k] = v
    return sha256_file(path)


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


def write_index(split_dir: Path, sequences: list[dict[str, Any]]) -> None:
    """A split's whole index.json, sequences in the order given (the loaders' order), atomically."""
    split_dir = Path(split_dir)
    write_json_atomic(split_dir / "index.json", {"schema_version": SCHEMA_VERSION,
                                                 "split": split_dir.name, "sequences": sequences})


def update_index(split_dir: Path, entry: dict[str, Any]) -> None:
    """Insert or replace one sequence entry (by name), sorted by name, atomically."""
    split_dir = Path(split_dir)
    index = read_index(split_dir)
    seqs = [s for s in index["sequences"] if s.get("name") != entry["name"]]
    seqs.append(entry)
    seqs.sort(key=lambda s: s["name"])
    index.update({"schema_version": SCHEMA_VERSION, "split": split_dir.name, "sequences": seqs})
    write_json_atomic(split_dir / "index.json", index)


def set_index_checksums(split_dir: Path, sha256_by_file: dict[str, str]) -> None:
    """Record new sha256 sums of rewritten files in the split's index.json (if it has one),
    keeping everything else as it is."""
    if not (Path(split_dir) / "index.json").is_file():
        return
    index = read_index(split_dir)
    for s in index["sequences"]:
        if s.get("file") in sha256_by_file:
            s["sha256"] = sha256_by_file[s["file"]]
    write_json_atomic(Path(split_dir) / "index.json", index)
