"""Validate RPEA datasets (`rpea check`): schema, counts, checksums, event windows, alignment.

Every check reads the files in bounded pieces (events chunk by chunk, images one at a time), so a
dataset of any size is checked in constant memory. Problems are returned, not raised: the CLI
prints them all and exits non-zero when any is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter)
import numpy as np

from common.progress import progress_bar
from dataset.rpea_format import (
    BLOSC_FILTER_ID,
    COMPRESSED_DATASETS,
    EVENT_FIELDS,
    IGNORE,
    IMAGE_DTYPE,
    LABEL_DTYPE,
    MASK_DTYPE,
    MASKS,
    NUM_CLASSES,
    PAIR_FIELDS,
    READABLE_SCHEMAS,
    RECTIFY_MAP,
    ROOT_ATTRS,
    SCHEMA_VERSION,
    TIMES_OF_DAY,
    grid_positions,
    ms_index_of,
    nearest_grid_pixels,
    rectify_map_of,
    required_paths,
    schema_of,
    sha256_file,
    t_offset_of,
)

SCAN = 1 << 20  # events read per step


@dataclass(frozen=True)
class Problem:
    level: str  # "error" | "warning"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7s} {self.where}: {self.message}"


class _Collector:
    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[Problem] = []

    def error(self, msg: str) -> None:
        self.items.append(Problem("error", self.where, msg))

    def warn(self, msg: str) -> None:
        self.items.append(Problem("warning", self.where, msg))


def check_root(root: str | Path, *, alignment: bool = True, checksums: bool = True,
               progress: bool = False) -> list[Problem]:
    """Check `root` (a dataset folder with split subfolders) or a single split folder;
    `progress`: a bar over the sequences (on a terminal only)."""
    root = Path(root)
    if not root.is_dir():
        return [Problem("error", str(root), "not a folder")]
    if (root / "index.json").is_file():
        splits = [root]
    else:
        splits = sorted(p for p in root.iterdir() if p.is_dir() and (p / "index.json").is_file())
    if not splits:
        return [Problem("error", str(root), "no index.json here nor in any subfolder "
                        "(is this an `rpea build` output?)")]
    out: list[Problem] = []
    for split in splits:
        out += check_split(split, alignment=alignment, checksums=checksums, progress=progress)
    return out


def check_split(split_dir: Path, *, alignment: bool = True, checksums: bool = True,
                progress: bool = False) -> list[Problem]:
    c = _Collector(str(split_dir / "index.json"))
    try:
        index = json.loads((split_dir / "index.json").read_text())
        seqs = index["sequences"]
    except (OSError, ValueError, KeyError) as err:
        c.error(f"unreadable index ({err})")
        return c.items
    if str(index.get("schema_version", "")) not in READABLE_SCHEMAS:
        c.error(f"schema version {index.get('schema_version')!r}, expected one of "
                f"{', '.join(READABLE_SCHEMAS)}")
    if index.get("split") != split_dir.name:
        c.warn(f"index says split {index.get('split')!r} but the folder is {split_dir.name!r}")
    listed = set()
    out = c.items
    for s in progress_bar(seqs, desc=f"check {split_dir.name}", unit="seq", enabled=progress,
                          leave=False):
        path = split_dir / str(s.get("file", ""))
        listed.add(path.name)
        if not path.is_file():
            c.error(f"sequence {s.get('name')!r}: file {path.name} missing")
            continue
        if checksums and s.get("sha256") != sha256_file(path):
            c.error(f"sequence {s.get('name')!r}: sha256 of {path.name} does not match the index")
        probs, counts = check_sequence(path, alignment=alignment, expect_split=split_dir.name)
        out += probs
        if counts is not None:
            if counts[0] != s.get("num_pairs"):
                c.error(f"{path.name}: index says {s.get('num_pairs')} pairs, file has {counts[0]}")
            if "num_labelled" in s and counts[1] != s["num_labelled"]:
                c.error(f"{path.name}: index says {s['num_labelled']} labelled, file has {counts[1]}")
    for stray in sorted(split_dir.glob("*.h5")):
        if stray.name not in listed:
            c.warn(f"{stray.name} is not listed in index.json")
    return out


def check_sequence(path: Path, *, alignment: bool = True, expect_split: str | None = None
                   ) -> tuple[list[Problem], tuple[int, int] | None]:
    """All checks of one sequence file; returns problems and (num_pairs, num_labelled)."""
    c = _Collector(str(path))
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        c.error(f"cannot open as HDF5 ({err})")
        return c.items, None
    with f:
        counts = _check_schema(f, c, expect_split)
        if counts is None:
            return c.items, None
        n, h, w = counts
        _check_events(f, c, h, w)
        labelled = _check_pairs(f, c, n)
        _check_labels(f, c, n)
        if alignment and n:
            _check_alignment(f, c)
            _check_label_alignment(f, c)
    return c.items, (n, labelled)


def _check_schema(f: h5py.File, c: _Collector, expect_split: str | None) -> tuple[int, int, int] | None:
    missing = [a for a in ROOT_ATTRS if a not in f.attrs]
    if missing:
        c.error(f"root attributes missing: {', '.join(missing)}")
    schema = schema_of(f)
    if schema not in READABLE_SCHEMAS:
        c.error(f"schema_version {f.attrs.get('schema_version')!r}, expected one of "
                f"{', '.join(READABLE_SCHEMAS)}")
        return None
    if schema != SCHEMA_VERSION:
        c.warn(f"schema {schema}: readable, but DSEC tools need {SCHEMA_VERSION} (t_offset and "
               "ms_to_idx at the root); rebuild with `rpea build` to update")
    tod = f.attrs.get("time_of_day")
    if tod is not None and str(tod) not in TIMES_OF_DAY:
        c.error(f"time_of_day {tod!r} not one of {TIMES_OF_DAY}")
    if expect_split and "split" in f.attrs and str(f.attrs["split"]) != expect_split:
        c.error(f"split attribute {f.attrs['split']!r} but the file sits in {expect_split!r}")
    absent = [k for k in required_paths(schema) if k not in f]
    if absent:
        c.error(f"missing: {', '.join(absent)}")
        return None
    img, lab = f["images"], f["labels"]
    if img.ndim != 4 or img.shape[3] != 3 or img.dtype != IMAGE_DTYPE:
        c.error(f"images: shape {img.shape} {img.dtype}, expected (N, H, W, 3) {np.dtype(IMAGE_DTYPE)}")
        return None
    n, h, w = img.shape[:3]
    if lab.shape != (n, h, w) or lab.dtype != LABEL_DTYPE:
        c.error(f"labels: shape {lab.shape} {lab.dtype}, expected {(n, h, w)} {np.dtype(LABEL_DTYPE)}")
    if n and img.chunks != (1, h, w, 3):
        c.error(f"images: chunks {img.chunks}, expected one image per chunk {(1, h, w, 3)}")
    if MASKS in f and (f[MASKS].shape != (n, h, w) or f[MASKS].dtype != MASK_DTYPE):
        c.error(f"masks: shape {f[MASKS].shape} {f[MASKS].dtype}, expected {(n, h, w)} "
                f"{np.dtype(MASK_DTYPE)}")
    for name in COMPRESSED_DATASETS:
        if f[name].size and str(BLOSC_FILTER_ID) not in f[name]._filters:
            c.error(f"{name}: not Blosc-compressed (filters {list(f[name]._filters)})")
    if int(f.attrs.get("num_pairs", -1)) != n:
        c.error(f"attribute num_pairs={f.attrs.get('num_pairs')} but images has {n}")
    if (int(f.attrs.get("height", -1)), int(f.attrs.get("width", -1))) != (h, w):
        c.error(f"attributes height/width {f.attrs.get('height')}x{f.attrs.get('width')} "
                f"!= image grid {h}x{w}")
    for k, dt in EVENT_FIELDS.items():
        if f[f"events/{k}"].dtype != np.dtype(dt):
            c.error(f"events/{k}: dtype {f[f'events/{k}'].dtype}, expected {np.dtype(dt)}")
    sizes = {f[f"events/{k}"].shape for k in EVENT_FIELDS}
    if len(sizes) != 1:
        c.error(f"events/* lengths differ: {sorted(sizes)}")
        return None
    if RECTIFY_MAP in f:
        rm = f[RECTIFY_MAP]
        if rm.ndim != 3 or rm.shape[2] != 2 or rm.dtype != np.float32:
            c.error(f"{RECTIFY_MAP}: shape {rm.shape} {rm.dtype}, expected (sensor H, W, 2) float32")
            return None
    for k, dt in PAIR_FIELDS.items():
        if k not in f["pairs"]:
            c.error(f"pairs/{k} missing")
        elif f["pairs"][k].shape != (n,):
            c.error(f"pairs/{k}: shape {f['pairs'][k].shape}, expected ({n},)")
        elif f["pairs"][k].dtype != np.dtype(dt):
            c.error(f"pairs/{k}: dtype {f['pairs'][k].dtype}, expected {np.dtype(dt)}")
    if not str(f["calib"].attrs.get("yaml", "")).strip():
        c.error("calib/ has no yaml attribute (the calibration used)")
    if any(p.level == "error" for p in c.items):
        return None
    return n, h, w


def _check_events(f: h5py.File, c: _Collector, h: int, w: int) -> None:
    """Sorted times, `ms_to_idx` equal to a recomputation, events on the grid (through the
    rectify map for schema 2.0: stored pixels inside the map, mapped positions on the grid)."""
    ev = f["events"]
    e = ev["t"].shape[0]
    ms_ds = ms_index_of(f)
    ms = ms_ds[()].astype(np.int64) if ms_ds is not None else np.zeros(0, np.int64)
    rmap = rectify_map_of(f)
    sensor_h, sensor_w = rmap.shape[:2] if rmap is not None else (h, w)
    last = -1
    expect: list[np.ndarray] = []
    next_ms = 0
    bad_xy = bad_p = unsorted = 0
    for a in range(0, e, SCAN):
        b = min(e, a + SCAN)
        t = ev["t"][a:b].astype(np.int64)
        x, y, p = ev["x"][a:b], ev["y"][a:b], ev["p"][a:b]
        outside = (x >= sensor_w) | (y >= sensor_h)
        bad_xy += int(outside.sum())
        if rmap is not None and not outside.any():
            _, _, inside = nearest_grid_pixels(*grid_positions(rmap, x, y), h, w)
            bad_xy += int((~inside).sum())
        bad_p += int((p > 1).sum())
        unsorted += int((np.diff(t) < 0).sum()) + int(t[0] < last)
        last = int(t[-1])
        last_ms = last // 1000
        if last_ms >= next_ms:
            bounds = np.arange(next_ms, last_ms + 1, dtype=np.int64) * 1000
            expect.append(a + np.searchsorted(t, bounds, side="left"))
            next_ms = last_ms + 1
    if bad_xy:
        c.error(f"{bad_xy} events outside the {w}x{h} grid"
                + (f" (or the {sensor_w}x{sensor_h} rectify map)" if rmap is not None else ""))
    if bad_p:
        c.error(f"{bad_p} events with polarity other than 0/1")
    if unsorted:
        c.error(f"events/t not sorted ({unsorted} steps back)")
        return
    exp = np.concatenate(expect) if expect else np.zeros(0, np.int64)
    if ms.size < exp.size or not np.array_equal(ms[:exp.size], exp) or np.any(ms[exp.size:] != e):
        c.error("ms_to_idx does not match events/t (DSEC: index of the first event with "
                "t >= 1000 m)")


def _check_pairs(f: h5py.File, c: _Collector, n: int) -> int:
    p = {k: f["pairs"][k][()] for k in f["pairs"].keys()}
    ev = f["events"]
    e = ev["t"].shape[0]
    off = t_offset_of(f)
    i0, i1 = p["event_idx0"], p["event_idx1"]
    t0, t1 = p["event_t0_us"], p["event_t1_us"]
    if n == 0:
        c.warn("sequence has no pairs")
        return 0
    if np.any(i0 > i1) or np.any(i0 < 0) or np.any(i1 > e):
        c.error(f"event slices out of range or reversed (events: {e})")
        return int(p["has_label"].sum())
    if np.any(t1 <= t0):
        c.error("empty or reversed event windows (event_t1_us <= event_t0_us)")
    ex0, ex1 = p["exposure_t0_us"], p["exposure_t1_us"]
    if np.any(ex1 < ex0):
        c.error("exposure windows reversed")
    mid = (ex0 + ex1) // 2
    outside = (mid < t0) | (mid >= t1)
    if outside.any():
        c.error(f"{int(outside.sum())} pairs whose event window does not contain the exposure "
                f"mid-time (first: pair {int(np.flatnonzero(outside)[0])})")
    if np.any(np.diff(p["frame_t_us"]) <= 0):
        c.error("pairs/frame_t_us not strictly increasing")
    bad = 0
    for i in range(n):
        a, b = int(i0[i]), int(i1[i])
        # the slice must hold exactly the events in [t0, t1): check its ends and their neighbours
        lo, hi = max(a - 1, 0), min(b + 1, e)
        t = ev["t"][lo:hi].astype(np.int64) + off if hi > lo else np.zeros(0, np.int64)
        inner = t[(a - lo):(b - lo)]
        if inner.size and (inner[0] < t0[i] or inner[-1] >= t1[i]):
            bad += 1
        elif a > 0 and t[0] >= t0[i]:
            bad += 1
        elif b < e and t[-1] < t1[i]:
            bad += 1
    if bad:
        c.error(f"{bad} pairs whose event slice is not exactly the events in its window")
    for k in ("overexposed_frac", "underexposed_frac"):
        v = p[k]
        if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
            c.error(f"pairs/{k} outside [0, 1]")
    for k in ("has_label", "is_night"):
        if np.any(p[k] > 1):
            c.error(f"pairs/{k} not 0/1")
    return int(p["has_label"].sum())


def _check_labels(f: h5py.File, c: _Collector, n: int) -> None:
    has = f["pairs/has_label"][()]
    lab = f["labels"]
    bad_range, unlabelled_not_ignore = [], []
    for i in range(n):
        v = np.unique(lab[i])
        if np.any((v >= NUM_CLASSES) & (v != IGNORE)):
            bad_range.append(i)
        if not has[i] and (v.size != 1 or v[0] != IGNORE):
            unlabelled_not_ignore.append(i)
    if bad_range:
        c.error(f"labels outside 0..{NUM_CLASSES - 1}/255 in pairs {bad_range[:5]}")
    if unlabelled_not_ignore:
        c.error(f"pairs marked unlabelled but with labels: {unlabelled_not_ignore[:5]}")


def alignment_offset(image: np.ndarray, count: np.ndarray, radius: int = 6) -> tuple[int, int, float]:
    """Shift (dx, dy) of the event-count map that best matches the image's gradient magnitude.

    Events fire where brightness changes, i.e. at moving edges; on a pixel-aligned pair the
    cross-correlation of the event counts with the image gradient peaks at (0, 0) (the window is
    centred on the exposure, so motion spreads events symmetrically). Returns the peak and its
    prominence (peak / mean of the correlation surface).
    """
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.sqrt(gx * gx + gy * gy)
    cap = float(np.percentile(count[count > 0], 99)) if (count > 0).any() else 1.0
    cnt = np.minimum(count.astype(np.float32), cap)
    r = radius
    g = grad[r:-r, r:-r]
    g = (g - g.mean()) / (g.std() + 1e-6)
    best, surface = None, np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    h, w = g.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            win = cnt[r + dy:r + dy + h, r + dx:r + dx + w]
            surface[dy + r, dx + r] = float((win * g).mean())
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    best = (int(ix) - r, int(iy) - r)
    s = surface - surface.min()
    prominence = float(s.max() / (s.mean() + 1e-9))
    return best[0], best[1], prominence


def _check_alignment(f: h5py.File, c: _Collector, max_pairs: int = 6) -> None:
    n = f["images"].shape[0]
    h, w = f["images"].shape[1:3]
    i0, i1 = f["pairs/event_idx0"][()], f["pairs/event_idx1"][()]
    counts = i1 - i0
    picks = [int(i) for i in np.argsort(-counts)[:max_pairs] if counts[i] > 0.002 * h * w]
    offsets = []
    rmap = rectify_map_of(f)
    for i in picks:
        x, y, inside = nearest_grid_pixels(
            *grid_positions(rmap, f["events/x"][i0[i]:i1[i]], f["events/y"][i0[i]:i1[i]]), h, w)
        x, y = x[inside], y[inside]
        cnt = np.bincount(y * w + x, minlength=h * w).reshape(h, w)
        dx, dy, prom = alignment_offset(f["images"][i], cnt)
        if prom > 1.5:
            offsets.append((dx, dy))
    if len(offsets) < 2:
        if n:
            c.warn("alignment sanity not assessed (too few pairs with clear event structure)")
        return
    med = np.median(np.array(offsets), axis=0)
    if np.any(np.abs(med) > 2):
        c.error(f"events and images look misaligned: event counts best match the image gradient "
                f"at a shift of ({med[0]:+.0f}, {med[1]:+.0f}) px over {len(offsets)} pairs")


def label_boundaries(label: np.ndarray) -> np.ndarray:
    """1 where a pixel's label differs from its right or lower neighbour (ignore counts as a
    class: an unlabelled region's edge is an edge of the picture too)."""
    lab = label.astype(np.int32)
    b = np.zeros(lab.shape, np.float32)
    b[:, :-1] += lab[:, 1:] != lab[:, :-1]
    b[:-1, :] += lab[1:, :] != lab[:-1, :]
    return np.minimum(b, 1.0)


