"""Decode iniVation/jAER AEDAT files: AEDAT 2.0 natively, AEDAT 4 through an optional decoder.

**AEDAT 2.0** (facts from jAER: `AEFileInputStream`, `AEDataFile`, `DVS128.Extractor`, `DavisChip`,
`DavisBaseCamera.DavisEventExtractor`, `DAViSFX3HardwareInterface`, and jAER's own
`extractRetinaEventsFromAddr.m`): a first line `#!AER-DAT2.0`, `#` comment lines (CRLF), up to
`#End Of ASCII Header` or the first line that is not a comment, then big-endian int32 pairs
(address, timestamp in us). The address layout depends on the chip:

* DVS128 (jAER's default for files that name no chip): x = bits 1-7, y = bits 8-14, polarity = bit
  0 with **0 = ON** ("The ON events have raw polarity 0"); bit 15 set = a sync event (external IN
  pin, falling edge), bit 31 = another special event.
* DAVIS (DAVIS128/240/346/640): bit 31 clear = DVS: y = bits 22-30, x = bits 12-21, polarity = bit
  11 (1 = ON); bit 10 = an external-input event (address 0x402 falling, 0x403 rising, 0x404
  pulse) or another special event; bit 31 set = APS sample or IMU (0x80000C00) - both dropped here.

jAER draws with the origin at the lower left and mirrors x on extraction (`setFlipx(true)` for the
DVS128, `sx1 - x` for DAVIS; v2e's AEDAT 2.0 writer flips both x and y on the way in). So the image
coordinates here (origin top left, y down, like every other format of this toolkit) are
**x = W-1 - raw x, y = H-1 - raw y**: jAER's upright, unmirrored view.

Timestamps are int32 us: they are read as 32-bit unsigned and unwrapped (a step back of more than
2**31 us is a wrap); any other step back (a timestamp reset) is kept and counted as `time_backwards`.

**AEDAT 4** (`#!AER-DAT4.0`): decoded by `aedat` (neuromorphicsystems, Rust) or `dv_processing`
(iniVation). Both crash the process (abort, segfault) or hang on some corrupt files, so the header
(IOHeader flatbuffer and its XML), the packet framing and the compression magic of every packet are
checked here first, and a decoder only ever sees the packets that passed. `aedat` is preferred: it
reads truncated files (dv_processing refuses them) and its failures are exceptions.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.dat import (
    DEFAULT_CHUNK_BYTES,
    RECORD_BYTES,
    AnomalyTally,
    BackwardsCheck,
    FixedRecordReader,
    _chunk,
    _stat_regular,
)
from rig.evt.errors import EventFileError
from rig.evt.reader import DecodeStats

#: First bytes of every AEDAT file (jAER `AEDataFile.DATA_FILE_FORMAT_HEADER` with its `#`).
AEDAT_MAGIC = b"#!AER-DAT"
#: A header larger than this is not a header; a comment line longer than this ends it.
MAX_HEADER_BYTES = 1 << 20
MAX_LINE_BYTES = 4096
#: jAER's end-of-header comment (`AEDataFile.END_OF_HEADER_STRING`).
END_OF_HEADER = "end of ascii header"
#: How many leading records are looked at to tell DVS128 addresses from DAVIS ones.
SNIFF_RECORDS = 4096

_AEDAT3_HINT = (
    "convert it to AEDAT 4 with iniVation DV (its file converter) and open the .aedat4, "
    "or to AEDAT 2.0 with jAER"
)


def aedat_version(head: bytes) -> str | None:
    """The AEDAT version ("2.0", "3.1", "4.0", ...) of the `#!AER-DAT<version>` first line, else None."""
    if not head.startswith(AEDAT_MAGIC):
        return None
    rest = head[len(AEDAT_MAGIC) : len(AEDAT_MAGIC) + 16]
    m = re.match(rb"-?(\d+(?:\.\d+)*)[ \t]*(\r?\n|$)", rest)
    return m.group(1).decode("ascii") if m else None


def _not_supported(path: Path, version: str, want: str) -> EventFileError:
    if version.startswith("3"):
        return EventFileError(f"{path}: AEDAT {version} is not supported; {_AEDAT3_HINT}")
    return EventFileError(f"{path}: AEDAT {version} file, not AEDAT {want}")


# -- AEDAT 2.0 ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chip:
    """An AEDAT 2.0 address layout and the sensor it belongs to."""

    name: str
    layout: str  # "dvs128" or "davis"
    width: int
    height: int


#: Chips by a token of their jAER class name (lower case; first match wins).
CHIPS = (
    ("davis346", Chip("DAVIS346", "davis", 346, 260)),
    ("davis240", Chip("DAVIS240", "davis", 240, 180)),
    ("sbret10", Chip("DAVIS240", "davis", 240, 180)),  # DAVIS240's early jAER name
    ("davis128", Chip("DAVIS128", "davis", 128, 128)),
    ("davis640", Chip("DAVIS640", "davis", 640, 480)),
    ("dvs128", Chip("DVS128", "dvs128", 128, 128)),
    ("tmpdiff128", Chip("DVS128", "dvs128", 128, 128)),
)
DVS128 = Chip("DVS128", "dvs128", 128, 128)
#: jAER class names `write_aedat2` puts in its `# AEChip:` line.
_CHIP_CLASSES = {
    "DVS128": "ch.unizh.ini.jaer.chip.retina.DVS128",
    "DAVIS240": "eu.seebetter.ini.chips.davis.DAVIS240C",
    "DAVIS346": "eu.seebetter.ini.chips.davis.Davis346B",
    "DAVIS128": "eu.seebetter.ini.chips.davis.Davis128",
    "DAVIS640": "eu.seebetter.ini.chips.davis.Davis640",
}

_TEXT = bytes(range(0x20, 0x100)) + b"\t"
_KEY_LINE = re.compile(r"^\s*([A-Za-z][\w.\-]*)\s*:\s?(.*)$")


@dataclass
class Aedat2Header:
    """A parsed AEDAT 2.0 header: version, `Key: value` lines, free comments, size in bytes."""

    version: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    size_bytes: int = 0


def parse_aedat2_header(data: bytes) -> Aedat2Header:
    """Parse the `#` lines at the start of `data` (never raises).

    A comment line must end with a newline within MAX_LINE_BYTES and hold text only (no control
    bytes but tab and CR): binary records that happen to start with `#` are not taken for a line.
    """
    hdr = Aedat2Header(version=aedat_version(data) or "")
    pos = 0
    limit = min(len(data), MAX_HEADER_BYTES)
    while pos < limit and data[pos] == 0x23:
        nl = data.find(b"\n", pos, min(limit, pos + MAX_LINE_BYTES))
        if nl < 0:
            break
        line = data[pos + 1 : nl].rstrip(b"\r")
        if line.translate(None, _TEXT):
            break
        pos = nl + 1
        text = line.decode("latin-1").strip()
        if text.startswith("!AER-DAT"):
            continue
        if text.lower() == END_OF_HEADER:
            break
        m = _KEY_LINE.match(text)
        if m and m.group(1) not in hdr.fields:
            hdr.fields[m.group(1)] = m.group(2).strip()
        elif text:
            hdr.comments.append(text)
    hdr.size_bytes = pos
    return hdr


def _chip_from_header(hdr: Aedat2Header) -> tuple[Chip | None, str]:
    """The chip the header names (`AEChip`, else `HardwareInterface`), and the name it gave."""
    for key in ("AEChip", "HardwareInterface"):
        value = hdr.fields.get(key, "")
        low = value.lower()
        for token, chip in CHIPS:
            if token in low:
                return chip, value
        if key == "AEChip" and value:
            return None, value
    return None, ""


class Aedat2Reader(FixedRecordReader):
    """A jAER AEDAT 2.0 file opened for decoding (DVS128 or DAVIS address layout).

    The layout and sensor size come from the chip the header names; a file that names none is a
    DVS128 one (jAER's default), unless its addresses are plainly not (then the `width`/`height`
    arguments select the DAVIS layout, else an EventFileError asks for them).
    """

    format = "AEDAT2"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        width: int | None = None,
        height: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.path = Path(path)
        size = _stat_regular(self.path, "AEDAT").st_size
        if size == 0:
            raise EventFileError(f"{self.path}: empty file, not an AEDAT file")
        with open(self.path, "rb") as f:
            head = f.read(64 << 10)
            version = aedat_version(head)
            if version is None:
                raise EventFileError(f"{self.path}: no '#!AER-DAT' first line at byte 0, not an AEDAT file")
            if not version.startswith("2."):
                raise _not_supported(self.path, version, "2.0")
            hdr = parse_aedat2_header(head)
            if hdr.size_bytes >= len(head) - MAX_LINE_BYTES and len(head) < size:
                head += f.read(MAX_HEADER_BYTES - len(head))
                hdr = parse_aedat2_header(head)
            if hdr.size_bytes == 0:
                raise EventFileError(f"{self.path}: the '#!AER-DAT' first line has no end of line (byte 0)")
            f.seek(hdr.size_bytes)
            sample = f.read(SNIFF_RECORDS * RECORD_BYTES)
        self.header = hdr
        self.header_bytes = hdr.size_bytes
        self.data_bytes = size - hdr.size_bytes
        chip, named = _chip_from_header(hdr)
        if chip is not None:
            source = f"chip {chip.name}"
        elif named:
            raise EventFileError(
                f"{self.path}: AEDAT 2.0 from jAER chip {named}: only the DVS128 and DAVIS "
                "(128/240/346/640) address layouts are supported"
            )
        elif _davis_like(sample):
            if width is None or height is None or width <= 0 or height <= 0:
                raise EventFileError(
                    f"{self.path}: the AEDAT 2.0 header names no chip and the addresses after byte "
                    f"{hdr.size_bytes} are not DVS128 ones (DAVIS?); give the sensor size with "
                    "--width/--height (240x180 for a DAVIS240, 346x260 for a DAVIS346)"
                )
            chip = Chip(f"DAVIS {width}x{height}", "davis", int(width), int(height))
            source = "argument (DAVIS address layout)"
        else:
            chip = DVS128
            source = "chip DVS128 (jAER default: the header names no chip)"
        self.chip = chip
        self.width, self.height = chip.width, chip.height
        self.chunk_bytes = _chunk(chunk_bytes)
        fields = {"version": version, **hdr.fields}
        if hdr.comments:
            fields["comments"] = "\n".join(hdr.comments)
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

    @property
    def _word_dtype(self) -> str:
        return ">u4"

    def _decode_block(self, words: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        a = words[:, 0]
        t = self._unwrap(words[:, 1].astype(np.int64))
        if self.chip.layout == "dvs128":
            return self._decode_dvs128(a, t, first)
        return self._decode_davis(a, t, first)

    def _decode_dvs128(self, a: np.ndarray, t: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        special = (a & 0x80008000) != 0
        sync = special & ((a & 0x80000000) == 0)  # bit 15: external IN pin, falling edge
        dvs = ~special
        self._count_kind("DVS", int(np.count_nonzero(dvs)))
        self._count_kind("sync", int(np.count_nonzero(sync)))
        self._count_kind("special", int(np.count_nonzero(special & ~sync)))
        self._check_time(t, dvs | sync, first, [])
        ad, w1, h1 = a[dvs], self.width - 1, self.height - 1
        ev = np.empty(ad.size, EVENT_DTYPE)
        ev["t"] = t[dvs]
        ev["x"] = w1 - ((ad >> 1) & 0x7F)
        ev["y"] = h1 - ((ad >> 8) & 0x7F)
        ev["p"] = 1 - (ad & 1)  # raw 0 = ON
        tr = np.zeros(int(np.count_nonzero(sync)), TRIGGER_DTYPE)
        tr["t"] = t[sync]  # id 0, value 0 (falling edge)
        return ev, tr

    def _decode_davis(self, a: np.ndarray, t: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        hi = (a & 0x80000000) != 0
        imu = (a & 0x80000C00) == 0x80000C00
        ext = ~hi & ((a & 0x400) != 0)
        trig = ext & ((a == 0x402) | (a == 0x403) | (a == 0x404))
        dvs = ~hi & ~ext
        rx = (a >> 12) & 0x3FF
        ry = (a >> 22) & 0x1FF
        inside = dvs & (rx < self.width) & (ry < self.height)
        self._count_kind("DVS", int(np.count_nonzero(dvs)))
        self._count_kind("APS", int(np.count_nonzero(hi & ~imu)))
        self._count_kind("IMU", int(np.count_nonzero(imu)))
        self._count_kind("external", int(np.count_nonzero(trig)))
        self._count_kind("special", int(np.count_nonzero(ext & ~trig)))
        outside = np.flatnonzero(dvs & ~inside)
        self._check_time(t, dvs | trig, first, [("out_of_geometry", self._offsets(first, outside))])
        ev = np.empty(int(np.count_nonzero(inside)), EVENT_DTYPE)
        ev["t"] = t[inside]
        ev["x"] = self.width - 1 - rx[inside]
        ev["y"] = self.height - 1 - ry[inside]
        ev["p"] = (a[inside] >> 11) & 1
        at = a[trig]
        tr = np.zeros(at.size, TRIGGER_DTYPE)
        tr["t"] = t[trig]
        tr["value"] = at != 0x402  # 0x402 falling edge; rising and pulse count as rising
        return ev, tr

    def _check_time(self, t: np.ndarray, timed: np.ndarray, first: int, more: list) -> None:
        """Count steps back among the `timed` records (events, triggers) plus other anomalies."""
        idx = np.flatnonzero(timed)
        back = idx[self._back(t[idx])]
        self._tally.add_block([("time_backwards", self._offsets(first, back)), *more])


def _davis_like(sample: bytes) -> bool:
    """True when most leading records have address bits 16-30 set: not DVS128 (16-bit) addresses."""
    n = len(sample) // RECORD_BYTES
    if n == 0:
        return False
    a = np.frombuffer(sample, ">u4", count=2 * n)[0::2]
    return int(np.count_nonzero(a & 0x7FFF0000)) * 2 > n


def write_aedat2(
    path: str | os.PathLike,
    events: np.ndarray,
    *,
    chip: str | None = "DVS128",
    triggers: np.ndarray | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Path:
    """Write events (and triggers) as jAER AEDAT 2.0 (the inverse of `Aedat2Reader`).

    `chip`: "DVS128" or "DAVIS240"/"DAVIS346"/"DAVIS128"/"DAVIS640" (named in an `# AEChip:` line),
    or None for a file that names no chip (DVS128 layout, or DAVIS layout when `width`/`height` are
    given). Records are written in time order; times modulo 2**32 (int32 as jAER writes them).
    """
    path = Path(path)
    if chip is None:
        geo = (int(width), int(height)) if width and height else (128, 128)
        layout = "davis" if width and height else "dvs128"
    else:
        known = {c.name: c for _, c in CHIPS}[chip]
        geo, layout = (known.width, known.height), known.layout
    w1, h1 = geo[0] - 1, geo[1] - 1
    ev = events
    x, y = ev["x"].astype(np.uint32), ev["y"].astype(np.uint32)
    on = ev["p"] != 0
    if ev.size and (int(x.max()) > w1 or int(y.max()) > h1):
        raise ValueError(f"events outside {geo[0]}x{geo[1]}")
    if layout == "dvs128":
        addr = ((w1 - x) << 1) | ((h1 - y) << 8) | (~on).astype(np.uint32)
    else:
        addr = ((w1 - x) << 12) | ((h1 - y) << 22) | (on.astype(np.uint32) << 11)
    t = ev["t"].astype(np.int64)
    if triggers is not None and triggers.size:
        if layout == "dvs128":
            taddr = np.full(triggers.size, 0x8000, np.uint32)
        else:
            taddr = np.where(triggers["value"] != 0, 0x403, 0x402).astype(np.uint32)
        addr = np.concatenate([addr, taddr])
        t = np.concatenate([t, triggers["t"].astype(np.int64)])
        order = np.argsort(t, kind="stable")
        addr, t = addr[order], t[order]
    recs = np.empty((addr.size, 2), ">u4")
    recs[:, 0] = addr
    recs[:, 1] = (t % (1 << 32)).astype(np.uint32)
    lines = [
        "#!AER-DAT2.0",
        "# This is a raw AE data file - do not edit",
        "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
        "# Timestamps tick is 1 us",
    ]
    if chip is not None:
        lines.append(f"# AEChip: {_CHIP_CLASSES[chip]}")
    with open(path, "wb") as f:
        f.write(("\r\n".join(lines) + "\r\n").encode("ascii"))
        f.write(recs.tobytes())
    return path


# -- AEDAT 4 --------------------------------------------------------------------------------------
#: Decoders tried in this order (importable module names).
AEDAT4_DECODERS = ("aedat", "dv_processing")
AEDAT4_INSTALL_HINT = "AEDAT 4 needs the optional decoder: pip install 'rpea-rig[aedat4]'"
#: AEDAT 4 compression (IOHeader `CompressionType`) and the first bytes of each compressed packet.
_COMPRESSION = ("NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH")
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: dv::TriggerType (= aedat's trigger `source`) -> (channel id, value) of a trigger edge kept here.
_TRIGGER_MAP = {1: (0, 1), 2: (0, 0), 3: (0, 1), 4: (1, 1), 5: (1, 0)}
_TRIGGER_NAMES = ("timestamp_reset", "external_rising", "external_falling", "external_pulse",
                  "generator_rising", "generator_falling", "aps_frame_start", "aps_frame_end",
                  "aps_exposure_start", "aps_exposure_end")  # fmt: skip


def available_aedat4_decoders() -> list[str]:
    """The AEDAT 4 decoders installed, in order of preference."""
    return [name for name in AEDAT4_DECODERS if importlib.util.find_spec(name) is not None]


@dataclass
class Aedat4Stream:
    """One output stream of an AEDAT 4 file, from the header's XML."""

    id: int
    type: str  # typeIdentifier: EVTS, TRIG, FRME, IMUS, ...
    name: str = ""
    width: int | None = None
    height: int | None = None
    source: str = ""


