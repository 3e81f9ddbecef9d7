"""EVT3 codec, public name kept: everything here lives in `rig.evt` (header, kernels, reader,
writer) and is re-exported so `rig.evt3.decode_file`, `rig.evt3.iter_chunks`, `rig.evt3.EVT3Writer`
keep working.

Example:
    >>> with EVT3Writer("events.raw", 1280, 720) as w:
    ...     w.write(events, triggers)
    >>> events, triggers = decode_file("events.raw")
"""

from rig.evt.common import ANOMALY_NAMES, ERC_DTYPE, EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.evt3 import (
    MAX_SIDE,
    MAX_T_US,
    VECTOR_MIN_RUN,
    EVT3Writer,
    empty_events,
    empty_triggers,
    encode,
    make_header,
)
from rig.evt.header import parse_header, read_header
from rig.evt.reader import DecodeStats, RawReader, decode_file, decode_file_with_stats, iter_chunks

__all__ = ["ANOMALY_NAMES", "ERC_DTYPE", "EVENT_DTYPE", "MAX_SIDE", "MAX_T_US", "TRIGGER_DTYPE",
           "VECTOR_MIN_RUN", "DecodeStats", "EVT3Writer", "RawReader", "decode_file",
           "decode_file_with_stats", "empty_events", "empty_triggers", "encode", "iter_chunks",
           "make_header", "parse_header", "read_header"]
