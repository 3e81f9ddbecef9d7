"""The live preview's server: a drawing thread that pulls from the feed, and a small HTTP server
(standard library only) with the page, `/snapshot.png` (`/snapshot.jpg`: what the page shows)
and `/stats.json`.

Why this split: HTTP handlers only encode the newest picture (once each) and read the counters
(no drawing on a request), the drawing thread draws at most at the camera rate and only while someone looks
(a request in the last IDLE_AFTER_S seconds), and the producers never wait for either. Every
thread is a daemon; `close()` stops them at the end of the command, Ctrl-C included.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from rig.evt.common import EVENT_DTYPE
from rig.preview.events import RawTail, warm_up
from rig.preview.feed import PreviewFeed, SessionInfo
from rig.preview.page import page_html
from rig.preview.render import (
    FeedView,
    OverlayRenderer,
    Picture,
    Renderer,
    encode_jpeg,
    encode_png,
    placeholder,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Nobody asked for this long: stop drawing until the next request.
IDLE_AFTER_S = 3.0
#: Never draw faster than this, whatever the camera rate.
MAX_DRAW_HZ = 30.0
#: A request waits at most this long for a fresh picture after the preview was idle.
FRESH_WAIT_S = 1.0


class PreviewError(RuntimeError):
    """The preview cannot serve (the message names the address, the problem and what to do)."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    preview: PreviewServer


