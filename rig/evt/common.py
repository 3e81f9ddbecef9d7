"""Record layouts and anomaly kinds shared by the EVT3/EVT2/EVT2.1 encoders and decoders."""

from __future__ import annotations

import numpy as np

#: A CD event: time (us), pixel, polarity (1 = ON, brighter).
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
#: An external trigger edge: time (us), channel id, value (1 = rising edge).
TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("id", "u1"), ("value", "u1")])
#: An event-rate-controller counter (EVT3 OTHERS 0x014 / 0x016 + CONTINUED words).
ERC_DTYPE = np.dtype([("t", "<i8"), ("kind", "u1"), ("count", "<i8")])
ERC_KINDS = ("input", "output")  # 0x014 = CD events into the ERC, 0x016 = CD events out of it

# Anomaly kinds (index into the counters the kernels fill). Keep in sync with the kernels.
OUT_OF_GEOMETRY = 0  # CD events dropped: x >= width or y (incl. the system-type bit) >= height
TIME_HIGH_BACKWARDS = 1  # a TIME_HIGH below the previous one that is not a 24-bit wrap
TIME_LOW_BACKWARDS = 2  # time went back within one TIME_HIGH (kept as is, as OpenEB does)
VECT_WITHOUT_BASE = 3  # vector words before any VECT_BASE_X: their events are dropped
EVENT_WITHOUT_Y = 4  # CD words before any EVT_ADDR_Y: their events are dropped
BROKEN_ERC_COUNTER = 5  # OTHERS counter not followed by CONTINUED_12, CONTINUED_12, CONTINUED_4
RESERVED_WORD = 6  # a word of a type the format reserves
TRUNCATED = 7  # file ends inside a word or inside a multi-word event
N_ANOMALY_KINDS = 8
ANOMALY_NAMES = (
    "out_of_geometry",
    "time_high_backwards",
    "time_low_backwards",
    "vect_without_base",
    "event_without_y",
    "broken_erc_counter",
    "reserved_word",
    "truncated",
)
#: How many anomalies (byte offset, kind) are kept in full; the rest are only counted.
MAX_ANOMALY_SAMPLES = 1000

EVT3_WORD_NAMES = (
    "EVT_ADDR_Y",
    "type_0x1",
    "EVT_ADDR_X",
    "VECT_BASE_X",
    "VECT_12",
    "VECT_8",
    "EVT_TIME_LOW",
    "CONTINUED_4",
    "EVT_TIME_HIGH",
    "type_0x9",
    "EXT_TRIGGER",
    "type_0xB",
    "type_0xC",
    "IMU",
    "OTHERS",
    "CONTINUED_12",
)
EVT2_WORD_NAMES = (
    "CD_OFF",
    "CD_ON",
    "type_0x2",
    "type_0x3",
    "type_0x4",
    "type_0x5",
    "type_0x6",
    "type_0x7",
    "EVT_TIME_HIGH",
    "type_0x9",
    "EXT_TRIGGER",
    "type_0xB",
    "type_0xC",
    "type_0xD",
    "OTHERS",
    "CONTINUED",
)
# EVT 2.1 names its CD words by polarity; every other word type is EVT 2.0's
EVT21_WORD_NAMES = ("EVT_NEG", "EVT_POS") + EVT2_WORD_NAMES[2:]


def widen_time_span(first: int | None, last: int | None, *arrays: np.ndarray
                    ) -> tuple[int | None, int | None]:
    """The (first, last) time over `first`/`last` so far and each array's first and last `t`
    (time-sorted arrays: the running span every reader keeps across its chunks)."""
    for arr in arrays:
        if arr.size:
            a, b = int(arr["t"][0]), int(arr["t"][-1])
            first = a if first is None else min(first, a)
            last = b if last is None else max(last, b)
    return first, last
