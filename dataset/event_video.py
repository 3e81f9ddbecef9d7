"""An event file as a video: fixed-rate frames of a sliding accumulation window (`rpea events
render`), as Metavision's viewer exports a recording.

Frame k (k = 0, 1, ...) ends at `t_start + (k + 1) / fps` and shows the events of the
`accumulation` before its end: `[end - accumulation, end)`. An accumulation equal to the frame
period (the default) shows every event exactly once; a longer one leaves trails (events appear in
several frames), a shorter one shows only the end of each period. Times count from the file's
first event (`start_us` moves the first frame), so `--start-s 2` is two seconds into the recording.

The file is decoded chunk by chunk through `rig.evt.files.open_events` (never read whole: a
recording can last hours); only the events of the current accumulation window and the rest of the
decoded chunk are held. Pictures are `dataset.visual.event_image`'s: white background, ON blue,
OFF orange, saturation by count. A damaged file renders as far as it is valid; the reader's anomalies
(with the byte offset where it broke) come back in the result.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rig.evt.errors import EventFileError

#: Metavision's viewer exports at 25 frames per second.
DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class EventFrame:
    """One frame: its number, its window [t0_us, t1_us) (absolute), the events in it, and how
    many of them no earlier frame showed (a long accumulation shows an event in several frames)."""

    index: int
    t0_us: int
    t1_us: int
    events: np.ndarray
    new_events: int


@dataclass
class RenderResult:
    """What a render did: frames written, the span it covered, and what the reader saw."""

    path: Path
    out: Path
    format: str
    width: int
    height: int
    out_width: int
    out_height: int
    fps: float
    accumulation_us: int
    frames: int
    expected_frames: int | None  # duration * fps when a duration was given
    t_first_us: int | None  # the file's first event (the time origin)
    t_start_us: int | None  # the first frame's period start (absolute)
    t_end_us: int | None  # the last frame's end (absolute)
    events_shown: int  # distinct events, each counted once however many frames show it
    anomalies: dict[str, int] = field(default_factory=dict)
    anomaly_samples: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ended_early(self) -> bool:
        """A duration was asked for, and the file's events ended before it."""
        return self.expected_frames is not None and self.frames < self.expected_frames


def frame_count(duration_s: float, fps: float) -> int:
    """Frames of a `duration_s` render at `fps`: duration * fps, rounded up (at least 1)."""
    return max(1, math.ceil(duration_s * fps - 1e-9))


