"""Prophesee RAW event files: the `% key value` header (`header`), the EVT3 and EVT2 decoding
kernels (`evt3_kernels`, `evt2_kernels`), the streaming reader (`reader`: `RawReader`,
`decode_file`, `iter_chunks`), and the writers (`evt3.EVT3Writer`, `evt2.encode`).

`rig.evt3` and `rig.evt2` stay the public names of the codec (they re-export from here).
"""

from rig.evt.common import ANOMALY_NAMES, ERC_DTYPE, EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.evt3 import EVT3Writer, empty_events, empty_triggers, encode, make_header
from rig.evt.header import RawHeader, parse_header, read_header
from rig.evt.reader import DecodeStats, RawReader, decode_file, decode_file_with_stats, iter_chunks

__all__ = ["ANOMALY_NAMES", "ERC_DTYPE", "EVENT_DTYPE", "TRIGGER_DTYPE", "DecodeStats", "EVT3Writer",
           "RawHeader", "RawReader", "decode_file", "decode_file_with_stats", "empty_events",
           "empty_triggers", "encode", "iter_chunks", "make_header", "parse_header", "read_header"]
