"""MP4 videos of RGB pictures (PyAV, H.264), published atomically.

Every video the toolkit writes (`rpea show --video`, `rpea events render`, `cacd predict --video`)
goes through `VideoWriter`: frames are encoded into a temporary file beside the output, which
replaces the output only when the video is complete, so an interrupted render leaves nothing (or
the previous video) behind. H.264 in yuv420p needs even sizes: odd pictures are padded by one
black row or column, never scaled.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from common.atomic import PendingFile

#: The codec every player opens; crf 18 keeps event dots and label edges sharp.
CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
DEFAULT_CRF = 18


class VideoError(RuntimeError):
    """The video cannot be written (codec missing, bad size, disk)."""


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:  # a dependency of the package; a broken install says so
        raise VideoError("PyAV is not installed (pip install av): it writes the MP4 videos") from exc
    return av


def even_size(width: int, height: int) -> tuple[int, int]:
    """The encoded size of a `width` x `height` picture (H.264 4:2:0 wants even sides)."""
    return width + width % 2, height + height % 2


class VideoWriter:
    """Write RGB uint8 pictures (H, W, 3), all the same size, at `fps` into an MP4 file.

    Use as a context manager: leaving it normally publishes `path`; leaving it on an exception
    (Ctrl-C included) deletes the temporary file and leaves `path` as it was.
    """

    def __init__(self, path: str | Path, fps: float, *, crf: int = DEFAULT_CRF) -> None:
        if not (fps > 0 and np.isfinite(fps)):
            raise VideoError(f"{path}: frame rate must be a positive number, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.crf = int(crf)
        self.frames_written = 0
        self._pending: PendingFile | None = None
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # (width, height) of the pictures given

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, width: int, height: int) -> None:
        av = _import_av()
        w, h = even_size(width, height)
        self._pending = PendingFile(self.path, suffix=".mp4")
        try:
            self._container = av.open(str(self._pending.tmp_path), mode="w", format="mp4")
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream(CODEC, rate=rate)
        except Exception as exc:  # av.FFmpegError and OSError: one clear message
            self.abort()
            raise VideoError(f"{self.path}: cannot start an H.264 video: {exc}") from exc
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = PIXEL_FORMAT
        self._stream.options = {"crf": str(self.crf)}
        self._size = (width, height)

    def write(self, rgb: np.ndarray) -> None:
        """Append one picture (H, W, 3) uint8 RGB."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VideoError(f"{self.path}: a video picture is (H, W, 3) uint8, got "
                             f"{rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if self._container is None:
            self._open(w, h)
        if self._size != (w, h):
            raise VideoError(f"{self.path}: picture {w}x{h} differs from the video's "
                             f"{self._size[0]}x{self._size[1]}" if self._size else "")
        ew, eh = even_size(w, h)
        if (ew, eh) != (w, h):
            padded = np.zeros((eh, ew, 3), np.uint8)
            padded[:h, :w] = rgb
            rgb = padded
        av = _import_av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except Exception as exc:
            raise VideoError(f"{self.path}: encoding failed: {exc}") from exc
        self.frames_written += 1

    def close(self) -> Path:
        """Flush the encoder and publish the file; an empty video is an error (nothing written)."""
        if self._container is None:
            raise VideoError(f"{self.path}: no pictures to write")
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except Exception as exc:
            self.abort()
            raise VideoError(f"{self.path}: finishing the video failed: {exc}") from exc
        self._container = None
        assert self._pending is not None
        return self._pending.publish()

    def abort(self) -> None:
        """Drop the partial video: the output path is left as it was."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - already failing; the temp file goes anyway
                pass
            self._container = None
        if self._pending is not None:
            self._pending.discard()


def read_video_info(path: str | Path) -> dict[str, Any]:
    """Frame count, size and rate of an MP4 (decoded: the count is what a player shows)."""
    av = _import_av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n = sum(1 for _ in container.decode(stream))
        return {"frames": n, "width": stream.codec_context.width,
                "height": stream.codec_context.height, "fps": float(stream.average_rate or 0)}
