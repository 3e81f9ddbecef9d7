"""What a recording publishes to the live preview, and how the preview's thread reads it.

Why a feed and not a drawing callback: the producers (the frame acquisition thread, the
recorder's loop, calibration's detection) run at camera rate and must never wait for a picture.
They only swap references and counters here: no copy of a frame, no lock held while anything
is drawn. The preview's own thread takes the newest of each when it draws, so a slow picture
skips frames (counted in the page's stats), it never delays one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.devices import Frame


@dataclass(frozen=True)
class SessionInfo:
    """The recording the preview follows: where its events go and what its cameras deliver."""

    raw_path: Path | None  # the event camera's RAW file as it is written (None: no events)
    frame_size: tuple[int, int]  # (width, height) in pixels
    event_size: tuple[int, int]
    pixel_format: str  # of the delivered frames (rig.frames)
    rate_hz: float  # trigger rate: one frame per pulse
    exposure_us: float = 0.0
    reflected_arm: str | None = None  # the camera that sees a mirror image: "event", "frame", "none"


class PreviewFeed:
    """The newest frame, the live counters and the phase, published without waiting.

    Producers call `publish_frame` (the acquisition thread: one reference swap and an event
    set), `publish_counts` (the recorder's loop), `start_session`, `set_phase` and `poke`.
    The preview thread reads `latest_frame()`, `counts`, `session`, `phase` and waits in
    `wait()` for something new. A reference swap is atomic in CPython, so neither side locks.
    """

    def __init__(self) -> None:
        self._frame: tuple[int, Frame] | None = None  # (publication number, frame)
        self._counts: dict[str, Any] = {}
        self._session: SessionInfo | None = None
        self._phase: tuple[str, str] = ("starting", "")
        self._wake = threading.Event()
        self.frames_published = 0

    # -- producers -----------------------------------------------------------------------------
    def publish_frame(self, frame: Frame) -> None:
        """The newest frame (kept by reference: delivered frames are copies the camera never
        reuses, and nobody writes into them)."""
        n = self.frames_published + 1  # one producer (the acquisition thread): no race
        self.frames_published = n
        self._frame = (n, frame)
        self._wake.set()

    def publish_counts(self, counts: Mapping[str, Any]) -> None:
        """Live counters (pulses, frames, drops, event rate, ...); replaced as a whole."""
        self._counts = dict(counts)

    def start_session(self, info: SessionInfo) -> None:
        """A recording starts: its event file and sensor sizes (the previous frame is dropped)."""
        self._session = info
        self._frame = None
        self._wake.set()

    def set_phase(self, phase: str, detail: str = "") -> None:
        """What is going on, for the page: "recording", "detecting boards", "done", ..."""
        self._phase = (phase, detail)
        self._wake.set()

    def poke(self) -> None:
        """Something the renderer shows changed (not a frame): draw again."""
        self._wake.set()

    # -- the preview's thread --------------------------------------------------------------------
    def latest_frame(self) -> tuple[int, Frame] | None:
        return self._frame

    @property
    def counts(self) -> dict[str, Any]:
        return self._counts

    @property
    def session(self) -> SessionInfo | None:
        return self._session

    @property
    def phase(self) -> tuple[str, str]:
        return self._phase

    def wait(self, timeout_s: float) -> bool:
        """Until something was published (True) or `timeout_s` passed (False)."""
        woke = self._wake.wait(timeout_s)
        self._wake.clear()
        return woke
