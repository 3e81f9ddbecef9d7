"""The DSEC HDF5 event layout: the one writer and the one reader of it.

Layout (as DSEC ships its `events.h5`, and as its `EventSlicer` reads it):

- `/events/x`, `/events/y` uint16: integer sensor pixels; `/events/t` uint32: microseconds after
  `t_offset`; `/events/p` uint8: polarity (1 = ON);
- `/t_offset` int64 scalar at the file root: absolute time of t = 0 (absolute = t_offset + t);
- `/ms_to_idx` uint64 at the file root: `ms_to_idx[m]` = index of the first event with
  `t >= 1000 m`, for every millisecond up to the last event's;
- `/rectify_map` float32 (H, W, 2), optional (DSEC ships it beside the events in
  `rectify_map.h5`): `rectify_map[y, x]` = the continuous position (x', y') of sensor pixel (x, y)
  on a rectified / aligned image grid. Coordinates stay sensor pixels; a reader applies the map.

Compression is Blosc-zstd + bitshuffle (hdf5plugin), chunked and written in streaming fashion,
so files larger than RAM convert in bounded memory. Files of this toolkit before the RPEA schema
2.0 kept `t_offset` and `ms_to_idx` inside `events/`: `DsecReader` reads both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from common.h5publish import PendingH5File
from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.errors import EventFileError

#: Dataset names and dtypes of the event group.
EVENT_FIELDS: dict[str, type] = {"x": np.uint16, "y": np.uint16, "t": np.uint32, "p": np.uint8}
#: Names at the file root (DSEC's).
EVENTS_GROUP, T_OFFSET, MS_TO_IDX, RECTIFY_MAP = "events", "t_offset", "ms_to_idx", "rectify_map"
#: Elements per HDF5 chunk of the event datasets (256 Ki events: ~0.5-2 MB per chunk).
CHUNK_EVENTS = 1 << 18
#: Elements per HDF5 chunk of `ms_to_idx` (64 s of recording).
CHUNK_MS = 1 << 16
#: DSEC stores t as uint32 microseconds after t_offset: at most ~71.6 minutes per file.
MAX_T_REL_US = (1 << 32) - 1
#: Events read per step when a DSEC file is streamed (`DsecReader.__iter__`).
STREAM_EVENTS = 1 << 20


def compression() -> dict[str, Any]:
    """h5py dataset keywords of the one compression of DSEC and RPEA files (Blosc-zstd level 5,
    bitshuffle: DSEC's choice, so DSEC tools read our files)."""
    return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))


def ms_to_idx(t_us: np.ndarray, t_offset_us: int = 0, num_ms: int | None = None) -> np.ndarray:
    """`idx[m]` = first index with `t - t_offset >= 1000 m`, for m < num_ms (t sorted).

    Default length covers every millisecond up to the last event (DSEC's convention).
    """
    t = np.asarray(t_us, np.int64) - int(t_offset_us)
    if num_ms is None:
        num_ms = int(t[-1]) // 1000 + 1 if t.size else 0
    bounds = np.arange(num_ms, dtype=np.int64) * 1000
    return np.searchsorted(t, bounds, side="left").astype(np.uint64)


def first_index_at(t_us: Any, t_query_us: int, ms_index: np.ndarray | None = None,
                   ms_origin_us: int = 0) -> int:
    """Index of the first event with `t >= t_query_us` (`np.searchsorted(t, q, "left")`).

    `t_us` is sorted and sliceable (numpy array, memory map or h5py dataset); `ms_index` is its
    `ms_to_idx` with millisecond 0 starting at `ms_origin_us` (in the units of `t_us`: 0 for the
    relative times of a DSEC file, `t_offset` for absolute times). With the index only the events
    of the query's millisecond are read, which is what makes slicing a large file cheap; without
    it the whole array is searched.
    """
    n = len(t_us)
    rel = int(t_query_us) - int(ms_origin_us)
    if ms_index is None or len(ms_index) == 0:
        lo, hi = 0, n
    elif rel < 0:  # the query precedes millisecond 0: the answer is among [0, ms_index[0])
        lo, hi = 0, int(ms_index[0])
    else:
        m = rel // 1000
        lo = int(ms_index[min(m, len(ms_index) - 1)])
        hi = int(ms_index[m + 1]) if m + 1 < len(ms_index) else n
    if hi <= lo:
        return lo
    seg = np.asarray(t_us[lo:hi]).astype(np.int64, copy=False)
    return lo + int(np.searchsorted(seg, int(t_query_us), side="left"))


