"""The workspace: the folders the `rig`, `rpea` and `cacd` commands share, so that each command,
typed bare, finds what the one before it wrote (docs/workspace.md).

    recordings/   sessions (`rig record`, calibration sessions too)
    calib/        calib.yaml, report.json, report.png (`rig calibrate`)
    data/         the RPEA dataset (`rpea build`)
    runs/         one folder per training run (`cacd train`)

The folders are relative to the workspace root: the nearest folder, from the current one upwards,
that holds a `workspace.yaml`; without one, the current folder. `workspace.yaml` may move any of
them (`data: /mnt/lab/rpea`, relative paths are relative to the file); each command's own flag
overrides both.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKSPACE_FILE = "workspace.yaml"
#: Folder names of a workspace and their defaults (relative to the root).
DEFAULT_FOLDERS = {"recordings": "recordings", "calib": "calib", "data": "data", "runs": "runs"}
CALIB_FILE = "calib.yaml"


class WorkspaceError(ValueError):
    """workspace.yaml is unreadable or names something unknown (the message names the file)."""


@dataclass(frozen=True)
class Workspace:
    """Where the commands' shared folders are, and where each came from."""

    root: Path
    folders: dict[str, Path]
    config_file: Path | None = None  # the workspace.yaml read, None: all defaults
    from_config: frozenset[str] = field(default_factory=frozenset)  # folders it set

    @property
    def recordings(self) -> Path:
        return self.folders["recordings"]

    @property
    def calib(self) -> Path:
        return self.folders["calib"]

    @property
    def data(self) -> Path:
        return self.folders["data"]

    @property
    def runs(self) -> Path:
        return self.folders["runs"]

    @property
    def calib_file(self) -> Path:
        return self.calib / CALIB_FILE

    def show(self, path: Path) -> str:
        """`show_path`, and the workspace's folders end with '/' even before they exist."""
        text = show_path(path)
        return text + "/" if Path(path) in self.folders.values() and not text.endswith("/") else text

    def origin(self, folder: str) -> str:
        """Where a folder's location came from, for the commands' "defaults" line."""
        if folder in self.from_config and self.config_file is not None:
            return f"from {self.show(self.config_file)}"
        return "workspace default"

    def default_calibration(self, purpose: str = "") -> Path:
        """calib/calib.yaml for a command given no --calib, announced on stderr; a
        WorkspaceError naming it and the command that makes one when it is not there."""
        import sys

        path = self.calib_file
        if not path.is_file():
            raise WorkspaceError(
                f"no calibration at {self.show(path)} ({self.origin('calib')})"
                + (f" to {purpose}" if purpose else "")
                + ": run rig calibrate --checkerboard first, or give --calib FILE")
        print(f"calibration: {self.show(path)} ({self.origin('calib')})", file=sys.stderr)
        return path


def show_path(path: str | os.PathLike[str]) -> str:
    """`path` as a user reads it: relative to the current folder when inside it; a folder ends
    with '/'."""
    path = Path(path)
    try:
        rel = Path(os.path.relpath(path))
        text = str(path) if rel.parts[:1] == ("..",) else str(rel)
    except ValueError:  # another drive (Windows)
        text = str(path)
    return text + "/" if path.is_dir() and not text.endswith("/") else text


def new_folder_name(parent: str | os.PathLike[str], prefix: str) -> Path:
    """<parent>/<prefix>_<date>_<time> (a session, a run), with a suffix when that name is taken
    (two started within one second). Not created."""
    import datetime as dt

    base = Path(parent) / dt.datetime.now().strftime(f"{prefix}_%Y%m%d_%H%M%S")
    path, k = base, 2
    while path.exists():
        path, k = base.with_name(f"{base.name}_{k}"), k + 1
    return path


def find_workspace_file(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / WORKSPACE_FILE
        if candidate.is_file():
            return candidate
    return None


def load_workspace(cwd: str | os.PathLike[str] | None = None) -> Workspace:
    """The workspace of `cwd` (default: the current folder), see the module's docstring."""
    start = Path(cwd or os.getcwd()).resolve()
    config = find_workspace_file(start)
    root = config.parent if config is not None else start
    folders = {k: root / v for k, v in DEFAULT_FOLDERS.items()}
    from_config: set[str] = set()
    if config is not None:
        for key, value in _read_config(config).items():
            folders[key] = (root / Path(value).expanduser()).resolve()
            from_config.add(key)
    return Workspace(root, folders, config, frozenset(from_config))


def _read_config(path: Path) -> dict[str, str]:
    import yaml

    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"{path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise WorkspaceError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WorkspaceError(f"{path}: expected a mapping of folders, e.g. 'data: /mnt/lab/rpea'")
    out = {}
    for key, value in data.items():
        if key not in DEFAULT_FOLDERS:
            close = difflib.get_close_matches(str(key), DEFAULT_FOLDERS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WorkspaceError(f"{path}: unknown folder {key!r}{hint}; the folders are "
                                 f"{', '.join(DEFAULT_FOLDERS)}")
        if not isinstance(value, str) or not value.strip():
            raise WorkspaceError(f"{path}: {key} must be a folder path, got {value!r}")
        out[str(key)] = value
    return out