@dataclass
class Aedat4Layout:
    """What the checks of an AEDAT 4 file found: header, streams, and the packets that are sound."""

    header_bytes: int = 0
    compression: str = "NONE"
    data_table: int = -1
    streams: dict[int, Aedat4Stream] = field(default_factory=dict)
    packets: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, stream id, size)
    broken_at: int | None = None  # where the packets stop being sound (None: all sound to the end)
    broken_why: str = ""


def _u(fmt: str, data: bytes, pos: int) -> Any:
    """One little-endian value at `pos`, or an EventFileError-worthy ValueError when out of range."""
    if pos < 0 or pos + struct.calcsize(fmt) > len(data):
        raise ValueError(f"offset {pos} out of the IO header")
    return struct.unpack_from("<" + fmt, data, pos)[0]


def _io_header(fb: bytes) -> tuple[int, int, str]:
    """(compression, data table position, info XML) of the IOHeader flatbuffer (raises ValueError)."""
    root = _u("I", fb, 0)
    vtable = root - _u("i", fb, root)
    vsize = _u("H", fb, vtable)
    if vsize < 4 or vsize % 2:
        raise ValueError("bad vtable")
    n_fields = (vsize - 4) // 2

    def slot(i: int) -> int:
        return _u("H", fb, vtable + 4 + 2 * i) if i < n_fields else 0

    comp = _u("i", fb, root + slot(0)) if slot(0) else 0
    table = _u("q", fb, root + slot(1)) if slot(1) else -1
    if not slot(2):
        raise ValueError("no infoNode")
    spos = root + slot(2)
    spos += _u("I", fb, spos)
    n = _u("I", fb, spos)
    if spos + 4 + n > len(fb):
        raise ValueError("infoNode out of the IO header")
    return comp, table, fb[spos + 4 : spos + 4 + n].decode("utf-8")


