"""Ctrl-C as a stop request, for the loops that must end cleanly (a recording, a training run)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_sets(event: threading.Event) -> Iterator[None]:
    """While inside, the first Ctrl-C (SIGINT) sets `event` so the loop stops at its next check
    and keeps what it has; a second one raises KeyboardInterrupt at once (the user really wants
    out). Main thread only: elsewhere Ctrl-C keeps its default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
