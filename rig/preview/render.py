"""The preview's pictures: the newest frame with the events of the last frame period drawn over
it (on the calibration's aligned grid), or side by side when there is no calibration; the
frame's histogram and saturated share; PNG encoding.

Drawn with OpenCV on the preview's own thread only, never on a producer's. Colours are the
toolkit's (common.palette: ON blue, OFF orange).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from common.palette import OFF_RGB, ON_RGB
from rig.devices import Frame
from rig.evt.common import EVENT_DTYPE
from rig.frames import to_gray, to_rgb
from rig.preview.alignment import PreviewAlignment
from rig.preview.feed import SessionInfo

TEXT_RGB = (20, 20, 20)
#: Bins of the histogram in stats.json (4 grey levels each).
HISTOGRAM_BINS = 64
#: A pixel at this raw value is saturated (8-bit frames).
SATURATED_LEVEL = 255
CAPTION_PX = 22
GAP_PX = 4


@dataclass
class FeedView:
    """What the preview's thread gathered for one picture."""

    frame: Frame | None
    frame_seq: int
    events: np.ndarray  # EVENT_DTYPE, the newest window
    events_note: str  # why there are no events ("" when there may be)
    window_us: int
    counts: dict[str, Any]
    session: SessionInfo | None
    phase: tuple[str, str]


@dataclass
class Picture:
    """A rendered picture and what the page shows beside it."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    stats: dict[str, Any] = field(default_factory=dict)
    # where the frame sits in `image`: frame pixel (u, v) -> (x0 + u * sx, y0 + v * sy); None when
    # the frame is not drawn as itself (the aligned grid, or no frame yet)
    frame_box: tuple[float, float, float, float] | None = None


class Renderer(Protocol):
    def render(self, view: FeedView) -> Picture: ...


def encode_png(rgb: np.ndarray) -> bytes:
    """RGB uint8 -> PNG bytes. Fast settings (level 1, run-length strategy: about half the time
    of the default, a larger file): the picture is replaced many times a second, on loopback."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                            cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """RGB uint8 -> JPEG bytes at quality 90 without chroma subsampling (4:4:4), so a single
    red or blue event pixel keeps its colour."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def frame_stats(frame: Frame) -> dict[str, Any]:
    """Histogram (HISTOGRAM_BINS bins of the raw 8-bit values, all Bayer channels together),
    saturated share (pixels at 255), dark share (pixels at 0..3), mean."""
    px = np.asarray(frame.pixels)
    if px.size > 2_000_000:  # a 3-Mpx frame: every 3rd pixel both ways sees all Bayer sites
        px = px[::3, ::3]
    vals = px.astype(np.uint8, copy=False).ravel()
    counts = np.bincount(vals, minlength=256)
    total = max(int(vals.size), 1)
    hist = counts.reshape(HISTOGRAM_BINS, -1).sum(axis=1)
    return {"histogram": (hist / total).round(5).tolist(),
            "saturated_share": float(counts[SATURATED_LEVEL:].sum() / total),
            "dark_share": float(counts[:4].sum() / total),
            "mean": float((counts * np.arange(256)).sum() / total)}


