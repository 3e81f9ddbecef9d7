"""Event toolkit: time slicing, and conversion of any event file to the DSEC HDF5 layout.

The DSEC layout itself (`events/x,y,t,p` plus `t_offset` and `ms_to_idx` at the file root, an
optional `rectify_map`) has one owner, `rig.evt.dsec` (`DsecWriter`, `DsecReader`,
`first_index_at`, `compression`); its names are re-exported here, where the dataset code has
always found them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from rig.evt.dsec import (
    CHUNK_EVENTS,
    CHUNK_MS,
    EVENT_FIELDS,
    MAX_T_REL_US,
    DsecReader,
    DsecWriter,
    apply_rectify_map,
    compression,
    first_index_at,
    ms_to_idx,
)

__all__ = ["CHUNK_EVENTS", "CHUNK_MS", "EVENT_FIELDS", "MAX_T_REL_US", "DsecReader", "DsecWriter",
           "apply_rectify_map", "compression", "convert_to_dsec", "first_index_at", "iter_time_windows",
           "ms_to_idx", "raw_to_dsec", "slice_events", "time_range_indices"]


# ---------------------------------------------------------------------------------------------
# slicing


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


def convert_to_dsec(
    src_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    evt_format: str | None = None,
    chunk_bytes: int = 8 << 20,
    width: int | None = None,
    height: int | None = None,
    progress: Callable[[int], None] | None = None,
):
    """Convert any event file `rig.evt.files.open_events` reads to a DSEC HDF5 file, in bounded
    memory.

    `progress(n_bytes)` is called with the bytes decoded per step. Returns the decode statistics
    (`rig.evt.reader.DecodeStats`) with `reordered` set: events that stepped back in time (real
    EVT3 streams do, by a few us) are sorted within a chunk and clamped across chunks, since
    DSEC's `ms_to_idx` needs sorted times. Trigger edges go to `triggers/t,id,value` (absolute
    us); the sensor size to the root attributes `width`/`height`.
    """
    from rig.evt.files import open_events

    reader = open_events(src_path, evt_format=evt_format, width=width, height=height,
                         chunk_bytes=chunk_bytes)
    trig_parts = []
    attrs = {"width": reader.width, "height": reader.height, "source": str(Path(src_path).name),
             "format": reader.format}  # fmt: skip
    with DsecWriter(out_path, attrs=attrs, reorder=True) as w:
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
    stats = reader.stats
    stats.reordered = w.reordered
    return stats


#: The earlier name (RAW files only); kept for callers.
raw_to_dsec = convert_to_dsec