def _streams(xml_text: str) -> dict[int, Aedat4Stream]:
    """The output streams the header's XML describes (raises ValueError when it is not that XML)."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"XML: {exc}") from None
    out = root.find("node[@name='outInfo']")
    if root.tag != "dv" or out is None:
        raise ValueError("XML without outInfo")
    streams: dict[int, Aedat4Stream] = {}
    for node in out.findall("node"):
        try:
            sid = int(node.get("name", ""))
        except ValueError:
            continue
        attrs = {a.get("key"): (a.text or "").strip() for a in node.findall("attr")}
        info = node.find("node[@name='info']")
        iattrs = {} if info is None else {a.get("key"): (a.text or "").strip() for a in info.findall("attr")}
        st = Aedat4Stream(
            id=sid,
            type=attrs.get("typeIdentifier", ""),
            name=attrs.get("originalOutputName", ""),
            source=iattrs.get("source", ""),
        )
        try:
            st.width, st.height = int(iattrs["sizeX"]), int(iattrs["sizeY"])
        except (KeyError, ValueError):
            pass
        streams[sid] = st
    return streams


def check_aedat4(path: Path, size: int) -> Aedat4Layout:
    """Check an AEDAT 4 file's header and packet framing without decoding it.

    Raises EventFileError when the header is unusable; a packet run that breaks (truncation, bad
    stream id or size, missing compression magic) ends `packets` at `broken_at`.
    """
    lay = Aedat4Layout()
    with open(path, "rb") as f:
        head = f.read(18)
        if len(head) < 18:
            raise EventFileError(f"{path}: AEDAT 4 file ends at byte {len(head)}, inside its header")
        n = struct.unpack_from("<i", head, 14)[0]
        if n <= 0 or 18 + n > size or n > 64 << 20:
            raise EventFileError(f"{path}: bad AEDAT 4 IO header size {n} at byte 14")
        fb = f.read(n)
        try:
            comp, table, xml_text = _io_header(fb)
            streams = _streams(xml_text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventFileError(f"{path}: broken AEDAT 4 IO header at bytes 18-{18 + n}: {exc}") from None
        if not 0 <= comp < len(_COMPRESSION):
            raise EventFileError(f"{path}: unknown AEDAT 4 compression {comp} in the IO header")
        lay.header_bytes, lay.compression = 18 + n, _COMPRESSION[comp]
        lay.data_table, lay.streams = table, streams
        end = table if 18 + n <= table <= size else size
        magic = _LZ4_MAGIC if comp in (1, 2) else _ZSTD_MAGIC if comp in (3, 4) else b""
        pos = 18 + n
        while pos < end:
            f.seek(pos)
            ph = f.read(8 + len(magic))
            why = ""
            if len(ph) < 8:
                why = "file ends inside a packet header"
            else:
                sid, psize = struct.unpack_from("<ii", ph, 0)
                if sid not in streams:
                    why = f"unknown stream id {sid}"
                elif psize <= 0 or pos + 8 + psize > end:
                    why = f"packet size {psize} runs past byte {end}" if psize > 0 else f"packet size {psize}"
                elif magic and ph[8:] != magic[: len(ph) - 8]:
                    why = f"packet without the {lay.compression} magic"
            if why:
                lay.broken_at, lay.broken_why = pos, why
                break
            lay.packets.append((pos, sid, psize))
            pos += 8 + psize
        if lay.broken_at is None and table > size:
            lay.broken_at, lay.broken_why = size, f"data table at byte {table} is past the end of the file"
    return lay


def _first_line(exc: BaseException) -> str:
    """The telling line of a decoder's error (dv_processing appends a stack trace)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    told = [ln for ln in lines if "Error info:" in ln]
    return (told or lines or [type(exc).__name__])[0][:200]