class _IPv6HTTPServer(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "rig-preview"

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        preview = self.server.preview
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", preview.page)
        elif path == "/snapshot.png":
            self._send(200, "image/png", preview.snapshot("png"))
        elif path == "/snapshot.jpg":
            self._send(200, "image/jpeg", preview.snapshot("jpeg"))
        elif path == "/stats.json":
            self._send(200, "application/json", json.dumps(preview.stats()).encode())
        else:
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: the preview serves /, /snapshot.png, /snapshot.jpg and /stats.json\n")

    def _send(self, code: int, kind: str, body: bytes) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (ConnectionError, TimeoutError):  # the browser went away: nothing to tell
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: a request line per poll would bury the recording's status line."""


def _listen(host: str, port: int) -> _HTTPServer:
    cls = _IPv6HTTPServer if ":" in host else _HTTPServer
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        return cls((host, port), _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PreviewError(f"{where}: port {port} is in use (another preview or program listens "
                               "there); give another --preview-port, or --preview-port 0 for any "
                               "free one") from None
        if exc.errno == errno.EACCES:
            raise PreviewError(f"{where}: not allowed to listen there (ports below 1024 need root); "
                               "give a --preview-port from 1024 up") from None
        why = exc.strerror or str(exc)
        raise PreviewError(f"{where}: cannot listen there ({why}); give an address of this machine "
                           f"with --preview-host (default {DEFAULT_HOST})") from None


class PreviewServer:
    """The live preview of one command: binds `host:port` at once (so a busy port is an error
    before anything starts), serves after `start()`, stops at `close()`.

    `renderer` draws a `FeedView` (default: `OverlayRenderer()`, side by side). Port 0 picks a
    free port; `url` says which.
    """

    def __init__(self, feed: PreviewFeed, renderer: Renderer | None = None, *,
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, title: str = "rig") -> None:
        self.feed = feed
        self.renderer: Renderer = renderer if renderer is not None else OverlayRenderer()
        self.title = title
        self.page = page_html(title)
        self._httpd = _listen(host, port)
        self._httpd.preview = self
        self.host, self.port = host, int(self._httpd.server_address[1])
        self._lock = threading.Lock()
        self._fresh = threading.Condition(self._lock)
        self._image = placeholder("waiting for the recording to start").image
        self._encode_lock = threading.Lock()
        self._encoded: dict[str, tuple[int, bytes]] = {}  # kind -> (picture number, its bytes)
        self.encode_ms = {"png": 0.0, "jpeg": 0.0}
        self._stats: dict[str, Any] = {}
        self._seq = 0
        self._picture_t = time.monotonic()
        self._t0 = time.monotonic()
        self._last_request = 0.0
        self.rendered = 0
        self.frames_skipped = 0
        self.render_ms = 0.0
        self.error = ""
        self._tail: RawTail | None = None
        self._tail_session: SessionInfo | None = None
        self._stop = threading.Event()
        self._draw_thread = threading.Thread(target=self._draw_loop, name="preview-draw", daemon=True)
        self._http_thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                             name="preview-http", daemon=True)
        self._started = False

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    @property
    def watched(self) -> bool:
        """Someone asked for the page's numbers or picture in the last IDLE_AFTER_S seconds."""
        return time.monotonic() - self._last_request <= IDLE_AFTER_S

    def start(self) -> PreviewServer:
        if not self._started:
            warm_up()  # the decoder compiled now, not on the drawing thread during a recording
            self._started = True
            self._draw_thread.start()
            self._http_thread.start()
        return self

    def close(self) -> None:
        """Stop drawing and serving, and release the port (idempotent)."""
        self._stop.set()
        self.feed.poke()
        with self._fresh:
            self._fresh.notify_all()  # a request waiting for a fresh picture gets the last one
        if self._started:
            self._httpd.shutdown()
            self._draw_thread.join(timeout=5.0)
            self._http_thread.join(timeout=5.0)
            self._started = False
        self._httpd.server_close()
        if self._tail is not None:
            self._tail.close()

    def __enter__(self) -> PreviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the handlers hand out ---------------------------------------------------------------
    def _touch(self) -> bool:
        """A request: keep drawing. True when the preview had stopped drawing (nobody looked)."""
        now = time.monotonic()
        idle = now - self._last_request > IDLE_AFTER_S
        self._last_request = now
        if idle:
            self.feed.poke()
        return idle

    def snapshot(self, kind: str = "png") -> bytes:
        """The newest picture as "png" (lossless, for tools) or "jpeg" (what the page shows:
        a tenth of the PNG's encoding time here); after an idle spell, waits briefly for a
        fresh one. Encoded on the first request for each picture: one nobody fetches costs
        nothing."""
        if self._touch() and self._started:
            with self._fresh:
                seq = self._seq
                self._fresh.wait_for(lambda: self._seq != seq or self._stop.is_set(), FRESH_WAIT_S)
        with self._encode_lock:
            with self._lock:
                seq, image = self._seq, self._image
            cached = self._encoded.get(kind)
            if cached is None or cached[0] != seq:
                t0 = time.perf_counter()
                cached = (seq, encode_png(image) if kind == "png" else encode_jpeg(image))
                self._encoded[kind] = cached
                self.encode_ms[kind] = (time.perf_counter() - t0) * 1000.0
            return cached[1]

    def stats(self) -> dict[str, Any]:
        """The newest picture's numbers and the live counters (read now)."""
        self._touch()
        counts = dict(self.feed.counts)
        session = self.feed.session
        phase, detail = self.feed.phase
        with self._lock:
            out = json.loads(json.dumps(self._stats))  # a deep copy the handler may keep
            seq, age = self._seq, time.monotonic() - self._picture_t
        frame_stats = out.pop("frame", None)
        events = out.pop("events", {})
        events.update({"rate_ev_s": counts.pop("event_rate_ev_s", None),
                       "total": counts.pop("events", None)})
        out.update({
            "title": self.title, "phase": phase, "detail": detail,
            "time_s": round(time.monotonic() - self._t0, 3),
            "rate_hz": session.rate_hz if session is not None else None,
            "counters": counts, "events": events, "frame": frame_stats,
            "picture": {"seq": seq, "age_s": round(age, 3), "rendered": self.rendered,
                        "frames_skipped": self.frames_skipped, "render_ms": round(self.render_ms, 2),
                        "png_ms": round(self.encode_ms["png"], 2),
                        "jpeg_ms": round(self.encode_ms["jpeg"], 2)},
            "error": self.error})
        return out

    # -- the drawing thread -----------------------------------------------------------------------
    def _events(self, session: SessionInfo | None, window_us: int) -> tuple[np.ndarray, str]:
        if session is not self._tail_session:
            if self._tail is not None:
                self._tail.close()
            self._tail, self._tail_session = None, session
            if session is not None and session.raw_path is not None:
                w, h = session.event_size
                self._tail = RawTail(session.raw_path, width=w, height=h)
        if self._tail is None:
            return np.zeros(0, EVENT_DTYPE), "no event file"
        events = self._tail.window(window_us)
        return events, self._tail.note

    def _draw_loop(self) -> None:
        last_seq: int | None = None  # the frame drawn last (None: none since nobody looked)
        last_draw = 0.0
        while not self._stop.is_set():
            self.feed.wait(0.5)
            if self._stop.is_set():
                break
            if not self.watched:  # frames that pass now are not "skipped": nobody asked
                last_seq = None
                if self._tail is not None:
                    self._tail.forget()
                continue
            session = self.feed.session
            rate = session.rate_hz if session is not None and session.rate_hz > 0 else 20.0
            pause = last_draw + 1.0 / min(rate, MAX_DRAW_HZ) - time.monotonic()
            if pause > 0 and self._stop.wait(pause):
                break
            latest = self.feed.latest_frame()
            seq, frame = latest if latest is not None else (0, None)
            if last_seq is not None and seq > last_seq + 1:
                self.frames_skipped += seq - last_seq - 1
            window_us = int(round(1e6 / rate))
            t0 = time.perf_counter()
            try:
                events, note = self._events(session, window_us)
                view = FeedView(frame, seq, events, note, window_us, dict(self.feed.counts), session,
                                self.feed.phase)
                picture = self.renderer.render(view)
                self.error = ""
            except Exception as exc:  # noqa: BLE001 - the preview must never end the recording
                self.error = f"{type(exc).__name__}: {exc}"
                picture = placeholder("preview error", self.error)
                events, note = np.zeros(0, EVENT_DTYPE), ""
            self._publish(picture, events, note, window_us, t0)
            last_seq, last_draw = max(seq, last_seq or 0), time.monotonic()

    def _publish(self, picture: Picture, events: np.ndarray, note: str, window_us: int,
                 t0: float) -> None:
        stats = dict(picture.stats)
        stats["events"] = {"window_ms": window_us / 1000.0, "shown": int(len(events)), "note": note,
                           "bytes_skipped": self._tail.bytes_skipped if self._tail is not None else 0}
        stats["picture_size"] = [int(picture.image.shape[1]), int(picture.image.shape[0])]
        self.render_ms = (time.perf_counter() - t0) * 1000.0
        self.rendered += 1
        with self._fresh:
            self._image, self._stats = picture.image, stats
            self._seq += 1
            self._picture_t = time.monotonic()
            self._fresh.notify_all()
