"""An HDF5 file written under a temporary name and published atomically by `commit()`.

The streaming writers (the DSEC event writer, the RPEA sequence writer) keep their file open across
many calls, so no single `with common.atomic.atomic_path(...)` block can span the writing: they
hold a `common.atomic.PendingFile` instead, and get the same publication as every other file
(fsync, mode 0o666 less the umask, rename, fsync of the folder, no temporary file left behind on
failure).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from common.atomic import PendingFile


class PendingH5File:
    """`h5` is open for writing at a temporary path beside `path` until `commit` or `abort`."""

    def __init__(self, path: str | os.PathLike[str], *, suffix: str = ".h5.tmp") -> None:
        self.path = Path(path)
        self._pending = PendingFile(self.path, suffix=suffix)
        self.tmp_path: Path = self._pending.tmp_path
        try:
            self.h5 = h5py.File(self.tmp_path, "w")
        except BaseException:
            self._pending.discard()
            raise

    @property
    def finished(self) -> bool:
        return self._pending.done

    def commit(self) -> Path:
        """Close the file and publish it under `path`."""
        if self.finished:
            raise RuntimeError(f"{self.path}: already committed or aborted")
        self.h5.close()
        return self._pending.publish()

    def abort(self) -> None:
        """Close and remove the temporary file (a no-op once committed or aborted)."""
        if self.finished:
            return
        try:
            if self.h5.id.valid:
                self.h5.close()
        finally:
            self._pending.discard()
