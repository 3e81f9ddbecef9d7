"""Decode Prophesee `.dat` files (CD or external-trigger events), whole or in bounded-memory chunks.

Layout (facts from Prophesee's DAT file format page and OpenEB: `metavision_core.event_io.dat_tools`,
`Event2d::RawEvent`, `EventExtTrigger::RawEvent`, `DATEventFileReader`): `% key value` header lines,
then one byte event type and one byte event size (8), then little-endian 8-byte records:

* uint32 t (us), uint32 data;
* type 0x00 (Event2d) and 0x0C (EventCD): x = data bits 0-13, y = bits 14-27, polarity bits 28-31
  (OpenEB's writers put 0/1 there; like `dat_tools` only bit 28 is read: 1 = ON);
* type 0x0E (EventExtTrigger): value (polarity, 1 = rising) = bits 0-3, channel id = bits 26-31. OpenEB
  writes triggers into a file of their own (`*_trigger.dat`), never mixed with CD events.

The time is uint32 us: OpenEB never unwraps it (files over 71.6 min wrap). Here a step back of more
than 2**31 us is taken as a wrap (+2**32 from there on); any other step back is kept as is and counted
as a `time_backwards` anomaly.

Why `FixedRecordReader` lives here: jAER AEDAT 2.0 (`rig.evt.aedat`) is also a run of 8-byte records
with a 32-bit time, so both share the chunking, the time unwrap and the statistics.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rig.evt.common import EVENT_DTYPE, MAX_ANOMALY_SAMPLES, TRIGGER_DTYPE, widen_time_span
from rig.evt.errors import EventFileError
from rig.evt.header import RawHeader, parse_header, read_header
from rig.evt.reader import DecodeStats

#: Default chunk of the iteration (bytes of records per step), as for RAW files.
DEFAULT_CHUNK_BYTES = 4 << 20
#: Piece of the file `read_all` decodes at a time (bounds its temporaries, not its output).
READ_PIECE_BYTES = 1 << 20
#: Bytes per record (DAT and AEDAT 2.0).
RECORD_BYTES = 8

#: DAT event types (OpenEB `METAVISION_DEFINE_EVENT_TRAIT` ids) and their names.
DAT_EVENT_2D = 0x00
DAT_EVENT_CD = 0x0C
DAT_EVENT_EXT_TRIGGER = 0x0E
DAT_TYPE_NAMES = {DAT_EVENT_2D: "Event2d", DAT_EVENT_CD: "EventCD", DAT_EVENT_EXT_TRIGGER: "EventExtTrigger"}

#: Keys only a Prophesee RAW header carries: a header with one of them is not a DAT header.
RAW_ONLY_KEYS = frozenset(
    {"evt", "plugin_name", "serial_number", "system_ID", "integrator_name", "camera_integrator_name",
     "sensor_generation", "firmware_version"}
)  # fmt: skip

_PERIOD = 1 << 32
_HALF = 1 << 31


# -- helpers shared with rig.evt.aedat --------------------------------------------------------------
class AnomalyTally:
    """Anomaly counts by kind, plus the first MAX_ANOMALY_SAMPLES (byte offset, kind) in file order.

    Fed one decoded block at a time, in file order, so the samples do not depend on the chunk size.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.samples: list[tuple[int, str]] = []

    def add(self, kind: str, offsets: np.ndarray | list[int]) -> None:
        """Count anomalies of one kind at these byte offsets (ascending)."""
        self.add_block([(kind, np.asarray(offsets, np.int64))])

    def add_block(self, found: list[tuple[str, np.ndarray]]) -> None:
        """Count the anomalies of one block (several kinds), keeping samples in offset order."""
        found = [(k, o) for k, o in found if o.size]
        if not found:
            return
        for kind, offs in found:
            self.counts[kind] = self.counts.get(kind, 0) + int(offs.size)
        room = MAX_ANOMALY_SAMPLES - len(self.samples)
        if room <= 0:
            return
        merged = [(int(o), kind) for kind, offs in found for o in offs[:room].tolist()]
        merged.sort(key=lambda s: s[0])  # stable: equal offsets keep the kind order
        self.samples.extend(merged[:room])