def _is_panic(exc: BaseException) -> bool:
    """A Rust panic surfaced through pyo3 (a BaseException, not an Exception)."""
    return type(exc).__name__ == "PanicException"


class Aedat4Reader:
    """An AEDAT 4 file opened for decoding through an optional decoder (`aedat` or `dv_processing`).

    The events are those of the first event stream (`EVTS`, lowest id), its size the geometry; the
    triggers those of the first trigger stream (external signal -> id 0, generator -> id 1; value 1 =
    rising edge or pulse). Times are the file's (microseconds, usually since the Unix epoch). A chunk
    holds the events of about `chunk_bytes` of packets; `decoder` forces one of AEDAT4_DECODERS.
    """

    format = "AEDAT4"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        width: int | None = None,
        height: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        decoder: str | None = None,
    ) -> None:
        self.path = Path(path)
        size = _stat_regular(self.path, "AEDAT").st_size
        if size == 0:
            raise EventFileError(f"{self.path}: empty file, not an AEDAT file")
        with open(self.path, "rb") as f:
            version = aedat_version(f.read(64))
        if version is None:
            raise EventFileError(f"{self.path}: no '#!AER-DAT' first line at byte 0, not an AEDAT file")
        if not version.startswith("4."):
            raise _not_supported(self.path, version, "4")
        if decoder is not None and decoder not in AEDAT4_DECODERS:
            raise ValueError(f"unknown AEDAT 4 decoder {decoder!r} (one of {AEDAT4_DECODERS})")
        installed = available_aedat4_decoders()
        if decoder is not None and decoder not in installed:
            raise EventFileError(
                f"{self.path}: the AEDAT 4 decoder {decoder} is not installed; {AEDAT4_INSTALL_HINT}"
            )
        if not installed:
            raise EventFileError(f"{self.path}: {AEDAT4_INSTALL_HINT}")
        lay = check_aedat4(self.path, size)
        self.layout = lay
        ev_ids = sorted(s.id for s in lay.streams.values() if s.type == "EVTS")
        if not ev_ids:
            raise EventFileError(f"{self.path}: the AEDAT 4 file has no event (EVTS) stream")
        self._ev_stream = lay.streams[ev_ids[0]]
        tr_ids = sorted(s.id for s in lay.streams.values() if s.type == "TRIG")
        self._tr_stream = lay.streams[tr_ids[0]] if tr_ids else None
        st = self._ev_stream
        if st.width and st.height and st.width > 0 and st.height > 0:
            geo, source = (st.width, st.height), "header"
        elif width is not None and height is not None and width > 0 and height > 0:
            geo, source = (int(width), int(height)), "argument"
        else:
            raise EventFileError(
                f"{self.path}: the AEDAT 4 event stream gives no sensor size; give it with --width/--height"
            )
        self.width, self.height = geo
        if decoder is None:
            decoder = installed[0]
        if decoder == "dv_processing" and lay.broken_at is not None:
            # dv_processing refuses a file whose packets break off, or hangs on it: aedat reads it
            if "aedat" not in installed:
                raise EventFileError(
                    f"{self.path}: AEDAT 4 packets break off at byte {lay.broken_at} ({lay.broken_why}); "
                    "dv_processing cannot read such a file: install the aedat decoder (pip install aedat)"
                )
            decoder = "aedat"
        self.decoder = decoder
        self.header_bytes = lay.header_bytes
        self.data_bytes = size - lay.header_bytes
        self.chunk_bytes = max(1, int(chunk_bytes))
        fields = {
            "version": version,
            "compression": lay.compression,
            "decoder": decoder,
            "event_stream": f"{st.id} {st.name}".strip(),
            "camera": st.source,
            "streams": ", ".join(f"{i}:{lay.streams[i].type}" for i in sorted(lay.streams)),
        }
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
        self._ev_packets = [(off, off + 8 + sz) for off, sid, sz in lay.packets if sid == st.id]

    # -- decoders -----------------------------------------------------------------------------
    def _packets_aedat(self) -> Iterator[tuple[str, np.ndarray]]:
        """("events" | "triggers", array) per sound packet of the two streams, via `aedat`."""
        mod = importlib.import_module("aedat")
        try:
            dec = mod.Decoder(str(self.path))
        except BaseException as exc:
            if not isinstance(exc, Exception) and not _is_panic(exc):
                raise
            msg = _first_line(exc)
            raise EventFileError(f"{self.path}: the aedat decoder cannot open it: {msg}") from None
        tr_id = self._tr_stream.id if self._tr_stream else None
        for _ in range(len(self.layout.packets)):  # never let it read a packet that failed the checks
            try:
                packet = next(dec)
            except StopIteration:
                return
            except BaseException as exc:
                if not isinstance(exc, Exception) and not _is_panic(exc):
                    raise
                self._decoder_error = _first_line(exc)
                return
            sid = packet.get("stream_id")
            if sid == self._ev_stream.id and "events" in packet:
                a = packet["events"]
                ev = np.empty(a.size, EVENT_DTYPE)
                ev["t"], ev["x"], ev["y"], ev["p"] = a["t"].astype(np.int64), a["x"], a["y"], a["on"]
                yield "events", ev
            elif sid == tr_id and "triggers" in packet:
                a = packet["triggers"]
                yield "triggers", self._triggers(a["t"].astype(np.int64), a["source"].astype(np.int64))

    def _packets_dv(self) -> Iterator[tuple[str, np.ndarray]]:
        """The same via `dv_processing` (triggers first: it reads each stream on its own)."""
        dv = importlib.import_module("dv_processing")
        try:
            rec = dv.io.MonoCameraRecording(str(self.path))
        except Exception as exc:
            raise EventFileError(f"{self.path}: dv_processing cannot open it: {_first_line(exc)}") from None
        try:
            if self._tr_stream is not None and rec.isTriggerStreamAvailable(self._tr_stream.name):
                while (batch := rec.getNextTriggerBatch(self._tr_stream.name)) is not None:
                    t = np.array([tr.timestamp for tr in batch], np.int64)
                    kind = np.array([int(tr.type) for tr in batch], np.int64)
                    yield "triggers", self._triggers(t, kind)
            name = self._ev_stream.name or "events"
            while (store := rec.getNextEventBatch(name)) is not None:
                a = store.numpy()
                ev = np.empty(a.size, EVENT_DTYPE)
                ev["t"], ev["x"], ev["y"], ev["p"] = a["timestamp"], a["x"], a["y"], a["polarity"] != 0
                if (a["x"] < 0).any() or (a["y"] < 0).any():  # int16 in dv: keep them out of the geometry
                    ev["x"][a["x"] < 0] = 0xFFFF
                    ev["y"][a["y"] < 0] = 0xFFFF
                yield "events", ev
        except Exception as exc:
            self._decoder_error = _first_line(exc)

    def _triggers(self, t: np.ndarray, kind: np.ndarray) -> np.ndarray:
        """TRIGGER_DTYPE records of the edges among AEDAT 4 triggers (others only counted)."""
        for k in np.unique(kind).tolist():
            name = _TRIGGER_NAMES[k] if 0 <= k < len(_TRIGGER_NAMES) else f"trigger_type_{k}"
            self._count_kind(f"trigger:{name}", int(np.count_nonzero(kind == k)))
        keep = np.isin(kind, list(_TRIGGER_MAP))
        tr = np.empty(int(np.count_nonzero(keep)), TRIGGER_DTYPE)
        tr["t"] = t[keep]
        ids = np.array([_TRIGGER_MAP[k][0] for k in kind[keep].tolist()], np.uint8)
        vals = np.array([_TRIGGER_MAP[k][1] for k in kind[keep].tolist()], np.uint8)
        tr["id"], tr["value"] = ids, vals
        return tr

    def _count_kind(self, name: str, n: int) -> None:
        if n:
            self._kinds[name] = self._kinds.get(name, 0) + int(n)

    # -- decoding -----------------------------------------------------------------------------
    def _chunks(self, chunk_bytes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Events and triggers in chunks of about `chunk_bytes` of packets; fills `stats` at the end.

        The k-th event packet a decoder returns is the k-th sound event packet of the file: its
        offset places the chunk boundaries and the anomalies.
        """
        self._kinds: dict[str, int] = {}
        self._decoder_error = ""
        tally, back = AnomalyTally(), BackwardsCheck()
        ev_parts: list[np.ndarray] = []
        tr_parts: list[np.ndarray] = []
        pk = self._ev_packets
        k = 0  # event packets seen
        start = self.header_bytes  # file offset where the current chunk began
        source = self._packets_aedat() if self.decoder == "aedat" else self._packets_dv()
        for kind, arr in source:
            if kind == "triggers":
                tr_parts.append(arr)
                continue
            off, end = pk[min(k, len(pk) - 1)] if pk else (self.header_bytes, self.header_bytes)
            k += 1
            self._count_kind("events", arr.size)
            bidx = back(arr["t"])
            inside = (arr["x"] < self.width) & (arr["y"] < self.height)
            n_out = int(arr.size - np.count_nonzero(inside))
            tally.add_block([("time_backwards", np.full(bidx.size, off, np.int64)),
                             ("out_of_geometry", np.full(n_out, off, np.int64))])  # fmt: skip
            ev_parts.append(arr[inside] if n_out else arr)
            if end - start >= chunk_bytes:
                start = end
                yield self._join(ev_parts, tr_parts)
                ev_parts, tr_parts = [], []
        if ev_parts or tr_parts:
            yield self._join(ev_parts, tr_parts)
        lay = self.layout
        s = self.stats
        if self._decoder_error:  # the decoder gave up on the packet after the k-th event packet
            tally.add("decoder_error", [pk[k][0] if k < len(pk) else self.header_bytes + self.data_bytes])
            s.header["decoder_error"] = self._decoder_error
        if lay.broken_at is not None:
            tally.add("truncated", [lay.broken_at])
            s.header["broken"] = f"byte {lay.broken_at}: {lay.broken_why}"
        s.word_counts = dict(self._kinds)
        s.anomalies = dict(tally.counts)
        s.anomaly_samples = list(tally.samples)

    def _join(self, ev_parts: list[np.ndarray], tr_parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        ev = np.concatenate(ev_parts) if ev_parts else np.zeros(0, EVENT_DTYPE)
        tr = np.concatenate(tr_parts) if tr_parts else np.zeros(0, TRIGGER_DTYPE)
        s = self.stats
        s.events += ev.size
        s.triggers += tr.size
        for arr in (ev, tr):
            if arr.size:
                first, last = int(arr["t"].min()), int(arr["t"].max())
                s.t_first_us = first if s.t_first_us is None else min(s.t_first_us, first)
                s.t_last_us = last if s.t_last_us is None else max(s.t_last_us, last)
        return ev, tr

    def _reset_stats(self) -> None:
        s = self.stats
        s.events = s.triggers = 0
        s.t_first_us = s.t_last_us = None
        s.header.pop("broken", None)
        s.header.pop("decoder_error", None)

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Decode the whole file; returns (events, triggers) and fills `stats`."""
        self._reset_stats()
        parts = list(self._chunks(1 << 62))
        if not parts:
            return np.zeros(0, EVENT_DTYPE), np.zeros(0, TRIGGER_DTYPE)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield `(events, triggers)` per about `chunk_bytes` of packets (empty chunks skipped)."""
        self._reset_stats()
        for ev, tr in self._chunks(self.chunk_bytes):
            if ev.size or tr.size:
                yield ev, tr

    def progress_total(self) -> int:
        """Data bytes (packets after the header) to decode (for progress bars)."""
        return max(0, self.data_bytes)
