"""`rpea build`: recorded sessions -> pixel-aligned RPEA sequence files (docs/rpea-format.md).

Per session (= sequence), in one pass over the event stream and one over the frames:

1. decode `events.raw` chunk by chunk; each chunk's events are mapped to the aligned grid,
   cropped to the valid ROI and appended to the sequence file (bounded memory); trigger edges are
   collected on the way;
2. pair frames with rising edges through the MCU pulse reports (`rig.sync`: explicit, every
   dropped item reported, never a shifted pairing);
3. per pair: the exposure window on the event clock (rising edge + exposure time, or the falling
   edge when ExposureActive drives the trigger input), the event window (`--window exposure` or
   `--window-ms` centred on the exposure mid-time), its slice of `events/*`;
4. per pair: debayer + align + crop the image, tag conditions, attach labels (simulator ground
   truth or annotation PNGs) and instance masks;
5. write the file atomically (temp + rename) and return its index entry.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter)
import numpy as np

from common.atomic import write_json_atomic, write_text_atomic
from dataset import conditions as cond
from dataset.labels import LabelError, find_label_files, lookup_table, read_label_png, validate_train_ids
from dataset.rpea_format import (
    SCHEMA_VERSION,
    TIMES_OF_DAY,
    SequenceWriter,
    read_index,
    sha256_file,
    update_index,
)
from dataset.splits import SPLITS, SessionKey, assign_splits, dump_splits, load_splits_file
from rig.ground_truth import GroundTruthLabels
from rig.session import BUILDABLE_STATUSES, MANIFEST, SessionManifest
from rig.sync import SyncConfig, SyncResult, pair_session


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
        import hashlib

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


# --------------------------------------------------------------------------------------------
# planning


def session_key(path: Path) -> SessionKey:
    """Name, time of day and scene of a session from its manifest (cheap: no frames read)."""
    from rig.session import SessionReader

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
    from rig.frames import to_rgb

    n = reader.num_frames
    if n == 0:
        return "day"
    idx = np.unique(np.linspace(0, n - 1, min(samples, n)).astype(int))
    v = [cond.hsv_value(to_rgb(reader.frame(int(i)), reader.pixel_format)).mean() for i in idx]
    return cond.time_of_day_from_images(float(np.mean(v)))


def plan(sessions: list[Path], opts: BuildOptions) -> list[SessionPlan]:
    """Split assignment of every session (recorded in `<out>/splits.yaml`)."""
    keys = {}
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
        assignment = {**previous, **assign_splits(new, seed=opts.seed)} if new else dict(previous)
    Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
    merged = load_splits_file(recorded) if recorded.is_file() else {}
    merged.update({n: assignment[n] for n in keys})
    write_text_atomic(recorded, "# rpea build: split of each session (whole sessions only)\n"
                      + dump_splits(merged))
    return [SessionPlan(p, name, assignment[name], k.time_of_day, k.scene)
            for name, (p, k) in sorted(keys.items())]


# --------------------------------------------------------------------------------------------
# one sequence


def _triggers_only(events_path: Path, chunk_bytes: int) -> np.ndarray:
    """Pass 1 of the parallel build: the trigger edges (decoding is cheap; events are dropped)."""
    from rig.evt3 import TRIGGER_DTYPE, iter_chunks

    parts = [tr for _, tr in iter_chunks(events_path, chunk_bytes=chunk_bytes) if tr.size]
    return np.concatenate(parts) if parts else np.zeros(0, TRIGGER_DTYPE)


def build_sequence(p: SessionPlan, opts: BuildOptions, *,
                   progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Build `<out>/<split>/<name>.h5`; returns its index entry plus `report` (sync, timing).

    With `opts.image_workers` > 0 the images (debayer, warp, tags, labels, compression) are made
    by that many processes (each a contiguous range of pairs, into a temporary file) while this
    one streams the events; their compressed chunks are then copied over as they are. With 0,
    one pass does everything here.
    """
    from dataset.alignment import Alignment
    from rig.evt3 import TRIGGER_DTYPE, iter_chunks
    from rig.session import SessionReader

    t_start = time.perf_counter()
    reader = SessionReader(p.path)
    out_path = Path(opts.out_dir) / p.split / f"{p.name}.h5"
    try:
        fingerprint = opts.fingerprint(sha256_file(opts.calib_path), reader.manifest)
        if opts.resume and out_path.is_file():
            entry = _resume_entry(out_path, fingerprint)
            if entry is not None:
                entry["report"] = {"resumed": True}
                return entry
        if reader.status not in BUILDABLE_STATUSES:
            raise BuildError(f"{p.path}: session status is {reader.status!r} (need "
                             f"{' or '.join(BUILDABLE_STATUSES)})")
        if not reader.events_path.is_file():
            raise BuildError(f"{reader.events_path}: missing")
        manifest = reader.manifest
        align = Alignment.from_file(opts.calib_path)
        writer = SequenceWriter(out_path, align.height, align.width)
        job = None
        try:
            sync = None
            if opts.image_workers > 0:
                sync = pair_session(reader, _triggers_only(reader.events_path,
                                                           opts.decode_chunk_bytes), opts.sync)
                job = _ImageJob.start(p, opts, reader, sync, out_path)
            # events: streaming decode -> aligned (cropped grid) -> appended; triggers collected
            trig_chunks = []
            n_raw = 0
            total = max(1, reader.events_path.stat().st_size)
            done = 0
            for events, triggers in iter_chunks(reader.events_path,
                                                chunk_bytes=opts.decode_chunk_bytes):
                if triggers.size:
                    trig_chunks.append(triggers)
                if events.size:
                    n_raw += events.size
                    xa, ya, keep = align.map_events(events["x"], events["y"])
                    writer.append_events(xa, ya, events["t"][keep], events["p"][keep])
                done = min(total, done + opts.decode_chunk_bytes)
                if progress:
                    progress("events", done, total)
            writer.finish_events()
            if sync is None:
                triggers = np.concatenate(trig_chunks) if trig_chunks else np.zeros(0, TRIGGER_DTYPE)
                sync = pair_session(reader, triggers, opts.sync)

            # windows on the event clock
            n = sync.num_pairs
            exp_t0 = sync.edge_t_us + int(opts.trigger_delay_us)
            exposure_us = reader.frame_meta["exposure_us"][sync.frame_index].astype(np.float64)
            exp_t1 = exp_t0 + np.rint(exposure_us).astype(np.int64)
            if manifest.wiring.exposure_active_to_event:
                exp_t1 = np.where(sync.edge_fall_t_us > exp_t0, sync.edge_fall_t_us, exp_t1)
            ev_t0, ev_t1 = event_windows(exp_t0, exp_t1, opts.window, opts.window_ms)
            idx0 = writer.event_index(ev_t0)
            idx1 = writer.event_index(ev_t1)

            # images, conditions, labels: from the worker, or made here
            if job is not None:
                parts = job.finish()
                writer.create_pairs(n, with_masks=parts[0]["with_masks"])
                for part in parts:
                    with h5py.File(part["path"], "r") as src:
                        writer.copy_pairs_from(src, part["row0"])
                    Path(part["path"]).unlink(missing_ok=True)
                result = {k: np.concatenate([q[k] for q in parts])
                          for k in ("over", "under", "has_label")}
                result["label_source"] = parts[0]["label_source"]
                result["labels_missing"] = sum(q["labels_missing"] for q in parts)
            else:
                writer.create_pairs(n, with_masks=opts.write_masks and _has_masks(reader))
                result = make_pair_images(reader, p.name, opts, align, sync, writer.images,
                                          writer.labels, writer.masks, progress)
            tod = p.time_of_day
            writer.write_pairs({
                "frame_id": sync.frame_id, "frame_t_us": exp_t0,
                "exposure_t0_us": exp_t0, "exposure_t1_us": exp_t1,
                "event_t0_us": ev_t0, "event_t1_us": ev_t1,
                "event_idx0": idx0, "event_idx1": idx1, "has_label": result["has_label"],
                "overexposed_frac": result["over"], "underexposed_frac": result["under"],
                "is_night": np.full(n, cond.is_night_tag(tod), np.uint8),
                "pulse_index": sync.pulse_index, "frame_index": sync.frame_index,
            })
            writer.write_calib(align.yaml_text)
            report = {
                "sync": sync.to_dict(), "label_source": result["label_source"],
                "labels_missing": result["labels_missing"], "events_decoded": int(n_raw),
                "events_kept": int(writer.num_events),
                "events_reordered": int(writer.events_reordered),
                "duration_s": float(manifest.duration_s),
                "image_workers": int(opts.image_workers),
            }
            writer.write_extra("report", json.dumps(report))
            writer.write_extra("options", json.dumps({k: str(v) for k, v in asdict(opts).items()}))
            sha = writer.commit({
                "sequence": p.name, "scene": p.scene, "time_of_day": tod, "split": p.split,
                "source_session": reader.name, "fingerprint": fingerprint,
                "window": opts.window, "window_ms": float(opts.window_ms),
                "alpha": float(opts.alpha), "beta": float(opts.beta),
            })
        except BaseException:
            writer.abort()
            if job is not None:
                job.cancel()
            raise
    finally:
        reader.close()
    report["build_s"] = time.perf_counter() - t_start
    report["recording_s"] = _recording_seconds(sync, manifest.trigger_period_us)
    return {"name": p.name, "file": out_path.name, "num_pairs": int(n),
            "num_labelled": int(result["has_label"].sum()), "sha256": sha, "time_of_day": tod,
            "scene": p.scene, "session": reader.name, "report": report}


