"""EVT 2.1 (Prophesee, 64-bit vectorised words): decoding goes through `rig.evt.reader`, which
reads the format from the header; this module adds an encoder, to make test files.

Why an encoder: no EVT 2.1 recording ships with the project, so the decoder is tested against
files written here (and against hand-written words checked with the documented layout).
"""

from __future__ import annotations

import numpy as np

from rig.evt import evt21_kernels as _k
from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.header import default_fields, format_header

#: EVT 2.1 timestamps are 34-bit (28-bit TIME_HIGH << 6 | 6-bit low).
MAX_T_US = 1 << 34
#: The word layouts OpenEB reads (see `rig.evt.evt21_kernels`).
ENDIANNESS = ("little", "legacy")


def make_header(
    width: int, height: int, extra: dict[str, str] | None = None, *, endianness: str = "little"
) -> bytes:
    """`% key value` header of an EVT 2.1 file (`% evt 2.1`, `% format EVT21;...`, `% end`).

    `% endianness` is always written, as OpenEB does: without it OpenEB reads a file from a
    Prophesee system ID below 0x37 (the default `system_ID 49` here) as legacy.
    """
    if endianness not in ENDIANNESS:
        raise ValueError(f"endianness must be one of {ENDIANNESS}, not {endianness!r}")
    fields = default_fields(width, height, "2.1")
    fmt = f"EVT21;height={height};width={width}"
    fields["format"] = fmt + (";endianness=legacy" if endianness == "legacy" else "")
    fields["endianness"] = endianness
    if extra:
        fields.update({str(k): str(v) for k, v in extra.items()})
    return format_header(fields)


def encode(
    events: np.ndarray | None,
    triggers: np.ndarray | None = None,
    width: int | None = None,
    height: int | None = None,
    *,
    endianness: str = "little",
    header_extra: dict[str, str] | None = None,
) -> bytes:
    """A whole EVT 2.1 file for time-sorted events and triggers (times below 2^34 us).

    Events of one time, row and polarity in one 32-pixel block (aligned on 32) share a word, so
    the decoder gives them back in word order, by increasing x within a word: equal to the
    input after sorting both by (t, y, p, x). A trigger is written before the events of its time.
    """
    if width is None or height is None:
        raise ValueError("give the sensor geometry (width, height)")
    if not (1 <= int(width) <= 2048 and 1 <= int(height) <= 2048):
        raise ValueError(f"geometry {width}x{height} outside the 11-bit x / y fields")
    events = np.zeros(0, EVENT_DTYPE) if events is None else np.asarray(events)
    triggers = np.zeros(0, TRIGGER_DTYPE) if triggers is None else np.asarray(triggers)
    for name, t in (("event", events["t"]), ("trigger", triggers["t"])):
        if t.size and (t.min() < 0 or t.max() >= MAX_T_US or np.any(np.diff(t) < 0)):
            raise ValueError(f"{name} times must be sorted and within 0..2^34 us")
    if events.size and (events["x"].max() >= width or events["y"].max() >= height):
        raise ValueError(f"events outside the {width}x{height} geometry")
    events = events[np.lexsort((events["x"], events["p"], events["y"], events["t"]))]
    cols = [np.ascontiguousarray(events[f], np.int64) for f in ("t", "x", "y", "p")]
    tcols = [np.ascontiguousarray(triggers[f], np.int64) for f in ("t", "id", "value")]
    out = np.empty(2 * (cols[0].size + tcols[0].size) + 1, np.int64)
    header = make_header(int(width), int(height), header_extra, endianness=endianness)
    n = _k.encode_words(*cols, *tcols, out, endianness == "legacy")
    return header + out[:n].view("<u8").tobytes()