def _sorted_chunks(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
    """The non-empty event chunks of a reader, each sorted by time (EVT3 streams step back by a
    few us; the window arithmetic wants sorted times)."""
    for events, _triggers in chunks:
        if events.size == 0:
            continue
        t = events["t"]
        if t.size > 1 and np.any(t[1:] < t[:-1]):
            events = events[np.argsort(t, kind="stable")]
        yield events


def iter_frames(chunks: Iterable[tuple[np.ndarray, np.ndarray]], fps: float, accumulation_us: int,
                *, start_us: int = 0, max_frames: int | None = None) -> Iterator[EventFrame]:
    """Frames of the events `chunks` yields (a reader's `(events, triggers)` chunks, in time).

    Frame k covers `[end_k - accumulation_us, end_k)` with `end_k = t_first + start_us +
    round((k + 1) * 1e6 / fps)`; frames stop after `max_frames`, or with the frame holding the
    last event. No events at or after the start: no frames.
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"frame rate must be a positive number, got {fps}")
    if accumulation_us <= 0:
        raise ValueError(f"accumulation time must be positive, got {accumulation_us} us")
    period_us = 1e6 / fps
    stream = _sorted_chunks(chunks)
    first = next(stream, None)
    if first is None:
        return
    t_begin = int(first["t"][0]) + int(start_us)
    carry = first  # decoded events not yet given to a frame (t >= the last frame's end)
    ended = False
    window: deque[np.ndarray] = deque()  # events of the current window, in time order
    k = 0
    while max_frames is None or k < max_frames:
        t_end = t_begin + round((k + 1) * period_us)
        t_from = t_end - accumulation_us
        carry = carry[np.searchsorted(carry["t"], t_from, side="left"):]  # never shown
        while not ended and (carry.size == 0 or int(carry["t"][-1]) < t_end):
            chunk = next(stream, None)
            if chunk is None:
                ended = True
                break
            chunk = chunk[np.searchsorted(chunk["t"], t_from, side="left"):]
            if chunk.size == 0:
                continue
            if carry.size and int(chunk["t"][0]) < int(carry["t"][-1]):  # a step back between chunks
                both = np.concatenate([carry, chunk])
                carry = both[np.argsort(both["t"], kind="stable")]
            else:
                carry = np.concatenate([carry, chunk]) if carry.size else chunk
        if k == 0 and ended and (carry.size == 0 or int(carry["t"][-1]) < t_begin):
            return  # no event at or after the start: nothing to show
        split = int(np.searchsorted(carry["t"], t_end, side="left"))
        new = split
        if split:
            window.append(carry[:split])
            carry = carry[split:]
        while window:  # forget what fell out of the window
            head = window[0]
            if int(head["t"][-1]) < t_from:
                window.popleft()
                continue
            if int(head["t"][0]) < t_from:
                window[0] = head[np.searchsorted(head["t"], t_from, side="left"):]
            break
        if not window:
            shown = np.zeros(0, first.dtype)  # not a view: the first chunk can go
        elif len(window) == 1:
            shown = window[0]
        else:
            shown = np.concatenate(list(window))
            window.clear()
            window.append(shown)
        yield EventFrame(k, t_from, t_end, shown, new)
        k += 1
        if ended and carry.size == 0:
            return


def sparse_event_image(x: np.ndarray, y: np.ndarray, p: np.ndarray,
                       shape_hw: tuple[int, int]) -> np.ndarray:
    """`dataset.visual.event_image`, pixel for pixel, computed at the pixels that have events
    only: a video frame of an HD sensor holds a few thousand of them, and blending the whole
    picture cost ~100 ms a frame (ten times this)."""
    from dataset.visual import OFF_RGB, ON_RGB, event_counts

    on, off = event_counts(x, y, p, shape_hw)
    on, off = on.ravel(), off.ravel()
    img = np.full((shape_hw[0] * shape_hw[1], 3), 255, np.uint8)
    active = np.flatnonzero(on + off)
    if active.size == 0:
        return img.reshape(*shape_hw, 3)
    on, off = on[active], off[active]
    scale = max(float(np.percentile(np.maximum(on, off), 95)), 1.0)
    a_on = np.clip(on / scale, 0, 1)[:, None]
    a_off = np.clip(off / scale, 0, 1)[:, None]
    colour = np.float32(255) * (1 - a_on) + np.array(ON_RGB, np.float32) * a_on
    colour = colour * (1 - a_off) + np.array(OFF_RGB, np.float32) * a_off
    img[active] = colour.astype(np.uint8)
    return img.reshape(*shape_hw, 3)


def event_picture(events: np.ndarray, width: int, height: int, scale: float = 1.0) -> np.ndarray:
    """The RGB picture of `events` on a `width` x `height` sensor (events outside are left out),
    optionally resized by `scale` (nearest neighbour up, area average down)."""
    import cv2

    inside = (events["x"] < width) & (events["y"] < height)
    ev = events if bool(inside.all()) else events[inside]
    img = sparse_event_image(ev["x"], ev["y"], ev["p"], (height, width))
    if scale != 1.0:
        size = scaled_size(width, height, scale)
        interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
        img = cv2.resize(img, size, interpolation=interp)
    return img


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) of a picture resized by `scale` (at least 1 x 1)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def render_event_video(path: str | os.PathLike, out: str | os.PathLike, *, fps: float = DEFAULT_FPS,
                       accumulation_us: int | None = None, start_us: int = 0,
                       duration_us: int | None = None, scale: float = 1.0,
                       evt_format: str | None = None, width: int | None = None,
                       height: int | None = None, chunk_bytes: int = 8 << 20,
                       progress: Callable[[int], None] | None = None) -> RenderResult:
    """Render the event file `path` into the MP4 `out` (see the module doc); returns what was done.

    `progress(n)` is called with each frame written. Raises `EventFileError` (nothing written) when
    the file cannot be opened, states no sensor size, or has no events in the span asked for;
    `common.video.VideoError` when the video cannot be written. The output appears only when the
    video is complete (an interrupt leaves nothing).
    """
    from common.video import VideoWriter
    from rig.evt.files import open_events

    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"frame rate must be a positive number, got {fps}")
    acc_us = round(1e6 / fps) if accumulation_us is None else int(accumulation_us)
    if acc_us <= 0:
        raise ValueError(f"accumulation time must be at least 1 us, got {accumulation_us}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive number, got {scale}")
    src, dst = Path(path), Path(out)
    reader = open_events(src, evt_format=evt_format, width=width, height=height,
                         chunk_bytes=chunk_bytes)
    w, h = int(reader.width), int(reader.height)
    if w <= 0 or h <= 0:
        raise EventFileError(f"{src}: the file states no sensor size; give --width and --height")
    max_frames = None if duration_us is None else frame_count(duration_us / 1e6, fps)
    ow, oh = scaled_size(w, h, scale)
    result = RenderResult(path=src, out=dst, format=reader.format, width=w, height=h, out_width=ow,
                          out_height=oh, fps=float(fps), accumulation_us=acc_us, frames=0,
                          expected_frames=max_frames, t_first_us=None, t_start_us=None,
                          t_end_us=None, events_shown=0)
    chunks = iter(reader)
    try:
        with VideoWriter(dst, fps) as video:
            for frame in iter_frames(chunks, fps, acc_us, start_us=start_us, max_frames=max_frames):
                if result.t_start_us is None:
                    period = round(1e6 / fps)
                    result.t_start_us = frame.t1_us - period
                    result.t_first_us = result.t_start_us - int(start_us)
                video.write(event_picture(frame.events, w, h, scale))
                result.frames += 1
                result.t_end_us = frame.t1_us
                result.events_shown += frame.new_events
                if progress is not None:
                    progress(1)
            if result.frames == 0:
                where = f" from {start_us / 1e6:g} s on" if start_us else ""
                raise EventFileError(f"{src}: no events{where} to render; nothing written")
    finally:
        close = getattr(chunks, "close", None)  # a generator stopped early releases the file
        if close is not None:
            close()
        closer = getattr(reader, "close", None)
        if closer is not None:
            closer()
    stats = reader.stats
    result.anomalies = dict(stats.anomalies)
    result.anomaly_samples = list(stats.anomaly_samples)
    return result


#: Anomalies that end a file's readable data (the rest are quirks the decode went past).
BREAKING_ANOMALIES = ("truncated", "unreadable", "decoder_error")


def describe_anomalies(result: RenderResult, limit: int = 3) -> tuple[str, str]:
    """(where the file broke, what else the reader met), each one line or "" (none).

    The first names the breaking anomalies and their offsets (bytes; event index in an HDF5 file),
    as the reader reported them; the second counts the other anomalies (`rpea events info` lists
    them all)."""
    unit = "event" if result.format == "DSEC" else "byte"
    broken = {k: n for k, n in result.anomalies.items() if k in BREAKING_ANOMALIES}
    other = {k: n for k, n in result.anomalies.items() if k not in BREAKING_ANOMALIES}
    where = [f"unreadable from {unit} {o} on" if k.startswith("unreadable") else f"{k} at {unit} {o}"
             for o, k in result.anomaly_samples
             if k in BREAKING_ANOMALIES or k.startswith("unreadable")][:limit]
    first = ""
    if broken:
        first = f"{result.path}: " + (", ".join(where) if where else
                                      ", ".join(f"{k} {n}" for k, n in broken.items()))
    second = ", ".join(f"{k} {n}" for k, n in other.items())
    return first, second