def _has_masks(reader: Any) -> bool:
    truth = reader.ground_truth
    return truth is not None and truth.has_instances()


def make_pair_images(reader: Any, sequence: str, opts: BuildOptions, align: Any, sync: SyncResult,
                     images: h5py.Dataset, labels: h5py.Dataset, masks: h5py.Dataset | None,
                     progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Per pair: debayer + align the frame, tag its conditions, attach labels and masks.

    Preparation runs `opts.threads` pairs ahead in threads (cv2 releases the GIL); the HDF5
    writes stay in this thread (h5py serialises them anyway).
    """
    n = sync.num_pairs
    pix_fmt = reader.pixel_format
    over = np.zeros(n, np.float32)
    under = np.zeros(n, np.float32)
    has_label = np.zeros(n, np.uint8)
    label_src = LabelSource(reader, sequence, opts, align, sync)
    try:
        def prepare(i: int) -> tuple:
            rgb = align.image(reader.frame(int(sync.frame_index[i])), pix_fmt)
            o, u = cond.exposure_fractions(rgb, opts.alpha, opts.beta)
            return rgb, o, u, label_src.label(i), label_src.mask(i) if masks is not None else None

        with ThreadPoolExecutor(max_workers=max(1, opts.threads)) as pool:
            ahead = 2 * max(1, opts.threads)
            futures = {j: pool.submit(prepare, j) for j in range(min(n, ahead))}
            for i in range(n):
                rgb, over[i], under[i], lab, m = futures.pop(i).result()
                if i + ahead < n:
                    futures[i + ahead] = pool.submit(prepare, i + ahead)
                images[i] = rgb
                if lab is not None:
                    labels[i] = lab
                    has_label[i] = 1
                if m is not None:
                    masks[i] = m
                if progress:
                    progress("pairs", i + 1, n)
    finally:
        label_src.close()
    return {"over": over, "under": under, "has_label": has_label,
            "label_source": label_src.kind, "labels_missing": label_src.missing}


def _image_worker(session: str, sequence: str, opts: BuildOptions, pairs: dict[str, np.ndarray],
                  height: int, width: int, path: str, row0: int) -> dict[str, Any]:
    """The image half of a parallel build, in its own process: writes images/labels/masks to a
    temporary file with the final layout (so the chunks can be copied as they are)."""
    from dataset.alignment import Alignment
    from dataset.rpea_format import create_pair_datasets
    from rig.session import SessionReader

    reader = SessionReader(session)
    try:
        align = Alignment.from_file(opts.calib_path)
        sync = SyncResult(pairs["pulse_index"], pairs["frame_index"], pairs["frame_id"],
                          pairs["edge_t_us"], pairs["edge_t_us"], len(pairs["pulse_index"]), 0, 0,
                          0.0)
        with_masks = opts.write_masks and _has_masks(reader)
        with h5py.File(path, "w") as f:
            images, labels, masks = create_pair_datasets(f, sync.num_pairs, height, width,
                                                         with_masks)
            out = make_pair_images(reader, sequence, opts, align, sync, images, labels, masks)
        out.update(path=path, with_masks=with_masks, row0=row0)
        return out
    finally:
        reader.close()


class _ImageJob:
    """Processes making the pair images (one contiguous range of pairs each) while the caller
    streams the events."""

    def __init__(self, pool: ProcessPoolExecutor, futures: list[Any], paths: list[str]) -> None:
        self.pool, self.futures, self.paths = pool, futures, paths

    @classmethod
    def start(cls, p: SessionPlan, opts: BuildOptions, reader: Any, sync: SyncResult,
              out_path: Path) -> _ImageJob:
        import multiprocessing as mp
        import tempfile

        calib_w, calib_h = _calib_size(opts.calib_path)
        n = sync.num_pairs
        k = max(1, min(opts.image_workers, n))
        bounds = np.linspace(0, n, k + 1).astype(int)
        # spawn, not fork: the parent holds open HDF5 files
        pool = ProcessPoolExecutor(max_workers=k, mp_context=mp.get_context("spawn"))
        futures, paths = [], []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.images{a}.", suffix=".h5.tmp",
                                       dir=out_path.parent)
            os.close(fd)
            pairs = {"pulse_index": sync.pulse_index[a:b], "frame_index": sync.frame_index[a:b],
                     "frame_id": sync.frame_id[a:b], "edge_t_us": sync.edge_t_us[a:b]}
            futures.append(pool.submit(_image_worker, str(reader.path), p.name, opts, pairs,
                                       calib_h, calib_w, tmp, int(a)))
            paths.append(tmp)
        return cls(pool, futures, paths)

    def finish(self) -> list[dict[str, Any]]:
        try:
            return [f.result() for f in self.futures]
        finally:
            self.pool.shutdown()

    def cancel(self) -> None:
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for path in self.paths:
            Path(path).unlink(missing_ok=True)


def _calib_size(calib_path: Path) -> tuple[int, int]:
    from calibration.io import load_calibration

    w, h = load_calibration(calib_path).output_size
    return int(w), int(h)


def _recording_seconds(sync: SyncResult, period_us: float) -> float:
    return sync.num_pulses * period_us / 1e6


def event_windows(exp_t0: np.ndarray, exp_t1: np.ndarray, window: str, window_ms: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The pair's event window [t0, t1) on the event clock.

    "exposure": the exposure itself. "ms": `window_ms` centred on the exposure mid-time - the
    instant the image (and the simulator's labels) show, so motion spreads the events
    symmetrically around the image's edges.
    """
    exp_t0 = np.asarray(exp_t0, np.int64)
    exp_t1 = np.asarray(exp_t1, np.int64)
    if window == "exposure":
        return exp_t0.copy(), np.maximum(exp_t1, exp_t0 + 1)
    if window != "ms":
        raise ValueError(f"unknown window {window!r} (use 'ms' or 'exposure')")
    if window_ms <= 0:
        raise ValueError(f"--window-ms must be positive, got {window_ms}")
    half = int(round(window_ms * 500.0))
    mid = (exp_t0 + exp_t1) // 2
    return mid - half, mid - half + max(1, int(round(window_ms * 1000.0)))


def _resume_entry(path: Path, fingerprint: str) -> dict[str, Any] | None:
    try:
        with h5py.File(path, "r") as f:
            if str(f.attrs.get("fingerprint", "")) != fingerprint:
                return None
            n = int(f.attrs["num_pairs"])
            labelled = int(f["pairs/has_label"][()].sum())
            entry = {"name": str(f.attrs["sequence"]), "file": path.name, "num_pairs": n,
                     "num_labelled": labelled, "time_of_day": str(f.attrs["time_of_day"]),
                     "scene": str(f.attrs["scene"]), "session": str(f.attrs["source_session"])}
    except (OSError, KeyError):
        return None
    entry["sha256"] = sha256_file(path)
    return entry


class LabelSource:
    """Labels and instance masks of each pair: annotation PNGs first, else simulator truth."""

    def __init__(self, reader: Any, sequence: str, opts: BuildOptions, align: Any,
                 sync: SyncResult) -> None:
        self.align = align
        self.sync = sync
        self.kind = "none"
        self.missing = 0
        self.shape = (align.height, align.width)
        self._files: dict[int, Path] = {}
        if opts.labels_dir is not None:
            mapping = None
            if opts.label_mapping is not None:
                from dataset.labels import load_mapping

                mapping = load_mapping(opts.label_mapping)
            self._lut = lookup_table(opts.label_ids, mapping)
            self._files = find_label_files(Path(opts.labels_dir) / sequence)
            if self._files:
                self.kind = "annotations"
        truth = reader.ground_truth
        self._gt: GroundTruthLabels | None = truth.open_labels() if truth is not None else None
        if self._gt is not None and self.kind == "none":
            self.kind = "simulator"

    def close(self) -> None:
        if self._gt is not None:
            self._gt.close()
            self._gt = None

    def label(self, i: int) -> np.ndarray | None:
        fid = int(self.sync.frame_id[i])
        if fid in self._files:
            return read_label_png(self._files[fid], self.shape, self._lut)
        if self._gt is not None:
            row = self._gt.row(int(self.sync.pulse_index[i]))
            if row is not None:
                raw = validate_train_ids(self._gt.labels(row), f"{self._gt.path} row {row}")
                return self.align.label(raw, 255)
        self.missing += 1
        return None

    def mask(self, i: int) -> np.ndarray | None:
        if self._gt is None:
            return None
        row = self._gt.row(int(self.sync.pulse_index[i]))
        if row is None:
            return None
        return self.align.label(self._gt.instances(row), 0)


# --------------------------------------------------------------------------------------------
# the whole build


def build(split: str, sessions: list[Path], opts: BuildOptions,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build every session of `split` ("all" = every split); update each split's index.json."""
    if split not in (*SPLITS, "all"):
        raise BuildError(f"unknown split {split!r} (use train, val, test or all)")
    if not Path(opts.calib_path).is_file():
        raise BuildError(f"{opts.calib_path}: calibration file not found")
    if opts.labels_dir is not None and not Path(opts.labels_dir).is_dir():
        raise BuildError(f"{opts.labels_dir}: labels folder not found")
    plans = plan(sessions, opts)
    todo = [p for p in plans if split == "all" or p.split == split]
    if not todo:
        log(f"no session is assigned to split {split!r} (see {Path(opts.out_dir) / 'splits.yaml'})")
        return {"sequences": [], "failed": []}
    entries: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="seq", desc=f"rpea build {split}",
               disable=None if opts.progress else True)  # None: no bar off a terminal
    if opts.workers <= 1 or len(todo) == 1:
        for p in todo:
            _run_one(p, opts, entries, failed, log)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=opts.workers) as pool:
            futs = {pool.submit(build_sequence, p, opts): p for p in todo}
            for fut in as_completed(futs):
                p = futs[fut]
                try:
                    entries.append(fut.result())
                    _log_entry(entries[-1], log)
                except (BuildError, LabelError, OSError, ValueError) as err:
                    failed.append((p.name, str(err)))
                    log(f"FAILED {p.name}: {err}")
                bar.update()
    bar.close()
    for e in entries:
        split_dir = Path(opts.out_dir) / _split_of(plans, e["name"])
        report = e.pop("report")
        update_index(split_dir, e)
        reports = split_dir / "build_report.json"
        data = json.loads(reports.read_text()) if reports.is_file() else {}
        data[e["name"]] = report
        write_json_atomic(reports, data)
        e["report"] = report
    return {"sequences": entries, "failed": failed}


