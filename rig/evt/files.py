"""Open any common event file by what its header says: the one entry point of every reader.

- Prophesee RAW EVT 3.0 / 2.0 / 2.1: `% evt 3.0` or `% format EVT3;...` header lines
  (`rig.evt.reader.RawReader`);
- Prophesee DAT: `%` header lines naming no EVT format, then the ev_type and ev_size bytes
  (`rig.evt.dat.DatReader`);
- jAER AEDAT 2.0: first line `#!AER-DAT2.0` (`rig.evt.aedat.Aedat2Reader`);
- AEDAT 4 (iniVation DV): first line `#!AER-DAT4.0` (`rig.evt.aedat.Aedat4Reader`, through an
  optional maintained decoder);
- DSEC / RPEA HDF5: the HDF5 signature, then `events/x,y,t,p` (`rig.evt.dsec.DsecReader`).

The format is never guessed from a file name or from the data: a file whose header names no
format is refused with an `EventFileError` unless the caller states the format (and, where the
header gives none, the sensor geometry). Every reader has the same interface
(`EventFileReader`): `rpea events info/convert`, calibration and the builder use only this one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rig.evt.errors import EventFileError
from rig.evt.header import parse_header
from rig.evt.reader import DEFAULT_CHUNK_BYTES, DecodeStats, RawReader

#: The 8-byte HDF5 signature (at offset 0, or 512, 1024, ... behind a user block).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Formats `open_events` reads, as `--format` spells them, and their canonical names.
FORMAT_NAMES = {"evt3": "EVT3", "evt2": "EVT2", "evt21": "EVT21", "dat": "DAT", "aedat2": "AEDAT2",
                "aedat4": "AEDAT4", "dsec": "DSEC"}
RAW_FORMATS = ("EVT3", "EVT2", "EVT21")
#: Bytes read to decide a file's format (headers are far smaller).
SNIFF_BYTES = 1 << 16


class EventFileReader(Protocol):
    """What every event-file reader offers (see the module doc)."""

    path: Path
    format: str
    width: int
    height: int
    chunk_bytes: int
    stats: DecodeStats

    def read_all(self) -> tuple[np.ndarray, np.ndarray]: ...

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def progress_total(self) -> int: ...


@dataclass(frozen=True)
class Detected:
    """A file's format as its header states it, and the evidence (for messages)."""

    format: str
    evidence: str


def canonical_format(name: str) -> str:
    """'evt3', 'EVT3', 'evt-3', 'aedat', 'h5', ... -> a name of FORMAT_NAMES' values."""
    key = name.strip().lower().replace("-", "").replace(".", "").replace("_", "")
    key = {"evt30": "evt3", "evt20": "evt2", "evt": "evt3", "raw": "evt3", "aedat": "aedat2",
           "aedat20": "aedat2", "aedat40": "aedat4", "h5": "dsec", "hdf5": "dsec"}.get(key, key)
    if key not in FORMAT_NAMES:
        raise EventFileError(f"unknown event format {name!r} (use one of {', '.join(FORMAT_NAMES)})")
    return FORMAT_NAMES[key]


def _describe(head: bytes) -> str:
    """The first bytes of a file, printable, for an error message."""
    sample = head[:24]
    text = sample.decode("ascii", errors="replace")
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return repr(text)
    return sample.hex(" ")


def _has_hdf5_signature(head: bytes) -> bool:
    """The HDF5 signature at offset 0 or behind a user block (512, 1024, ... bytes), all within
    the SNIFF_BYTES read."""
    return any(head[off:off + 8] == HDF5_SIGNATURE for off in (0, 512, 1024, 2048, 4096, 8192))


def detect_format(path: str | os.PathLike) -> Detected:
    """The format the file's header states; `EventFileError` when it states none."""
    from rig.evt.aedat import aedat_version
    from rig.evt.dat import looks_like_dat

    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except IsADirectoryError:
        raise EventFileError(f"{p}: a folder, not an event file") from None
    except OSError as e:
        raise EventFileError(f"{p}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise EventFileError(f"{p}: empty file (0 bytes): no header, no events")
    if _has_hdf5_signature(head):
        return Detected("DSEC", "HDF5 signature")
    version = aedat_version(head)
    if version is not None:
        if version.startswith("2"):
            return Detected("AEDAT2", f"#!AER-DAT{version}")
        if version.startswith("4"):
            return Detected("AEDAT4", f"#!AER-DAT{version}")
        raise EventFileError(f"{p}: AEDAT {version} is not supported (AEDAT 2.0 and 4.0 are); "
                             "convert it to AEDAT 4 with DV or dv-processing")
    if head.startswith(b"%"):
        hdr = parse_header(head)
        if hdr.evt_format is not None:
            key = "format" if "format" in hdr.fields else "evt"
            return Detected(hdr.evt_format, f"header '% {key} {hdr.fields[key]}'")
        if looks_like_dat(head):
            return Detected("DAT", "Prophesee DAT header")
        raise EventFileError(
            f"{p}: a '%' header that names no event format (no '% evt' or '% format' line, and not "
            f"a Prophesee DAT header; {hdr.size_bytes} header bytes, data from byte "
            f"{hdr.size_bytes}); state it with --format evt3|evt2|evt21 and --width/--height")
    raise EventFileError(
        f"{p}: no recognisable event-file header at byte 0 (starts with {_describe(head)}); "
        "known: Prophesee RAW/DAT ('%' lines), AEDAT ('#!AER-DAT'), DSEC HDF5. To read headerless "
        "data, state --format and --width/--height")


def open_events(
    path: str | os.PathLike,
    *,
    evt_format: str | None = None,
    width: int | None = None,
    height: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> EventFileReader:
    """A reader for the event file at `path`, chosen by its header.

    `evt_format` is the user stating the format (`--format`): needed only for a file whose header
    names none (then `width`/`height` too, unless the header gives them); if the header names
    another format, that is an error, not a silent choice. `width`/`height` are used where the
    file states no geometry.
    """
    from rig.evt.aedat import Aedat2Reader, Aedat4Reader
    from rig.evt.dat import DatReader
    from rig.evt.dsec import DsecReader

    p = Path(path)
    if not p.exists():
        raise EventFileError(f"{p}: no such file")
    stated = canonical_format(evt_format) if evt_format else None
    try:
        fmt = detect_format(p).format
    except EventFileError:
        if stated is None or stated not in RAW_FORMATS:
            raise
        fmt = stated  # the RAW reader still wants the geometry from the header or the caller
    if stated is not None and stated != fmt:
        raise EventFileError(f"{p}: the header says {fmt}, not {stated} (drop --format to read it "
                             f"as {fmt})")
    if fmt in RAW_FORMATS:
        return RawReader(p, evt_format=fmt, chunk_bytes=chunk_bytes, width=width, height=height)
    if fmt == "DAT":
        return DatReader(p, chunk_bytes=chunk_bytes, width=width, height=height)
    if fmt == "AEDAT2":
        return Aedat2Reader(p, chunk_bytes=chunk_bytes, width=width, height=height)
    if fmt == "AEDAT4":
        return Aedat4Reader(p, chunk_bytes=chunk_bytes, width=width, height=height)
    return DsecReader(p, width=width, height=height)


def read_events(path: str | os.PathLike, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """All events and trigger edges of any event file (see `open_events`)."""
    return open_events(path, **kwargs).read_all()
