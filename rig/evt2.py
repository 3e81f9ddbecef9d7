"""EVT2 encoder, public name kept: it lives in `rig.evt.evt2` (decoding goes through
`rig.evt3.decode_file`, which reads the format from the header)."""

from rig.evt.evt2 import MAX_T_US, encode, make_header

__all__ = ["MAX_T_US", "encode", "make_header"]