def _split_of(plans: list[SessionPlan], name: str) -> str:
    return next(p.split for p in plans if p.name == name)


def _run_one(p: SessionPlan, opts: BuildOptions, entries: list, failed: list, log) -> None:
    try:
        entries.append(build_sequence(p, opts))
        _log_entry(entries[-1], log)
    except (BuildError, LabelError, OSError, ValueError) as err:
        failed.append((p.name, str(err)))
        log(f"FAILED {p.name}: {err}")


def _log_entry(e: dict[str, Any], log: Callable[[str], None]) -> None:
    r = e["report"]
    if r.get("resumed"):
        log(f"{e['name']}: up to date ({e['num_pairs']} pairs), skipped")
        return
    ratio = r["recording_s"] / r["build_s"] if r.get("build_s") else 0.0
    log(f"{e['name']}: {e['num_pairs']} pairs ({e['num_labelled']} labelled), "
        f"{r['events_kept']:,} events; {r['sync']['summary']}; built in {r['build_s']:.1f} s "
        f"({ratio:.2f}x real time)")


def index_summary(out_dir: Path) -> list[str]:
    lines = []
    for split in SPLITS:
        d = Path(out_dir) / split
        if (d / "index.json").is_file():
            idx = read_index(d)
            n = sum(s["num_pairs"] for s in idx["sequences"])
            lines.append(f"{split}: {len(idx['sequences'])} sequences, {n} pairs")
    return lines


