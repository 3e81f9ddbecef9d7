"""Event toolkit: millisecond index, time slicing, and the DSEC HDF5 event layout.

DSEC layout (group `events/`): `x`, `y` uint16, `t` uint32 (us since `t_offset`), `p` uint8,
`t_offset` int64 scalar, `ms_to_idx` uint64 with `ms_to_idx[m]` = index of the first event with
`t >= 1000 * m`. Compression is Blosc-zstd + bitshuffle (hdf5plugin), chunked and written in
streaming fashion, so files larger than RAM convert in bounded memory. This module is the one
writer of that group (`DsecWriter`: `rpea events convert` and the RPEA sequence writer) and holds
the one millisecond-index search (`first_index_at`) every reader uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from dataset.h5publish import PendingH5File

#: Dataset names and dtypes of the event group.
EVENT_FIELDS: dict[str, type] = {"x": np.uint16, "y": np.uint16, "t": np.uint32, "p": np.uint8}
#: Elements per HDF5 chunk of the event datasets (256 Ki events: ~0.5-2 MB per chunk).
CHUNK_EVENTS = 1 << 18
#: Elements per HDF5 chunk of `ms_to_idx` (64 s of recording).
CHUNK_MS = 1 << 16
#: DSEC stores t as uint32 microseconds after t_offset: at most ~71.6 minutes per file.
MAX_T_REL_US = (1 << 32) - 1


def compression() -> dict[str, Any]:
    """h5py dataset keywords of the one compression of DSEC and RPEA files (Blosc-zstd level 5,
    bitshuffle: DSEC's choice, so DSEC tools read our files)."""
    return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))


# ---------------------------------------------------------------------------------------------
# millisecond index and slicing


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


def time_range_indices(
    t_us: np.ndarray,
    t0_us: int,
    t1_us: int,
    ms_index: np.ndarray | None = None,
    t_offset_us: int = 0,
) -> tuple[int, int]:
    """Index range [i0, i1) of the events with t0 <= t < t1 (t sorted, absolute us).

    With a millisecond index only the events of the covering milliseconds are searched (what
    makes slicing a large memory-mapped or HDF5 array cheap).
    """
    i0 = first_index_at(t_us, t0_us, ms_index, t_offset_us)
    if t1_us <= t0_us:
        return i0, i0
    return i0, first_index_at(t_us, t1_us, ms_index, t_offset_us)


def slice_events(
    events: np.ndarray, t0_us: int, t1_us: int, ms_index: np.ndarray | None = None,
    t_offset_us: int = 0,
) -> np.ndarray:  # fmt: skip
    """The events with t0 <= t < t1 (a view; `events` sorted by t)."""
    i0, i1 = time_range_indices(events["t"], t0_us, t1_us, ms_index, t_offset_us)
    return events[i0:i1]


def iter_time_windows(
    events: np.ndarray, window_us: int, t_start_us: int | None = None
) -> Iterable[tuple[int, np.ndarray]]:
    """Consecutive fixed windows [t, t + window) over sorted events: yields (t_start, slice)."""
    if events.size == 0:
        return
    t = events["t"]
    start = int(t[0]) if t_start_us is None else int(t_start_us)
    edges = np.arange(start, int(t[-1]) + window_us + 1, window_us, dtype=np.int64)
    idx = np.searchsorted(t, edges, side="left")
    for k in range(len(edges) - 1):
        yield int(edges[k]), events[idx[k] : idx[k + 1]]


# ---------------------------------------------------------------------------------------------
# DSEC HDF5 writer / reader


class DsecWriter:
    """Append events to a DSEC `events/` group, chunk by chunk (bounded memory).

    Give a path (the file is written to a temporary name and published on `close`, so a crash
    never leaves a half file under the final name) or an open h5py group to write into.
    `t_offset_us` defaults to the first event's time.

    Two behaviours, one per use:
    - default (`rpea events convert`): events must be sorted; unsorted input raises.
    - `reorder=True` (RPEA sequences, decoded EVT3 may step back by a few us): each appended chunk
      is sorted, and events earlier than what was already written are clamped to its last time
      and counted in `reordered`.
    `index_end=True` adds one last `ms_to_idx` entry (= number of events), so that every window
    end has an index (the RPEA convention).
    """

    def __init__(
        self,
        target: str | os.PathLike | h5py.Group,
        *,
        t_offset_us: int | None = None,
        group: str = "events",
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
        self.reorder, self.index_end = reorder, index_end
        try:
            self.group = parent.require_group(group)
            for k, v in (attrs or {}).items():
                parent.attrs[k] = v
            comp = compression()
            self._ds = {name: self.group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                                        chunks=(chunk_events,), **comp)
                        for name, dtype in EVENT_FIELDS.items()}
            self._ms = self.group.create_dataset("ms_to_idx", shape=(0,), maxshape=(None,),
                                                 dtype=np.uint64, chunks=(CHUNK_MS,), **comp)
        except BaseException:
            self.abort()
            raise
        self.t_offset_us = None if t_offset_us is None else int(t_offset_us)
        self.count = 0
        self.reordered = 0  # events clamped because they went back across appends
        self._last_rel: int | None = None  # time of the last event written, relative to t_offset
        self._next_ms = 0
        self._closed = False

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

    def close(self) -> Path:
        """Write `t_offset` (and the end entry of `ms_to_idx` with `index_end`); publish the file
        when this writer owns it."""
        if self._closed:
            return self.path
        self._closed = True
        if self.index_end:
            self._extend_ms(np.array([self.count]))
        if "t_offset" in self.group:
            del self.group["t_offset"]
        self.group.create_dataset("t_offset", data=np.int64(self.t_offset_us or 0))
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