def put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5,
             colour: tuple[int, int, int] = TEXT_RGB, thickness: int = 1) -> None:
    """Text at `org` (baseline left), shrunk to fit the image's width."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    width = cv2.getTextSize(text, font, scale, thickness)[0][0]
    room = img.shape[1] - org[0] - 2
    if width > room > 0:
        scale *= room / width
    cv2.putText(img, text, org, font, scale, colour, thickness, cv2.LINE_AA)


def wrapped(text: str, width_px: int, scale: float = 0.5) -> list[str]:
    """`text` in lines that fit `width_px` at `scale` (broken between words)."""
    lines: list[str] = []
    for word in text.split(" "):
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width_px - 8:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [""]


def caption(img: np.ndarray, text: str) -> np.ndarray:
    """White strips with `text` above the image, wrapped to its width (CAPTION_PX a line)."""
    lines = wrapped(text, img.shape[1])
    strip = np.full((CAPTION_PX * len(lines), img.shape[1], 3), 255, np.uint8)
    for i, line in enumerate(lines):
        put_text(strip, line, (4, 16 + CAPTION_PX * i))
    return np.vstack([strip, img])


def side_by_side(tiles: list[np.ndarray]) -> np.ndarray:
    """Images next to each other, top-aligned, white between and below."""
    h = max(t.shape[0] for t in tiles)
    parts: list[np.ndarray] = []
    for i, t in enumerate(tiles):
        if t.shape[0] < h:
            t = np.vstack([t, np.full((h - t.shape[0], t.shape[1], 3), 255, np.uint8)])
        parts.append(t)
        if i < len(tiles) - 1:
            parts.append(np.full((h, GAP_PX, 3), 255, np.uint8))
    return np.hstack(parts)


def stacked(rows: list[np.ndarray]) -> np.ndarray:
    """Images above each other, left-aligned, white between and beside."""
    w = max(r.shape[1] for r in rows)
    parts: list[np.ndarray] = []
    for i, r in enumerate(rows):
        if r.shape[1] < w:
            r = np.hstack([r, np.full((r.shape[0], w - r.shape[1], 3), 255, np.uint8)])
        parts.append(r)
        if i < len(rows) - 1:
            parts.append(np.full((GAP_PX, w, 3), 255, np.uint8))
    return np.vstack(parts)


def resized(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """`img` at (width, height): area averaging from half size down, bilinear above (5-10x
    faster, and fine below 2x), nearest when enlarging (event pixels stay sharp)."""
    if (img.shape[1], img.shape[0]) == (width, height):
        return img
    if width > img.shape[1]:
        how = cv2.INTER_NEAREST
    else:
        how = cv2.INTER_AREA if width * 2 <= img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=how)


def event_picture(events: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Events at sensor pixels on white: ON blue, OFF orange, stronger with more events (the 95th
    percentile of the busy pixels' counts is full colour)."""
    w, h = size
    img = np.full((h * w, 3), 255, np.uint8)
    if events.size:
        x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
        inside = (x < w) & (y < h)
        idx = (y * w + x)[inside]
        p = events["p"][inside] > 0
        on = np.bincount(idx[p], minlength=w * h)
        off = np.bincount(idx[~p], minlength=w * h)
        lit = np.flatnonzero(on + off)  # only the pixels that saw events are blended
        on, off = on[lit], off[lit]
        busy = np.maximum(on, off)
        scale = max(float(np.percentile(busy, 95)) if busy.size else 1.0, 1.0)
        colour = np.full((lit.size, 3), 255.0, np.float32)
        for counts, rgb in ((on, ON_RGB), (off, OFF_RGB)):
            a = np.clip(counts / scale, 0.0, 1.0)[:, None].astype(np.float32)
            colour = colour * (1.0 - a) + np.array(rgb, np.float32) * a
        img[lit] = colour.astype(np.uint8)
    return img.reshape(h, w, 3)


