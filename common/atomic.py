"""Publish a file atomically: readers see the old file or the new one, never half of one.

The one way every package writes a file that others read (session.json, calib.yaml, RPEA sequence
files, index.json, checkpoints, reports): write a temporary file in the target's own folder (so the
rename cannot cross a file system), fsync it, give it the mode a plain `open()` would have given
(0o666 less the umask: `mkstemp` makes 0o600, which colleagues on shared lab storage cannot read),
rename it over the target, fsync the folder (so the rename itself survives a power cut), and remove
the temporary file when anything fails on the way.

`removed_on_failure`: the same promise for a command's output folder: a command that fails takes
back what it created, so no half-written folder is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else by the
    set-and-restore dance (under a lock, so threads of this process do not race it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def published_mode() -> int:
    """The mode of a published file: what `open(path, "w")` would have created."""
    return 0o666 & ~current_umask()


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingFile:
    """A temporary file beside `path` that becomes `path` on `publish()`, or disappears on
    `discard()`: for writers that keep a file open across many calls (streaming HDF5 writers),
    where no single `with` block spans the writing. `suffix` ends the temporary name (e.g. ".png"
    for writers that pick the format by extension)."""

    def __init__(self, path: str | os.PathLike[str], *, suffix: str = ".tmp", mkdir: bool = True) -> None:
        self.path = Path(path)
        if mkdir:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=suffix,
                                        dir=self.path.parent)
        os.close(fd)
        self.tmp_path = Path(tmp_name)
        self.done = False

    def publish(self) -> Path:
        """fsync the temporary file, give it the published mode, rename it over `path`, fsync
        the folder; on any failure the temporary file is removed."""
        if self.done:
            raise RuntimeError(f"{self.path}: already published or discarded")
        try:
            fsync_file(self.tmp_path)
            os.chmod(self.tmp_path, published_mode())
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.discard()
            raise
        self.done = True
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (a no-op once published or discarded)."""
        if not self.done:
            self.done = True
            self.tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp",
                mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an exception the file
    written there is published as `path` (`PendingFile.publish`); otherwise it is removed."""
    pending = PendingFile(path, suffix=suffix, mkdir=mkdir)
    try:
        yield pending.tmp_path
    except BaseException:
        pending.discard()
        raise
    pending.publish()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any], *,
                 suffix: str = ".tmp") -> None:
    """`write(tmp_path)` then publish it as `path` (see `atomic_path`)."""
    with atomic_path(path, suffix=suffix) as tmp:
        write(tmp)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_default(obj: Any) -> Any:
    """JSON for the numpy scalars and arrays, sets and paths that reports and manifests hold."""
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2,
                      default: Callable[[Any], Any] | None = json_default) -> None:
    """`data` as JSON (with a final newline) published atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=default) + "\n")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what creating it would add)."""
    path = Path(os.path.abspath(path))
    if path.exists():
        return None
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


@contextlib.contextmanager
def removed_on_failure(*paths: str | os.PathLike[str] | None,
                       keep: Callable[[Path], bool] | None = None) -> Iterator[None]:
    """Output paths a command is about to create: when the block fails (any Exception, or a
    non-zero SystemExit), whatever of them the block created is removed again (with the parent
    folders it created) unless `keep(path)` says it holds something worth keeping. Paths that
    existed before are never touched."""
    new = [m for p in paths if p is not None and (m := _first_missing(Path(p))) is not None]
    try:
        yield
    except BaseException as exc:
        failed = isinstance(exc, Exception) or (isinstance(exc, SystemExit) and exc.code not in (0, None))
        if failed:
            for path in new:
                if not path.exists() and not path.is_symlink():
                    continue
                if keep is not None and keep(path):
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
        raise