def _check_label_alignment(f: h5py.File, c: _Collector, max_pairs: int = 6) -> None:
    """Labels must sit on the image: the shift of the label boundaries that best matches the
    image gradient is (0, 0) on a well-built file (a label remapped with another geometry than
    its image, or flipped, shows up here before it costs a training run)."""
    if "labels" not in f or "pairs/has_label" not in f:
        return
    labelled = np.flatnonzero(f["pairs/has_label"][()])
    if labelled.size == 0:
        return
    picks = labelled[np.linspace(0, labelled.size - 1, min(max_pairs, labelled.size)).astype(int)]
    offsets = []
    for i in sorted(set(int(k) for k in picks)):
        edges = label_boundaries(f["labels"][i])
        if edges.mean() < 1e-3:  # one class everywhere: nothing to match
            continue
        dx, dy, prom = alignment_offset(f["images"][i], edges, radius=4)
        if prom > 1.5:
            offsets.append((dx, dy))
    if len(offsets) < 2:
        return
    med = np.median(np.array(offsets), axis=0)
    if np.any(np.abs(med) > 1):
        c.error(f"labels and images look misaligned: label boundaries best match the image "
                f"gradient at a shift of ({med[0]:+.0f}, {med[1]:+.0f}) px over {len(offsets)} pairs")
