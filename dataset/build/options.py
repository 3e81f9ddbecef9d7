"""What `rpea build` takes, and its error type."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dataset import conditions as cond
from dataset.rpea_format import SCHEMA_VERSION
from rig.session import SessionManifest
from rig.sync import SyncConfig


class BuildError(RuntimeError):
    """A session cannot be built (the message names the session and the problem)."""


@dataclass
class BuildOptions:
    """Everything `rpea build` takes (also stored in each file as the build fingerprint)."""
    calib_path: Path
    out_dir: Path
    window: str = "ms"  # "ms": window_ms centred on the exposure mid-time; "exposure"
    window_ms: float = 50.0
    labels_dir: Path | None = None
    label_ids: str = "label"  # annotation PNGs hold Cityscapes "label" ids or "train" ids
    label_mapping: Path | None = None
    alpha: float = cond.ALPHA
    beta: float = cond.BETA
    splits_file: Path | None = None
    seed: int = 0
    workers: int = 1
    threads: int = 2  # per sequence: image preparation runs ahead of the (serial) HDF5 writes
    image_workers: int = 2  # processes making the images while this one streams events; 0: serial
    resume: bool = False
    write_masks: bool = True
    trigger_delay_us: int = 0  # trigger edge -> exposure start of the frame camera
    decode_chunk_bytes: int = 1 << 24
    sync: SyncConfig = field(default_factory=SyncConfig)
    progress: bool = True

    def fingerprint(self, calib_sha: str, session_manifest: SessionManifest) -> str:
        """What decides a sequence file's content: resume skips files with the same one."""
        keys = {k: str(v) for k, v in asdict(self).items()
                if k not in ("out_dir", "workers", "threads", "image_workers", "resume",
                             "progress", "calib_path", "splits_file", "seed",
                             "decode_chunk_bytes")}
        blob = json.dumps({"opts": keys, "calib": calib_sha, "schema": SCHEMA_VERSION,
                           "session": session_manifest.to_dict()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SessionPlan:
    path: Path
    name: str
    split: str
    time_of_day: str
    scene: str