class DsecWriter:
    """Append events to a DSEC layout, chunk by chunk (bounded memory).

    Give a path (the file is written to a temporary name and published on `close`, so a crash
    never leaves a half file under the final name) or an open h5py group to write into (the
    file's root for a DSEC file): `events/` is created in it, and `t_offset` and `ms_to_idx`
    beside `events/`. `t_offset_us` defaults to the first event's time.

    Two behaviours, one per use:
    - default (`rpea events convert`): events must be sorted; unsorted input raises.
    - `reorder=True` (RPEA sequences, decoded EVT3 may step back by a few us): each appended chunk
      is sorted, and events earlier than what was already written are clamped to its last time
      and counted in `reordered`.
    `index_end=True` adds one last `ms_to_idx` entry (= number of events), so that every window
    end has an index (the RPEA convention; DSEC readers ignore the extra entry's meaning).
    """

    def __init__(
        self,
        target: str | os.PathLike | h5py.Group,
        *,
        t_offset_us: int | None = None,
        group: str = EVENTS_GROUP,
        attrs: dict | None = None,
        chunk_events: int = CHUNK_EVENTS,
        reorder: bool = False,
        index_end: bool = False,
    ) -> None:
        self._pending: PendingH5File | None = None
        if isinstance(target, h5py.Group):
            self.path = Path(target.file.filename)
            self.file = target.file
            parent = target
        else:
            self._pending = PendingH5File(target)
            self.path = self._pending.path
            self.file = parent = self._pending.h5
        self.parent = parent
        self.reorder, self.index_end = reorder, index_end
        try:
            self.group = parent.require_group(group)
            for k, v in (attrs or {}).items():
                parent.attrs[k] = v
            comp = compression()
            self._ds = {name: self.group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                                        chunks=(chunk_events,), **comp)
                        for name, dtype in EVENT_FIELDS.items()}
            if MS_TO_IDX in parent:
                del parent[MS_TO_IDX]
            self._ms = parent.create_dataset(MS_TO_IDX, shape=(0,), maxshape=(None,), dtype=np.uint64,
                                             chunks=(CHUNK_MS,), **comp)
        except BaseException:
            self.abort()
            raise
        self.t_offset_us = None if t_offset_us is None else int(t_offset_us)
        self.count = 0
        self.reordered = 0  # events clamped because they went back across appends
        self._last_rel: int | None = None  # time of the last event written, relative to t_offset
        self._next_ms = 0
        self._closed = False

    @property
    def ms_index(self) -> h5py.Dataset:
        """The `ms_to_idx` dataset being written."""
        return self._ms

    def append(self, events: np.ndarray) -> None:
        """Append events (EVENT_DTYPE-like, t absolute us, after what was appended)."""
        self.append_xytp(events["x"], events["y"], events["t"], events["p"])

    def append_xytp(self, x: np.ndarray, y: np.ndarray, t_us: np.ndarray, p: np.ndarray) -> None:
        """Append events given as separate arrays (`t_us` absolute)."""
        if self._closed:
            raise ValueError(f"{self.path}: append() after close()")
        t = np.asarray(t_us, np.int64)
        if t.size == 0:
            return
        x, y, p = np.asarray(x), np.asarray(y), np.asarray(p)
        unsorted = bool(np.any(np.diff(t) < 0))
        if unsorted and self.reorder:
            order = np.argsort(t, kind="stable")
            x, y, t, p = x[order], y[order], t[order], p[order]
        if self.t_offset_us is None:
            self.t_offset_us = int(t[0])
        rel = t - self.t_offset_us
        last = self._last_rel
        if not self.reorder and (unsorted or (last is not None and rel[0] < last)):
            raise ValueError(f"{self.path}: event times must be sorted (DSEC ms_to_idx needs it)")
        if self.reorder and last is not None:
            back = rel < last
            if back.any():
                self.reordered += int(back.sum())
                rel = np.maximum(rel, last)
        if rel[0] < 0 or rel[-1] > MAX_T_REL_US:
            raise ValueError(
                f"{self.path}: event times {int(t[0])}..{int(t[-1])} us do not fit uint32 after "
                f"t_offset {self.t_offset_us} us (DSEC t is uint32: at most ~71 min per file)"
            )
        n0, n = self.count, t.size
        for name, arr in (("x", x), ("y", y), ("t", rel), ("p", p)):
            ds = self._ds[name]
            ds.resize((n0 + n,))
            ds[n0:] = arr.astype(ds.dtype, copy=False)
        last_ms = int(rel[-1]) // 1000
        if last_ms >= self._next_ms:
            bounds = np.arange(self._next_ms, last_ms + 1, dtype=np.int64) * 1000
            self._extend_ms(n0 + np.searchsorted(rel, bounds, side="left"))
            self._next_ms = last_ms + 1
        self.count += n
        self._last_rel = int(rel[-1])

    def _extend_ms(self, idx: np.ndarray) -> None:
        m0 = self._ms.shape[0]
        self._ms.resize((m0 + idx.size,))
        self._ms[m0:] = idx.astype(np.uint64)

    def write_rectify_map(self, rectify_map: np.ndarray, **attrs: Any) -> None:
        """Store `/rectify_map` (H, W, 2) float32 beside the events (see the module doc)."""
        m = np.asarray(rectify_map, np.float32)
        if m.ndim != 3 or m.shape[2] != 2:
            raise ValueError(f"rectify_map must be (H, W, 2), got {m.shape}")
        if RECTIFY_MAP in self.parent:
            del self.parent[RECTIFY_MAP]
        ds = self.parent.create_dataset(RECTIFY_MAP, data=m, chunks=(min(64, m.shape[0]), m.shape[1], 2),
                                        **compression())
        for k, v in attrs.items():
            ds.attrs[k] = v

    def close(self) -> Path:
        """Write `t_offset` (and the end entry of `ms_to_idx` with `index_end`); publish the file
        when this writer owns it."""
        if self._closed:
            return self.path
        self._closed = True
        if self.index_end:
            self._extend_ms(np.array([self.count]))
        if T_OFFSET in self.parent:
            del self.parent[T_OFFSET]
        self.parent.create_dataset(T_OFFSET, data=np.int64(self.t_offset_us or 0))
        if self._pending is not None:
            self._pending.commit()
        return self.path

    def abort(self) -> None:
        """Drop a half-written file (own file only)."""
        self._closed = True
        if self._pending is not None:
            self._pending.abort()

    def __enter__(self) -> DsecWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def find_event_index(f: h5py.Group, name: str, group: str = EVENTS_GROUP) -> h5py.Dataset | None:
    """`t_offset` or `ms_to_idx` of the events in `f/group`: at the root (DSEC, RPEA >= 2.0),
    else inside the events group (this toolkit's files before RPEA 2.0), else None."""
    if name in f and isinstance(f[name], h5py.Dataset):
        return f[name]
    g = f.get(group)
    if isinstance(g, h5py.Group) and name in g:
        return g[name]
    return None


