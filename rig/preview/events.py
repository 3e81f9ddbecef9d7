"""The live events of the preview, read from the event camera's RAW file as it grows.

Why the file and not the camera: the event camera logs its raw stream natively (`EventCamera`
passes no events through Python), on the hardware as on the simulated rig. Following the file
needs nothing from any backend and costs the producer nothing: the preview's thread reads the
bytes appended since its last look from the page cache and decodes them with the project's own
kernels (hundreds of Mev/s). When it fell behind (nobody watched, or a burst), it jumps to the
newest `max_bytes` and restarts the decoder there: the EVT3 kernel skips words up to the next
TIME_HIGH, so a jump costs a few microseconds of events, never wrong ones.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt.errors import EventFileError
from rig.evt.header import read_header
from rig.evt.reader import RawReader

#: At most this many new bytes are decoded per look (the newest ones): ~1 ms of decoding.
DEFAULT_MAX_BYTES = 1 << 20


class _Decoder(RawReader):
    """A `RawReader` fed words from outside (the tail), carrying its state between them."""

    def decode_bytes(self, data: bytes) -> np.ndarray:
        """The events of whole words of `data` (the caller cuts at a word boundary)."""
        return self._decode(np.frombuffer(data, dtype=self._dtype))[0]

    def restart(self) -> None:
        """Forget the stream state: the next words are decoded from their first TIME_HIGH on."""
        self._reset()


class RawTail:
    """Follow a RAW file while it is written; `poll()` returns the events appended since the
    previous call (at most the newest `max_bytes` of them), `window(us)` the newest span.

    The file is opened once its header is complete (it ends with `% end`, or data follow it);
    until then, and when the header names no decodable format, `poll()` returns no events and
    `note` says why. Times are the event camera's (us); after a jump they restart from the
    next TIME_HIGH, so only differences within what `window` returns are meaningful.
    """

    def __init__(self, path: str | os.PathLike[str], *, width: int | None = None,
                 height: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.max_bytes = max(1 << 12, int(max_bytes))
        self.note = "waiting for the event file"
        self.bytes_skipped = 0  # not decoded: the preview looked away or fell behind
        self._decoder: _Decoder | None = None
        self._file: io.FileIO | None = None
        self._offset = 0  # next byte of the file to decode
        self._kept = np.zeros(0, EVENT_DTYPE)  # the newest events, for `window`
        self._failed = False

    def _open(self) -> bool:
        """Open the file once its header is complete; False while it is not (yet) readable."""
        if self._decoder is not None:
            return True
        if self._failed:
            return False
        try:
            size = self.path.stat().st_size
            header = read_header(self.path)
            if not header.has_end:  # complete only once data follow it
                if size <= header.size_bytes:
                    return False
                with open(self.path, "rb") as f:
                    f.seek(header.size_bytes)
                    if f.read(1) == b"%":  # a header line still being written
                        return False
            self._decoder = _Decoder(self.path, width=self.width, height=self.height)
        except FileNotFoundError:
            return False
        except EventFileError as exc:  # a format the kernels do not decode: said on the page
            self.note = f"events not shown: {exc}"
            self._failed = True
            return False
        except OSError as exc:
            self.note = f"events not shown: {self.path}: {exc.strerror or exc}"
            return False
        self._file = io.FileIO(self.path, "r")  # closed by close()
        self._offset = header.size_bytes
        self.note = ""
        return True

    def poll(self) -> np.ndarray:
        """Decode what was appended since the last call (EVENT_DTYPE, time-sorted)."""
        if not self._open():
            return np.zeros(0, EVENT_DTYPE)
        dec, f = self._decoder, self._file
        assert dec is not None and f is not None
        size = os.fstat(f.fileno()).st_size
        if size < self._offset:  # the file was replaced: start over
            self.close()
            return self.poll()
        word = dec.word_bytes
        end = self._offset + (size - self._offset) // word * word
        if end <= self._offset:
            return np.zeros(0, EVENT_DTYPE)
        if end - self._offset > self.max_bytes:
            jump = (end - self.max_bytes - self._offset) // word * word
            self.bytes_skipped += jump
            self._offset += jump
            dec.restart()
            self._kept = np.zeros(0, EVENT_DTYPE)  # another time base from here
        f.seek(self._offset)
        data = f.read(end - self._offset) or b""
        n = len(data) // word * word
        if not n:
            return np.zeros(0, EVENT_DTYPE)
        self._offset += n
        return dec.decode_bytes(data[:n] if n < len(data) else data)

    def window(self, span_us: int) -> np.ndarray:
        """Poll, then the events of the newest `span_us` seen (those kept from earlier polls
        included)."""
        new = self.poll()
        events = np.concatenate([self._kept, new]) if self._kept.size and new.size else (
            new if new.size else self._kept)
        if events.size:
            t_last = int(events["t"][-1])
            first = int(np.searchsorted(events["t"], t_last - int(span_us), side="right"))
            events = events[first:]
        self._kept = events
        return events

    def forget(self) -> None:
        """Nobody looks: drop the kept events (the next poll jumps to the newest bytes by
        itself when the backlog is over `max_bytes`)."""
        self._kept = np.zeros(0, EVENT_DTYPE)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._decoder = None
        self._kept = np.zeros(0, EVENT_DTYPE)


def warm_up() -> None:
    """Compile the event decoder the preview uses before a recording starts.

    The decoder's kernels are numba functions, compiled on first use and cached on disk. On a
    fresh install that first use would come from the preview's thread in the middle of a
    recording, holding the interpreter for seconds: the recorder's acquisition thread would
    stall and a camera would drop frames (seen in a clean-clone CI run: 89 of 100 frames).
    Decoding a tiny file here, before anything is recorded, moves that cost out of the
    recording (a no-op in time once the cache is warm)."""
    import tempfile

    from rig.evt.evt3 import EVT3Writer

    with tempfile.TemporaryDirectory(prefix="rpea-preview-warm-up-") as tmp:
        path = Path(tmp) / "warm_up.raw"
        writer = EVT3Writer(path, 64, 64)
        ev = np.zeros(16, EVENT_DTYPE)
        ev["t"] = np.arange(16) * 100
        ev["x"], ev["y"], ev["p"] = np.arange(16), np.arange(16), np.arange(16) % 2
        tr = np.zeros(2, TRIGGER_DTYPE)  # with trigger edges: the decoder's other signature
        tr["t"], tr["value"] = [250, 750], [1, 0]
        writer.write(ev, tr)
        writer.close()
        tail = RawTail(path)
        try:
            tail.poll()
        finally:
            tail.close()
