"""Frame-id bookkeeping shared by the recorder and the camera backends."""

from __future__ import annotations


class FrameIdTracker:
    """Counts frames the camera numbered but never delivered, across frame-id wraps.

    GigE Vision 1.x block ids are 16 bit and wrap 65535 -> 1 (0 is reserved); USB3 Vision and
    GigE Vision 2 extended ids are 64 bit. `modulus` is the number of distinct ids (65535 for
    GigE Vision, whose ids run 1..65535), `first` the id after a wrap.
    """

    def __init__(self, modulus: int | None = None, first: int = 0) -> None:
        self.modulus, self.first = modulus, first
        self.last: int | None = None
        self.missing = 0
        self.wraps = 0

    def update(self, frame_id: int) -> int:
        """Record one delivered id; returns how many ids were skipped before it."""
        skipped = 0
        if self.last is not None:
            if self.modulus is None:
                skipped = max(0, frame_id - self.last - 1)
            else:
                step = (frame_id - self.first) - (self.last - self.first)
                step %= self.modulus
                if frame_id < self.last:
                    self.wraps += 1
                skipped = step - 1 if 0 < step < self.modulus // 2 else 0
        self.last = frame_id
        self.missing += skipped
        return skipped
