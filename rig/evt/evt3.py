"""EVT3 writer: Prophesee EVT 3.0 RAW files (the EVK4's native stream).

`EVT3Writer` streams time-sorted CD events and trigger edges into a RAW file with a
Metavision-style `% key value` header; `encode` does a whole file in memory. Reading is
`rig.evt.reader` (`decode_file`, `iter_chunks`, `RawReader`: EVT3 and EVT2 with OpenEB's
semantics, decode statistics and anomalies, never a crash on bad input).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rig.evt import evt3_kernels as _k
from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.header import default_fields, format_header

#: Largest sensor side EVT3 addresses (11-bit coordinates).
MAX_SIDE = 2048
#: Largest timestamp the writer accepts (2^44 us, about 203 days): bounds the wrap words.
MAX_T_US = 1 << 44
#: Shortest same-row run written as a 12+12+8 vector (4 words) instead of one EVT_ADDR_X each.
VECTOR_MIN_RUN = 5


def make_header(width: int, height: int, extra: dict[str, str] | None = None) -> bytes:
    """Prophesee-style `% key value` header lines for an EVT3 file, ending with `% end\\n`.

    Carries `evt 3.0`, `format EVT3;height=H;width=W`, `geometry WxH` and the identity keys a
    Metavision EVK4 recording has (`camera_integrator_name`, `date`, `serial_number`,
    `plugin_name`, ...); `extra` adds keys or overrides any of them.
    """
    _check_geometry(width, height)
    fields = default_fields(width, height, "3.0")
    if extra:
        fields.update({str(k): str(v) for k, v in extra.items()})
    return format_header(fields)


def _check_geometry(width: int, height: int) -> None:
    if not (1 <= int(width) <= MAX_SIDE and 1 <= int(height) <= MAX_SIDE):
        raise ValueError(f"EVT3 geometry {width}x{height} out of range 1..{MAX_SIDE}")


def _field(arr: np.ndarray, name: str, what: str) -> np.ndarray:
    if arr.dtype.names is None or name not in arr.dtype.names:
        raise ValueError(f"{what} array needs a field {name!r} (got dtype {arr.dtype})")
    return arr[name]


class _Encoder:
    """The EVT3 word encoder with its state (last TIME_HIGH, wraps, last row) kept across calls."""

    def __init__(self, width: int, height: int) -> None:
        _check_geometry(width, height)
        self.width = int(width)
        self.height = int(height)
        self.state = np.zeros(_k.E_NSTATE, np.int64)
        self.state[_k.E_Y] = -1
        self.state[_k.E_LOW] = -1
        self.last_t = -1

    def encode(self, events: np.ndarray | None, triggers: np.ndarray | None) -> np.ndarray:
        """Validated events + triggers -> little-endian uint16 words (state advanced)."""
        if events is None:
            events = np.zeros(0, EVENT_DTYPE)
        if triggers is None:
            triggers = np.zeros(0, TRIGGER_DTYPE)
        events = np.asarray(events)
        triggers = np.asarray(triggers)
        ev_t = np.ascontiguousarray(_field(events, "t", "events"), np.int64)
        ev_x = np.ascontiguousarray(_field(events, "x", "events"), np.int64)
        ev_y = np.ascontiguousarray(_field(events, "y", "events"), np.int64)
        ev_p = np.ascontiguousarray(_field(events, "p", "events"), np.int64)
        tr_t = np.ascontiguousarray(_field(triggers, "t", "triggers"), np.int64)
        tr_id = np.ascontiguousarray(_field(triggers, "id", "triggers"), np.int64)
        tr_v = np.ascontiguousarray(_field(triggers, "value", "triggers"), np.int64)
        self._validate(ev_t, ev_x, ev_y, ev_p, tr_t, tr_id, tr_v)
        ne, nt = ev_t.size, tr_t.size
        if ne + nt == 0:
            return np.zeros(0, np.uint16)
        t_max = max(ev_t[-1] if ne else -1, tr_t[-1] if nt else -1)
        wraps = max(0, (int(t_max) >> 24) - int(self.state[_k.E_LOOP])) + 1
        out = np.empty(5 * ne + 4 * nt + 3 * wraps + 16, np.int64)
        n = _k.encode_words(
            ev_t, ev_x, ev_y, ev_p, tr_t, tr_id, tr_v, self.state, out, self.width, VECTOR_MIN_RUN
        )
        self.last_t = int(t_max)
        return out[:n].astype("<u2")

    def _validate(self, ev_t, ev_x, ev_y, ev_p, tr_t, tr_id, tr_v) -> None:
        for name, t in (("event", ev_t), ("trigger", tr_t)):
            if t.size == 0:
                continue
            if t[0] < self.last_t or t[0] < 0:
                raise ValueError(
                    f"{name} times must be >= 0 and >= the last written time {self.last_t} us "
                    f"(got {int(t[0])})"
                )
            if t.size > 1 and np.any(np.diff(t) < 0):
                raise ValueError(f"{name} times must be sorted ascending")
            if t[-1] >= MAX_T_US:
                raise ValueError(f"{name} time {int(t[-1])} us beyond the writer's limit {MAX_T_US}")
        if ev_t.size:
            if ev_x.min() < 0 or ev_x.max() >= self.width:
                raise ValueError(f"event x outside 0..{self.width - 1}")
            if ev_y.min() < 0 or ev_y.max() >= self.height:
                raise ValueError(f"event y outside 0..{self.height - 1}")
            if ev_p.min() < 0 or ev_p.max() > 1:
                raise ValueError("event polarity must be 0 or 1")
        if tr_t.size:
            if tr_id.min() < 0 or tr_id.max() > 15:
                raise ValueError("trigger id must be 0..15 (4-bit channel)")
            if tr_v.min() < 0 or tr_v.max() > 1:
                raise ValueError("trigger value must be 0 (falling) or 1 (rising)")


class EVT3Writer:
    """Stream CD events and trigger edges into an EVT3 RAW file, as an EVK4 would record them.

    The header is written at once; each `write` appends the words of its events and triggers
    (merged by time) and carries the encoder state, so a recording written in many pieces is
    byte-identical to one written at once. `flush` hands the bytes to the OS so an interrupted
    recording keeps what was written.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        *,
        header_extra: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._enc = _Encoder(width, height)
        self.width = self._enc.width
        self.height = self._enc.height
        header = make_header(self.width, self.height, header_extra)
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._file.write(header)
        self.header_bytes = len(header)
        self.bytes_written = len(header)
        self.events_written = 0
        self.triggers_written = 0

    def write(self, events: np.ndarray | None, triggers: np.ndarray | None = None) -> int:
        """Append events and triggers (each sorted by t, all at or after the last written time).

        Returns the number of bytes this call wrote.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: write() on a closed EVT3Writer")
        words = self._enc.encode(events, triggers)
        data = words.tobytes()
        self._file.write(data)
        self.bytes_written += len(data)
        self.events_written += 0 if events is None else len(events)
        self.triggers_written += 0 if triggers is None else len(triggers)
        return len(data)

    def flush(self) -> None:
        """Push written bytes to the OS (they survive a crash of this process)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> EVT3Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close still leaves a readable file
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


def encode(
    events: np.ndarray | None,
    triggers: np.ndarray | None,
    width: int,
    height: int,
    *,
    header_extra: dict[str, str] | None = None,
) -> bytes:
    """A whole EVT3 file (header + words) for time-sorted events and triggers, in memory."""
    enc = _Encoder(width, height)
    header = make_header(enc.width, enc.height, header_extra)
    return header + enc.encode(events, triggers).tobytes()


def empty_events(n: int = 0) -> np.ndarray:
    """An events array of EVENT_DTYPE (zeros)."""
    return np.zeros(n, EVENT_DTYPE)


def empty_triggers(n: int = 0) -> np.ndarray:
    """A triggers array of TRIGGER_DTYPE (zeros)."""
    return np.zeros(n, TRIGGER_DTYPE)


