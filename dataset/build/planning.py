"""Which sessions go into which split, and what each is (time of day, scene), from the
manifests, the simulator's ground truth or, failing both, a look at a few frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_text_atomic
from dataset import conditions as cond
from dataset.build.options import BuildError, BuildOptions, SessionPlan
from dataset.rpea_format import TIMES_OF_DAY
from dataset.splits import SessionKey, assign_splits, dump_splits, load_splits_file
from rig.frames import to_rgb
from rig.session import MANIFEST, SessionReader


def session_key(path: Path) -> SessionKey:
    """Name, time of day and scene of a session from its manifest (cheap: no frames read)."""
    reader = SessionReader(path)
    try:
        truth = reader.ground_truth
        tod = cond.time_of_day_from_manifest(reader.manifest)
        if tod is None and truth is not None:
            tod = truth.find("time_of_day")
            tod = tod if tod in TIMES_OF_DAY else None
        if tod is None:
            tod = _time_of_day_from_frames(reader)
        scene = reader.manifest.scene or (truth.find("scene") if truth is not None else None) \
            or reader.manifest.scenario or "unknown"
        return SessionKey(reader.name, tod, str(scene))
    finally:
        reader.close()


def _time_of_day_from_frames(reader: Any, samples: int = 5) -> str:
    n = reader.num_frames
    if n == 0:
        return "day"
    idx = np.unique(np.linspace(0, n - 1, min(samples, n)).astype(int))
    v = [cond.hsv_value(to_rgb(reader.frame(int(i)), reader.pixel_format)).mean() for i in idx]
    return cond.time_of_day_from_images(float(np.mean(v)))


def plan(sessions: list[Path], opts: BuildOptions) -> list[SessionPlan]:
    """Split assignment of every session (recorded in `<out>/splits.yaml`)."""
    keys: dict[str, tuple[Path, SessionKey]] = {}
    for p in sessions:
        p = Path(p)
        if not (p / MANIFEST).is_file():
            raise BuildError(f"{p}: not a session folder (no {MANIFEST})")
        k = session_key(p)
        if k.name in keys:
            raise BuildError(f"two sessions named {k.name!r}: {keys[k.name][0]} and {p}")
        keys[k.name] = (p, k)
    recorded = Path(opts.out_dir) / "splits.yaml"
    if opts.splits_file is not None:
        assignment = load_splits_file(opts.splits_file)
        unknown = sorted(set(keys) - set(assignment))
        if unknown:
            raise BuildError(f"{opts.splits_file}: no split for session(s) {', '.join(unknown)}")
    else:
        previous = load_splits_file(recorded) if recorded.is_file() else {}
        new = [k for name, (_, k) in keys.items() if name not in previous]
        assignment = {**previous, **assign_splits(new, seed=opts.seed, existing=previous)} \
            if new else dict(previous)
    Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
    merged = load_splits_file(recorded) if recorded.is_file() else {}
    merged.update({n: assignment[n] for n in keys})
    write_text_atomic(recorded, "# rpea build: split of each session (whole sessions only)\n"
                      + dump_splits(merged))
    return [SessionPlan(p, name, assignment[name], k.time_of_day, k.scene)
            for name, (p, k) in sorted(keys.items())]
