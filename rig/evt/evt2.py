"""EVT2 (Prophesee Gen3, 32-bit words): decoding goes through `rig.evt3.decode_file`, which
reads the format from the header; this module adds an encoder for tests and conversions."""

from __future__ import annotations

import numpy as np

from rig.evt import evt2_kernels as _k
from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.header import default_fields, format_header

#: EVT2 timestamps are 34-bit (28-bit TIME_HIGH << 6 | 6-bit low).
MAX_T_US = 1 << 34


def make_header(width: int, height: int, extra: dict[str, str] | None = None) -> bytes:
    """`% key value` header of an EVT2 file (`% evt 2.0`, `% format EVT2;...`, `% end`)."""
    fields = default_fields(width, height, "2.0")
    fields["plugin_name"] = "hal_plugin_gen3_fx3"
    fields["generation"] = fields["sensor_generation"] = "3.0"
    if extra:
        fields.update({str(k): str(v) for k, v in extra.items()})
    return format_header(fields)


def encode(
    events: np.ndarray | None,
    triggers: np.ndarray | None,
    width: int,
    height: int,
    *,
    header_extra: dict[str, str] | None = None,
) -> bytes:
    """A whole EVT2 file for time-sorted events and triggers (times below 2^34 us)."""
    events = np.zeros(0, EVENT_DTYPE) if events is None else np.asarray(events)
    triggers = np.zeros(0, TRIGGER_DTYPE) if triggers is None else np.asarray(triggers)
    cols = [np.ascontiguousarray(events[f], np.int64) for f in ("t", "x", "y", "p")]
    tcols = [np.ascontiguousarray(triggers[f], np.int64) for f in ("t", "id", "value")]
    for name, t in (("event", cols[0]), ("trigger", tcols[0])):
        if t.size and (t[0] < 0 or t[-1] >= MAX_T_US or np.any(np.diff(t) < 0)):
            raise ValueError(f"{name} times must be sorted and within 0..2^34 us")
    if cols[0].size and (cols[1].max() >= width or cols[2].max() >= height):
        raise ValueError(f"events outside the {width}x{height} geometry")
    out = np.empty(2 * (cols[0].size + tcols[0].size) + 1, np.int64)
    n = _k.encode_words(*cols, *tcols, out)
    return make_header(width, height, header_extra) + out[:n].astype("<u4").tobytes()