def apply_rectify_map(rectify_map: np.ndarray, x: np.ndarray, y: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Continuous grid positions (float32) of sensor pixels (x, y) through a (H, W, 2) map."""
    xi = np.asarray(x, np.intp)
    yi = np.asarray(y, np.intp)
    h, w = rectify_map.shape[:2]
    if xi.size and (int(xi.max()) >= w or int(yi.max()) >= h):
        raise ValueError(f"event pixel outside the rectify map ({w}x{h})")
    pos = rectify_map[yi, xi]
    return pos[..., 0], pos[..., 1]


class DsecReader:
    """Read a DSEC-layout file by time or index range (absolute microseconds).

    Also the `.h5` reader of `rig.evt.files.open_events`: `width`/`height`, `stats`,
    `read_all()`, iteration in chunks (`(events, triggers)` like the RAW reader) and
    `progress_total()`. The sensor geometry comes from the `rectify_map` shape, the file's
    `width`/`height` attributes (`rpea events convert` writes them), or the arguments; a DSEC
    events file alone states none, then both are 0 ("not stated").
    """

    format = "DSEC"

    def __init__(self, path: str | os.PathLike, group: str = EVENTS_GROUP, *,
                 width: int | None = None, height: int | None = None,
                 chunk_events: int = STREAM_EVENTS) -> None:  # fmt: skip
        from rig.evt.reader import DecodeStats

        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise EventFileError(f"{self.path}: not a readable HDF5 file ({e})") from e
        try:
            g = self._file.get(group)
            if not isinstance(g, h5py.Group) or any(k not in g for k in EVENT_FIELDS):
                raise EventFileError(f"{self.path}: HDF5 but not the DSEC event layout (no "
                                     f"{group}/x, y, t, p)")
            sizes = {g[k].shape for k in EVENT_FIELDS}
            if len(sizes) != 1:
                raise EventFileError(f"{self.path}: {group}/x, y, t, p have different lengths "
                                     f"{sorted(sizes)}")
            self.group = g
            off = find_event_index(self._file, T_OFFSET, group)
            ms = find_event_index(self._file, MS_TO_IDX, group)
            self.t_offset_us = int(off[()]) if off is not None else 0
            self.ms_to_idx = ms[:].astype(np.int64) if ms is not None else None
            self.rectify_map = (self._file[RECTIFY_MAP][()] if RECTIFY_MAP in self._file
                                else None)
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
            self._file.close()
            if isinstance(e, EventFileError):
                raise
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise EventFileError(f"{self.path}: damaged DSEC file ({why})") from None
        except BaseException:
            self._file.close()
            raise
        self._t = g["t"]
        attrs = self._file.attrs
        source = "not stated"
        w, h = 0, 0
        if self.rectify_map is not None:  # sensor-sized (an RPEA file's width/height are its grid's)
            h, w = (int(v) for v in self.rectify_map.shape[:2])
            source = "rectify_map"
        elif "width" in attrs and "height" in attrs:
            w, h, source = int(attrs["width"]), int(attrs["height"]), "file attributes"
        elif width is not None and height is not None:
            w, h, source = int(width), int(height), "argument"
        self.width, self.height = w, h
        self.chunk_events = max(1, int(chunk_events))
        self.chunk_bytes = self.chunk_events * 9  # x, y, t, p: the bytes one step reads
        self.stats = DecodeStats(path=str(self.path), format=self.format, width=w, height=h,
                                 geometry_source=source,
                                 header={k: str(v) for k, v in attrs.items()},
                                 data_bytes=len(self) * 9)

    def __len__(self) -> int:
        return int(self._t.shape[0])

    @property
    def t_range_us(self) -> tuple[int, int]:
        if len(self) == 0:
            return self.t_offset_us, self.t_offset_us
        return (self.t_offset_us + int(self._t[0]), self.t_offset_us + int(self._t[-1]))

    def read_index(self, i0: int, i1: int) -> np.ndarray:
        """Events [i0, i1) as EVENT_DTYPE with absolute t and sensor pixels.

        A damaged HDF5 chunk raises `EventFileError` naming the file and the event range.
        """
        g = self.group
        out = np.empty(max(0, i1 - i0), EVENT_DTYPE)
        if out.size:
            try:
                out["t"] = g["t"][i0:i1].astype(np.int64) + self.t_offset_us
                out["x"] = g["x"][i0:i1]
                out["y"] = g["y"][i0:i1]
                out["p"] = g["p"][i0:i1]
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                raise EventFileError(f"{self.path}: events {i0}..{i1} unreadable "
                                     f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return out

    def rectified(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid positions (float32 x, y) of events through the file's `rectify_map`."""
        if self.rectify_map is None:
            raise ValueError(f"{self.path}: no rectify_map in the file")
        return apply_rectify_map(self.rectify_map, events["x"], events["y"])

    def index_range(self, t0_us: int, t1_us: int) -> tuple[int, int]:
        """[i0, i1) of the events with t0 <= t < t1 (absolute us), via ms_to_idx."""
        if t1_us <= t0_us or len(self) == 0:
            return 0, 0
        return (first_index_at(self._t, int(t0_us) - self.t_offset_us, self.ms_to_idx),
                first_index_at(self._t, int(t1_us) - self.t_offset_us, self.ms_to_idx))

    def read_time(self, t0_us: int, t1_us: int) -> np.ndarray:
        """Events with t0 <= t < t1 (absolute us)."""
        return self.read_index(*self.index_range(t0_us, t1_us))

    def triggers(self) -> np.ndarray:
        """Trigger edges stored by `rpea events convert` (`triggers/t,id,value`), else none."""
        tg = self._file.get("triggers")
        if not isinstance(tg, h5py.Group) or "t" not in tg:
            return np.zeros(0, TRIGGER_DTYPE)
        out = np.empty(tg["t"].shape[0], TRIGGER_DTYPE)
        out["t"] = tg["t"][()]
        out["id"] = tg["id"][()] if "id" in tg else 0
        out["value"] = tg["value"][()] if "value" in tg else 1
        return out

    # -- the event-file reader interface (rig.evt.files) ---------------------------------------
    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of `chunk_events`; a damaged chunk ends the file there (an "unreadable"
        anomaly at that event index in `stats`), as a truncated RAW file ends where it broke."""
        n = len(self)
        done = 0
        for i0 in range(0, n, self.chunk_events):
            try:
                events = self.read_index(i0, min(n, i0 + self.chunk_events))
            except EventFileError:
                self.stats.anomalies["unreadable"] = 1
                self.stats.anomaly_samples = [(i0, "unreadable from this event index on")]
                break
            done = i0 + events.size
            yield events, np.zeros(0, TRIGGER_DTYPE)
        try:
            triggers = self.triggers()
        except (OSError, ValueError, KeyError, RuntimeError):
            triggers = np.zeros(0, TRIGGER_DTYPE)
            self.stats.anomalies["unreadable_triggers"] = 1
        if triggers.size:
            yield np.zeros(0, EVENT_DTYPE), triggers
        self._fill_stats(done, triggers)

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every readable event and the trigger edges (see `__iter__` for damaged files)."""
        parts = list(self)
        events = [e for e, _ in parts if e.size]
        triggers = [t for _, t in parts if t.size]
        return (np.concatenate(events) if events else np.zeros(0, EVENT_DTYPE),
                np.concatenate(triggers) if triggers else np.zeros(0, TRIGGER_DTYPE))

    def _fill_stats(self, n: int, triggers: np.ndarray) -> None:
        s = self.stats
        s.events, s.triggers = n, int(triggers.size)
        if n:
            s.t_first_us = self.t_offset_us + int(self._t[0])
            s.t_last_us = self.t_offset_us + int(self._t[n - 1])

    def progress_total(self) -> int:
        return len(self) * 9

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DsecReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