class TimeUnwrapper:
    """Unwrap a 32-bit microsecond clock into int64, carrying its state across blocks.

    A step back of more than 2**31 us is a wrap (the clock passed 2**32 - 1); anything else is kept.
    """

    def __init__(self) -> None:
        self.prev: int | None = None  # last raw (32-bit) time
        self.offset = 0  # multiple of 2**32 added to the raw times

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Unwrapped int64 times of `raw` (int64 values in [0, 2**32))."""
        if raw.size == 0:
            return raw.astype(np.int64)
        prev = int(raw[0]) if self.prev is None else self.prev
        step = np.diff(raw, prepend=np.int64(prev))
        wraps = np.cumsum(step < -_HALF, dtype=np.int64)
        out = raw + (self.offset + wraps * _PERIOD)
        self.offset += int(wraps[-1]) * _PERIOD
        self.prev = int(raw[-1])
        return out


class BackwardsCheck:
    """Where a time series steps back (after unwrapping), carrying the last time across blocks."""

    def __init__(self) -> None:
        self.prev: int | None = None

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Indices into `t` of the times below their predecessor."""
        if t.size == 0:
            return np.zeros(0, np.int64)
        prev = int(t[0]) if self.prev is None else self.prev
        idx = np.flatnonzero(np.diff(t, prepend=np.int64(prev)) < 0)
        self.prev = int(t[-1])
        return idx