def paint_events(img: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
    """Every event pixel in its polarity's colour (in place; the newest event of a pixel wins)."""
    colours = np.array([OFF_RGB, ON_RGB], np.uint8)
    img[y, x] = colours[(p > 0).astype(np.int64)]


def placeholder(text: str, detail: str = "", size: tuple[int, int] = (640, 360)) -> Picture:
    """A grey picture that says what the preview waits for."""
    w, h = size
    img = np.full((h, w, 3), 235, np.uint8)
    put_text(img, text, (16, h // 2 - 6), 0.7)
    if detail:
        put_text(img, detail, (16, h // 2 + 22), 0.5)
    return Picture(img)


def window_text(view: FeedView) -> str:
    ms = view.window_us / 1000.0
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


class OverlayRenderer:
    """The frame with the events of the newest window drawn over it.

    With an alignment that fits the rig (same sensor sizes), both go on the calibration's
    aligned grid: the frame's grey image, dimmed to 60 %, with each event pixel painted ON blue /
    OFF orange where the builder will put it. Without one: the frame in colour beside the events at
    their sensor pixels, one height. Pictures are at most `max_width_px` wide.
    """

    def __init__(self, alignment: PreviewAlignment | None = None, *, max_width_px: int = 1280,
                 max_height_px: int = 480, min_height_px: int = 360) -> None:
        self.alignment = alignment
        self.max_width_px, self.max_height_px = max_width_px, max_height_px
        self.min_height_px = min(min_height_px, max_height_px)
        self.alignment_note = "" if alignment is not None else "no calibration: side by side"
        self._checked: SessionInfo | None = None

    def mode(self, session: SessionInfo | None) -> str:
        """"aligned" when the alignment fits the session's sensors, else "side by side"."""
        if self.alignment is None or session is None:
            return "side by side"
        if self._checked is not session:
            self._checked = session
            why = self.alignment.mismatch(session.frame_size, session.event_size)
            self.alignment_note = f"not aligned: {why}" if why else \
                f"aligned with {self.alignment.source}"
        return "side by side" if self.alignment_note.startswith("not") else "aligned"

    def render(self, view: FeedView) -> Picture:
        if view.frame is None or view.session is None:
            phase, detail = view.phase
            return placeholder("waiting for the first frame", f"{phase} {detail}".strip())
        mode = self.mode(view.session)
        pic = self._aligned(view) if mode == "aligned" else self._side_by_side(view)
        shown = len(view.events)
        head = (f"frame {view.frame.frame_id}{' INCOMPLETE' if view.frame.incomplete else ''}"
                f"  |  {shown:,} events in the last {window_text(view)}  |  {self.alignment_note or mode}")
        below = pic.image.shape[0]
        pic.image = caption(pic.image, head)
        if pic.frame_box is not None:
            x0, y0, sx, sy = pic.frame_box
            pic.frame_box = (x0, y0 + pic.image.shape[0] - below, sx, sy)
        pic.stats.update({"mode": mode, "alignment": self.alignment_note,
                          "frame": {"id": view.frame.frame_id, "width": view.session.frame_size[0],
                                    "height": view.session.frame_size[1],
                                    "pixel_format": view.frame.pixel_format,
                                    "exposure_us": view.frame.exposure_us,
                                    "gain_db": view.frame.gain_db,
                                    "incomplete": view.frame.incomplete, **frame_stats(view.frame)},
                          "events_shown": shown})
        return pic

    def _display_height(self, sizes: list[tuple[int, int]]) -> int:
        """One height for tiles of these (w, h): the tallest sensor's, within min_height_px (small
        sensors are enlarged, pixels kept sharp) and max_height_px, all within max_width_px."""
        h = min(self.max_height_px, max(self.min_height_px, max(s[1] for s in sizes)))
        width = sum(s[0] * h / s[1] for s in sizes) + GAP_PX * (len(sizes) - 1)
        if width > self.max_width_px:
            h = int(h * (self.max_width_px - GAP_PX * (len(sizes) - 1)) / (width - GAP_PX * (len(sizes) - 1)))
        return max(h, 16)

    def frame_tile(self, frame: Frame, height: int) -> tuple[np.ndarray, float]:
        """The frame in colour at `height` pixels, and its scale."""
        rgb = to_rgb(frame.pixels, frame.pixel_format)
        s = height / rgb.shape[0]
        return resized(rgb, max(1, round(rgb.shape[1] * s)), height), s

    def events_tile(self, events: np.ndarray, size: tuple[int, int], height: int) -> np.ndarray:
        img = event_picture(events, size)
        s = height / size[1]
        return resized(img, max(1, round(size[0] * s)), height)

    def _side_by_side(self, view: FeedView) -> Picture:
        """Frame | events, one height; the camera on the beam splitter's reflected arm is
        flipped back, so both show the scene the same way round."""
        assert view.frame is not None and view.session is not None
        fw, fh = view.session.frame_size
        ew, eh = view.session.event_size
        h = self._display_height([(fw, fh), (ew, eh)])
        left, s = self.frame_tile(view.frame, h)
        right = self.events_tile(view.events, (ew, eh), h)
        mirrored = view.session.reflected_arm
        x0, sx = 0.0, s
        if mirrored == "frame":
            left = left[:, ::-1]
            x0, sx = left.shape[1] - 1.0, -s
        elif mirrored == "event":
            right = right[:, ::-1]
        flip = " (mirror image, flipped back)"
        note = view.events_note or "ON blue, OFF orange"
        frame_tile = caption(np.ascontiguousarray(left),
                             "frame camera" + (flip if mirrored == "frame" else ""))
        img = side_by_side([
            frame_tile,
            caption(np.ascontiguousarray(right), f"event camera: last {window_text(view)}, {note}"
                                                 + (flip if mirrored == "event" else ""))])
        return Picture(img, frame_box=(x0, float(frame_tile.shape[0] - left.shape[0]), sx, s))

    def _aligned(self, view: FeedView) -> Picture:
        a = self.alignment
        assert a is not None and view.frame is not None
        gray = to_gray(view.frame.pixels, view.frame.pixel_format)
        grid = cv2.remap(gray, a.frame_map1, a.frame_map2, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        img = np.repeat((grid.astype(np.float32) * 0.6).astype(np.uint8)[..., None], 3, axis=2)
        ev = view.events if view.events.size else np.zeros(0, EVENT_DTYPE)
        gx, gy, kept = a.events_on_grid(ev["x"], ev["y"])
        paint_events(img, gx[kept], gy[kept], ev["p"][kept])
        gw, gh = a.grid_size
        s = min(self.max_width_px / gw, self.max_height_px / gh, max(1.0, self.min_height_px / gh))
        if s != 1.0:
            img = resized(img, max(1, round(gw * s)), max(1, round(gh * s)))
        note = view.events_note or "ON blue, OFF orange"
        return Picture(caption(img, f"frame (grey, dimmed) + events of the last {window_text(view)} "
                                    f"on the aligned grid ({note})"))