class DsecReader:
    """Read events of a DSEC-layout file by time or index range (absolute microseconds)."""

    def __init__(self, path: str | os.PathLike, group: str = "events") -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise ValueError(f"{self.path}: not a readable HDF5 file ({e})") from e
        if group not in self._file or "t" not in self._file[group]:
            self._file.close()
            raise ValueError(f"{self.path}: no DSEC event group {group!r} (events/x,y,t,p)")
        g = self._file[group]
        self.group = g
        self.t_offset_us = int(g["t_offset"][()]) if "t_offset" in g else 0
        self.ms_to_idx = g["ms_to_idx"][:] if "ms_to_idx" in g else None
        self._t = g["t"]

    def __len__(self) -> int:
        return int(self._t.shape[0])

    @property
    def t_range_us(self) -> tuple[int, int]:
        if len(self) == 0:
            return self.t_offset_us, self.t_offset_us
        return (self.t_offset_us + int(self._t[0]), self.t_offset_us + int(self._t[-1]))

    def read_index(self, i0: int, i1: int) -> np.ndarray:
        """Events [i0, i1) as EVENT_DTYPE with absolute t."""
        from rig.evt3 import EVENT_DTYPE

        g = self.group
        out = np.empty(max(0, i1 - i0), EVENT_DTYPE)
        if out.size:
            out["t"] = g["t"][i0:i1].astype(np.int64) + self.t_offset_us
            out["x"] = g["x"][i0:i1]
            out["y"] = g["y"][i0:i1]
            out["p"] = g["p"][i0:i1]
        return out

    def index_range(self, t0_us: int, t1_us: int) -> tuple[int, int]:
        """[i0, i1) of the events with t0 <= t < t1 (absolute us), via ms_to_idx."""
        if t1_us <= t0_us or len(self) == 0:
            return 0, 0
        return (first_index_at(self._t, int(t0_us) - self.t_offset_us, self.ms_to_idx),
                first_index_at(self._t, int(t1_us) - self.t_offset_us, self.ms_to_idx))

    def read_time(self, t0_us: int, t1_us: int) -> np.ndarray:
        """Events with t0 <= t < t1 (absolute us)."""
        return self.read_index(*self.index_range(t0_us, t1_us))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DsecReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def raw_to_dsec(
    raw_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    chunk_bytes: int = 8 << 20,
    width: int | None = None,
    height: int | None = None,
    progress: Callable[[int], None] | None = None,
):
    """Convert a RAW recording (EVT3/EVT2) to a DSEC HDF5 file in bounded memory.

    `progress(n_bytes)` is called with the bytes decoded per step. Returns the decode
    statistics (rig.evt3.DecodeStats). Trigger edges go to `triggers/t,id,value` (absolute us).
    """
    from rig.evt3 import RawReader

    reader = RawReader(raw_path, width=width, height=height, chunk_bytes=chunk_bytes)
    trig_parts = []
    attrs = {"width": reader.width, "height": reader.height, "source": str(Path(raw_path).name),
             "format": reader.format}  # fmt: skip
    with DsecWriter(out_path, attrs=attrs) as w:
        for events, triggers in reader:
            w.append(events)
            if triggers.size:
                trig_parts.append(triggers)
            if progress:
                progress(reader.chunk_bytes)
        trig = np.concatenate(trig_parts) if trig_parts else None
        tg = w.file.require_group("triggers")
        for name in ("t", "id", "value"):
            data = trig[name] if trig is not None else np.zeros(0, "u1" if name != "t" else "<i8")
            tg.create_dataset(name, data=data)
    return reader.stats
