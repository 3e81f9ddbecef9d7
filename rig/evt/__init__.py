"""Event files. Any format through one opener (`files.open_events`: the format from the header,
never guessed), and the readers behind it: Prophesee RAW (the `% key value` header (`header`),
the EVT3, EVT2 and EVT2.1 decoding kernels, the streaming reader `reader.RawReader`,
`decode_file`, `iter_chunks`), Prophesee DAT (`dat`), jAER AEDAT 2.0 and AEDAT 4 (`aedat`), and
DSEC HDF5 (`dsec`, also its one writer). Writers for tests and the simulator: `evt3.EVT3Writer`,
`evt2.encode`, `evt21.encode`, `dat.write_dat`, `aedat.write_aedat2`.

`rig.evt3` and `rig.evt2` stay the public names of the codec (they re-export from here).
"""

from rig.evt.common import ANOMALY_NAMES, ERC_DTYPE, EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.evt3 import EVT3Writer, empty_events, empty_triggers, encode, make_header
from rig.evt.header import RawHeader, parse_header, read_header
from rig.evt.reader import DecodeStats, RawReader, decode_file, decode_file_with_stats, iter_chunks

__all__ = ["ANOMALY_NAMES", "ERC_DTYPE", "EVENT_DTYPE", "TRIGGER_DTYPE", "DecodeStats", "EVT3Writer",
           "RawHeader", "RawReader", "decode_file", "decode_file_with_stats", "empty_events",
           "empty_triggers", "encode", "iter_chunks", "make_header", "parse_header", "read_header"]