def _stat_regular(path: Path, what: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise FileNotFoundError(f"{path}: no such {what} file") from exc
    if not stat.S_ISREG(st.st_mode):
        raise FileNotFoundError(f"{path}: no such {what} file (not a regular file)")
    return st


class FixedRecordReader:
    """Base of the readers of files made of 8-byte records behind a text header (DAT, AEDAT 2.0).

    A subclass parses its header in `__init__` (setting `header_bytes`, `data_bytes`, geometry and
    `stats`) and decodes a block of whole records in `_decode_block`. Here: the chunking (a record cut
    by the end of the file is a `truncated` anomaly at its offset), the statistics, and `read_all`
    that decodes into one preallocated output.
    """

    format = ""
    path: Path
    width: int
    height: int
    chunk_bytes: int
    header_bytes: int
    data_bytes: int
    stats: DecodeStats

    def _reset(self) -> None:
        self._tally = AnomalyTally()
        self._unwrap = TimeUnwrapper()
        self._back = BackwardsCheck()
        self._kinds: dict[str, int] = {}
        self._records = 0
        self._n_events = 0
        self._n_triggers = 0
        self._t_first: int | None = None
        self._t_last: int | None = None

    def _decode_block(self, words: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode whole records (`words`: N x 2 uint32, file byte order) whose first is record `first`."""
        raise NotImplementedError

    def _offsets(self, first: int, idx: np.ndarray) -> np.ndarray:
        """File byte offsets of records `first + idx`."""
        return self.header_bytes + (first + idx.astype(np.int64)) * RECORD_BYTES

    def _count_kind(self, name: str, n: int) -> None:
        if n:
            self._kinds[name] = self._kinds.get(name, 0) + int(n)

    def _blocks(self, block_bytes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decode the data in blocks of `block_bytes` (a multiple of 8); finish the stats at the end."""
        self._reset()
        dtype = np.dtype(self._word_dtype)
        total = max(0, self.data_bytes)
        block_bytes = min(block_bytes, max(RECORD_BYTES, -(-total // RECORD_BYTES) * RECORD_BYTES))
        buf = bytearray(block_bytes)
        view = memoryview(buf)
        done = 0  # bytes of whole records decoded
        carry = 0
        with open(self.path, "rb") as f:
            f.seek(self.header_bytes)
            while done + carry < total:
                want = min(block_bytes, total - done) - carry
                got = f.readinto(view[carry : carry + want]) or 0
                if not got:
                    break  # the file shrank since it was opened: what was there is decoded
                have = carry + got
                n = have // RECORD_BYTES
                if n:
                    words = np.frombuffer(buf, dtype=dtype, count=2 * n).reshape(n, 2)
                    out = self._decode_block(words, done // RECORD_BYTES)
                    del words
                    self._records += n
                    done += n * RECORD_BYTES
                    yield self._account(*out)
                carry = have - n * RECORD_BYTES
                if carry:
                    buf[:carry] = buf[n * RECORD_BYTES : have]
        if carry or done < total:
            self._tally.add("truncated", [self.header_bytes + done])
        self._finish()

    def _account(self, events: np.ndarray, triggers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._n_events += events.size
        self._n_triggers += triggers.size
        self._t_first, self._t_last = widen_time_span(self._t_first, self._t_last, events, triggers)
        return events, triggers

    def _finish(self) -> None:
        s = self.stats
        s.words = self._records
        s.word_counts = dict(self._kinds)
        s.events = self._n_events
        s.triggers = self._n_triggers
        s.t_first_us, s.t_last_us = self._t_first, self._t_last
        s.anomalies = dict(self._tally.counts)
        s.anomaly_samples = list(self._tally.samples)

    @property
    def _word_dtype(self) -> str:
        return "<u4"

    # -- public -------------------------------------------------------------------------------
    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Decode the whole file; returns (events, triggers) and fills `stats`."""
        n_max = max(0, self.data_bytes) // RECORD_BYTES  # one event per record at most
        events = np.empty(n_max, EVENT_DTYPE)
        trig_parts: list[np.ndarray] = []
        ne = 0
        block = max(RECORD_BYTES, READ_PIECE_BYTES // RECORD_BYTES * RECORD_BYTES)
        for ev, tr in self._blocks(block):
            events[ne : ne + ev.size] = ev
            ne += ev.size
            if tr.size:
                trig_parts.append(tr)
        events = events[:ne].copy() if ne < n_max // 2 else events[:ne]
        triggers = np.concatenate(trig_parts) if trig_parts else np.zeros(0, TRIGGER_DTYPE)
        return events, triggers

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield `(events, triggers)` per `chunk_bytes` of records (empty chunks skipped)."""
        for ev, tr in self._blocks(self.chunk_bytes):
            if ev.size or tr.size:
                yield ev, tr

    def progress_total(self) -> int:
        """Data bytes to decode (for progress bars)."""
        return max(0, self.data_bytes)


def _chunk(chunk_bytes: int) -> int:
    return max(RECORD_BYTES, int(chunk_bytes) // RECORD_BYTES * RECORD_BYTES)


# -- DAT ------------------------------------------------------------------------------------------
def _is_raw_header(hdr: RawHeader) -> bool:
    """True when the `%` header is a Prophesee RAW one (EVT format, `% end`, RAW-only keys)."""
    return hdr.evt_format is not None or hdr.has_end or any(k in hdr.fields for k in RAW_ONLY_KEYS)


def _dat_geometry(hdr: RawHeader) -> tuple[int, int] | None:
    """(width, height) from `Width`/`Height` (any case), else `format ...;width=;height=` or `geometry`."""
    low = {k.lower(): v for k, v in hdr.fields.items()}
    try:
        w, h = int(low.get("width", "")), int(low.get("height", ""))
        if w > 0 and h > 0:
            return w, h
    except ValueError:
        pass
    return hdr.geometry


def looks_like_dat(head: bytes) -> bool:
    """True when `head` (the first bytes of a file) is a Prophesee DAT file.

    Needs a `%` header that is not a RAW one (no EVT format, no `% end`, no RAW-only key), that has a
    DAT key (`Data file containing ...`, `Version`, or `Width` and `Height`), and is followed by a
    known event type and event size 8. A DAT that ends right after a `Data file containing` header
    (no type byte) also counts, so its reader can say what is wrong with it.
    """
    hdr = parse_header(head)
    if hdr.size_bytes == 0 or _is_raw_header(hdr):
        return False
    low = {k.lower(): v for k, v in hdr.fields.items()}
    data_line = low.get("data", "").lower().startswith("file containing")
    if not (data_line or "version" in low or ("width" in low and "height" in low)):
        return False
    tail = head[hdr.size_bytes : hdr.size_bytes + 2]
    if len(tail) < 2:
        return data_line and len(head) == hdr.size_bytes + len(tail)
    return tail[0] in DAT_TYPE_NAMES and tail[1] == RECORD_BYTES


class DatReader(FixedRecordReader):
    """A Prophesee `.dat` file opened for decoding (CD events or external triggers).

    Geometry: `Width`/`Height` (or `format`/`geometry`) header keys, else the `width`/`height`
    arguments, else an EventFileError (a trigger-only file needs none: 0 x 0). CD events outside the
    geometry are dropped and counted as `out_of_geometry`.
    """

    format = "DAT"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        width: int | None = None,
        height: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.path = Path(path)
        size = _stat_regular(self.path, "DAT").st_size
        if size == 0:
            raise EventFileError(f"{self.path}: empty file, not a Prophesee DAT file")
        hdr = read_header(self.path)
        if hdr.size_bytes == 0:
            raise EventFileError(f"{self.path}: no '% ' header at byte 0, not a Prophesee DAT file")
        if _is_raw_header(hdr):
            what = hdr.evt_format or "RAW"
            raise EventFileError(f"{self.path}: a Prophesee RAW ({what}) header, not a DAT file")
        self.header = hdr
        with open(self.path, "rb") as f:
            f.seek(hdr.size_bytes)
            tb = f.read(2)
        self.ev_type: int | None = tb[0] if tb else None
        if len(tb) == 2:
            if tb[1] != RECORD_BYTES:
                raise EventFileError(
                    f"{self.path}: event size {tb[1]} at byte {hdr.size_bytes + 1}, expected 8 (DAT)"
                )
            if tb[0] not in DAT_TYPE_NAMES:
                raise EventFileError(
                    f"{self.path}: event type 0x{tb[0]:02X} at byte {hdr.size_bytes} is not a DAT CD "
                    "(0x00, 0x0C) or trigger (0x0E) type"
                )
        self.header_bytes = hdr.size_bytes + len(tb)
        self.data_bytes = size - self.header_bytes
        self._missing_type = len(tb) < 2  # the file ends before the records: counted as truncated
        geo = _dat_geometry(hdr)
        source = "header"
        if geo is None and width is not None and height is not None and width > 0 and height > 0:
            geo, source = (int(width), int(height)), "argument"
        if geo is None:
            if self.ev_type == DAT_EVENT_EXT_TRIGGER:
                geo, source = (0, 0), "none (trigger file)"
            else:
                raise EventFileError(
                    f"{self.path}: the DAT header gives no sensor size (Width/Height); "
                    "give it with --width/--height"
                )
        self.width, self.height = geo
        self.chunk_bytes = _chunk(chunk_bytes)
        fields = dict(hdr.fields)
        if self.ev_type is not None and not self._missing_type:
            fields["event_type"] = DAT_TYPE_NAMES[self.ev_type]
        self.stats = DecodeStats(
            path=str(self.path),
            format=self.format,
            width=self.width,
            height=self.height,
            geometry_source=source,
            header=fields,
            header_bytes=self.header_bytes,
            data_bytes=max(0, self.data_bytes),
        )
        self._reset()

    def _blocks(self, block_bytes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self._missing_type:  # no (or half a) type/size pair: nothing to decode
            self._reset()
            self._tally.add("truncated", [self.header.size_bytes])
            self._finish()
            return
        yield from super()._blocks(block_bytes)

    def _decode_block(self, words: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        t = self._unwrap(words[:, 0].astype(np.int64))
        data = words[:, 1]
        back = self._back(t)
        if self.ev_type == DAT_EVENT_EXT_TRIGGER:
            self._count_kind("EXT_TRIGGER", len(t))
            tr = np.empty(len(t), TRIGGER_DTYPE)
            tr["t"] = t
            tr["id"] = data >> 26
            tr["value"] = (data & 0xF) != 0
            self._tally.add("time_backwards", self._offsets(first, back))
            return np.zeros(0, EVENT_DTYPE), tr
        self._count_kind("CD", len(t))
        x = data & 0x3FFF
        y = (data >> 14) & 0x3FFF
        keep = (x < self.width) & (y < self.height)
        out_idx = np.flatnonzero(~keep)
        back_at, out_at = self._offsets(first, back), self._offsets(first, out_idx)
        self._tally.add_block([("time_backwards", back_at), ("out_of_geometry", out_at)])
        if out_idx.size:
            t, x, y, data = t[keep], x[keep], y[keep], data[keep]
        ev = np.empty(len(t), EVENT_DTYPE)
        ev["t"] = t
        ev["x"] = x
        ev["y"] = y
        ev["p"] = (data >> 28) & 1
        return ev, np.zeros(0, TRIGGER_DTYPE)


# -- writer (tests, conversions) --------------------------------------------------------------------
def write_dat(
    path: str | os.PathLike,
    events: np.ndarray | None,
    width: int | None,
    height: int | None,
    *,
    triggers: np.ndarray | None = None,
    date: str = "2020-01-01 00:00:00",
) -> Path:
    """Write a DAT file the way OpenEB's `DatWriter` does: CD events (type 0x0C), or, when `triggers`
    is given instead, an external-trigger file (type 0x0E). Times are written modulo 2**32.

    `width`/`height` None leaves them out of the header (an old-style file). Returns the path.
    """
    path = Path(path)
    kind_name = "Trigger" if triggers is not None else "CD"
    lines = [f"% Data file containing {kind_name} events.", "% Version 2", f"% Date {date}"]
    if height is not None:
        lines.append(f"% Height {int(height)}")
    if width is not None:
        lines.append(f"% Width {int(width)}")
    head = ("\n".join(lines) + "\n").encode("ascii")
    if triggers is not None:
        recs = np.empty((triggers.size, 2), "<u4")
        recs[:, 0] = (triggers["t"].astype(np.int64) % _PERIOD).astype(np.uint32)
        recs[:, 1] = (triggers["value"].astype(np.uint32) & 0xF) | (triggers["id"].astype(np.uint32) << 26)
        kind = DAT_EVENT_EXT_TRIGGER
    else:
        ev = events if events is not None else np.zeros(0, EVENT_DTYPE)
        if ev.size and (int(ev["x"].max()) >= 1 << 14 or int(ev["y"].max()) >= 1 << 14):
            raise ValueError("DAT coordinates have 14 bits (< 16384)")
        recs = np.empty((ev.size, 2), "<u4")
        recs[:, 0] = (ev["t"].astype(np.int64) % _PERIOD).astype(np.uint32)
        x, y, on = ev["x"].astype(np.uint32), ev["y"].astype(np.uint32), (ev["p"] != 0).astype(np.uint32)
        recs[:, 1] = x | (y << 14) | (on << 28)
        kind = DAT_EVENT_CD
    with open(path, "wb") as f:
        f.write(head)
        f.write(bytes([kind, RECORD_BYTES]))
        f.write(recs.tobytes())
    return path
