"""Play a sequence back: one picture per pair, RGB | events | overlay | labels, as an MP4 video at
the recording rate (`rpea show --video`), and the same picture as a PNG (`rpea show --index`).

The picture of a pair is `dataset.visual.panel` of `dataset.annotate.pair_views`, under a line
naming the sequence, the pair, its frame id and its time: a video frame and the PNG of the same
pair are the same picture. In a video every frame must have one size, so the labels column is
there for every pair as soon as one pair of the sequence is labelled (an unlabelled pair shows
the dimmed image: every pixel "ignore").

The rate is the trigger period the build measured on the event clock (`build/report` ->
`sync.period_us`), else the median interval of `pairs/frame_t_us`; within 0.1 % of a whole
number of frames per second it is rounded to it (a 50 001 us period plays at 20 fps).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

#: The rate of a sequence with a single pair (no interval to measure).
SINGLE_PAIR_FPS = 1.0
CAPTIONS = {"rgb": "RGB", "events": "events", "overlay": "overlay", "label": "labels"}


@dataclass(frozen=True)
class VideoResult:
    """What `write_sequence_video` wrote."""

    out: Path
    frames: int
    fps: float
    fps_source: str
    width: int
    height: int
    first_pair: int
    last_pair: int


def recording_fps(f: h5py.File) -> tuple[float, str]:
    """(frames per second of the recording, where the figure comes from) of a sequence file."""
    fps, source = 0.0, ""
    report = f.get("build/report")
    if isinstance(report, h5py.Dataset):
        try:
            raw = report[()]
            period_us = float(json.loads(raw.decode() if isinstance(raw, bytes) else raw)
                              ["sync"]["period_us"])
        except (ValueError, KeyError, TypeError):  # an older or foreign report: measure instead
            period_us = 0.0
        if period_us > 0 and math.isfinite(period_us):
            fps, source = 1e6 / period_us, "trigger period measured by rpea build"
    if not fps:
        t = np.asarray(f["pairs/frame_t_us"][()], np.int64)
        steps = np.diff(t)
        steps = steps[steps > 0]
        if steps.size:
            fps, source = 1e6 / float(np.median(steps)), "median interval between pairs"
        else:
            return SINGLE_PAIR_FPS, "one pair: no interval to measure"
    if abs(fps - round(fps)) <= 1e-3 * fps and round(fps) > 0:
        fps = float(round(fps))
    return fps, source


def has_labels(f: h5py.File) -> bool:
    """Whether any pair of the sequence is labelled (then every picture has a labels column)."""
    return bool(np.asarray(f["pairs/has_label"][()]).any())


def pair_picture(f: h5py.File, i: int, *, label_column: bool | None = None,
                 name: str | None = None) -> np.ndarray:
    """The picture of pair `i`: RGB | events | overlay (| labels) under an info line.

    `label_column`: True always shows the labels column, False never, None where the pair is
    labelled. `name` is the sequence's name in the info line [default: the file's attribute].
    """
    from dataset.annotate import pair_views
    from dataset.visual import caption, label_overlay, panel

    v = pair_views(f, i)
    show_label = bool(f["pairs/has_label"][i]) if label_column is None else label_column
    keys = ["rgb", "events", "overlay"]
    if show_label:
        if "label" not in v:  # unlabelled: every pixel is "ignore" (all 255), shown dimmed
            v["label"] = label_overlay(v["rgb"], np.asarray(f["labels"][i]))
        keys.append("label")
    caps = [CAPTIONS[k] for k in keys]
    if show_label and not f["pairs/has_label"][i]:
        caps[-1] = "no labels"
    t = f["pairs/frame_t_us"]
    seconds = (int(t[i]) - int(t[0])) / 1e6
    seq = name or str(f.attrs.get("sequence", ""))
    info = (f"{seq}  pair {i}/{len(t)}  frame {int(f['pairs/frame_id'][i])}  "
            f"t {seconds:.3f} s").strip()
    return caption(panel([v[k] for k in keys], caps), info)


def pair_range(num_pairs: int, start: int = 0, limit: int | None = None,
               every: int = 1) -> range:
    """The pairs a video shows: from `start`, every `every`-th, at most `limit` of them."""
    if not 0 <= start < num_pairs:
        raise ValueError(f"--start {start} out of range: the sequence has {num_pairs} pairs "
                         f"(0..{num_pairs - 1})")
    picked = range(start, num_pairs, every)
    return picked if limit is None else picked[:limit]


def write_sequence_video(path: Path, out: Path, *, start: int = 0, limit: int | None = None,
                         every: int = 1, fps: float | None = None,
                         progress: Callable[[int], None] | None = None,
                         on_plan: Callable[[int, float, str], None] | None = None) -> VideoResult:
    """Write the video of the sequence file `path` into `out` (MP4, published when complete).

    One frame per pair shown; `fps` [default: the recording rate, divided by `every` so the video
    still plays in real time]. `on_plan(frames, fps, source)` is called once the sequence is read
    and before any output exists; `progress(n)` per frame written.
    """
    from common.video import VideoWriter
    from dataset.reader import open_sequence_file

    with open_sequence_file(path) as f:
        n = int(f["images"].shape[0])
        if n == 0:
            raise ValueError(f"{path}: the sequence has no pairs")
        pairs = pair_range(n, start, limit, every)
        if fps is None:
            rate, source = recording_fps(f)
            rate /= every
            if every > 1:
                source += f", / {every} (--every)"
        else:
            rate, source = float(fps), "--fps"
        labels = has_labels(f)
        name = str(f.attrs.get("sequence", Path(path).stem))
        if on_plan is not None:
            on_plan(len(pairs), rate, source)
        height = width = 0
        with VideoWriter(out, rate) as video:
            for i in pairs:
                img = pair_picture(f, i, label_column=labels, name=name)
                height, width = img.shape[:2]
                video.write(img)
                if progress is not None:
                    progress(1)
    return VideoResult(out=out, frames=len(pairs), fps=rate, fps_source=source, width=width,
                       height=height, first_pair=pairs[0], last_pair=pairs[-1])
