"""One sequence file from one session, in one pass over the event stream and one over the frames:

1. decode `events.raw` chunk by chunk; the events whose pixel lands on the aligned grid are
   appended to the sequence file as sensor pixels (bounded memory), and the calibration's
   per-pixel grid position goes beside them as DSEC's `rectify_map`; trigger edges are collected
   on the way;
2. pair frames with rising edges through the MCU pulse reports (`rig.sync.pair_session`:
   explicit, every dropped item reported, never a shifted pairing); on a simulated session the
   pairs are also measured against the ground truth (`dataset.build.sync_truth`);
3. per pair: the exposure window on the event clock (rising edge + exposure time, or the falling
   edge when ExposureActive drives the trigger input), the event window (`--window exposure` or
   `--window-ms` centred on the exposure mid-time), its slice of `events/*`;
4. per pair: debayer + align + crop the image, tag conditions, attach labels (simulator ground
   truth or annotation PNGs) and instance masks (`dataset.build.images`);
5. publish the file atomically and return its index entry.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter)
import numpy as np

from dataset import conditions as cond
from dataset.alignment import Alignment
from dataset.build.images import ImageJob, has_masks, make_pair_images
from dataset.build.options import BuildError, BuildOptions, SessionPlan
from dataset.build.sync_truth import sync_vs_truth
from dataset.rpea_format import SequenceWriter, sha256_file
from rig.evt import TRIGGER_DTYPE
from rig.evt.files import open_events
from rig.recover import recover_hint
from rig.session import BUILDABLE_STATUSES, RECOVERABLE_STATUSES, SessionReader
from rig.sync import SyncResult, pair_session


def _triggers_only(events_path: Path, chunk_bytes: int) -> np.ndarray:
    """Pass 1 of the parallel build: the trigger edges (decoding is cheap; events are dropped)."""
    parts = [tr for _, tr in open_events(events_path, chunk_bytes=chunk_bytes) if tr.size]
    return np.concatenate(parts) if parts else np.zeros(0, TRIGGER_DTYPE)


def build_sequence(p: SessionPlan, opts: BuildOptions, *,
                   progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Build `<out>/<split>/<name>.h5`; returns its index entry plus `report` (sync, timing).

    With `opts.image_workers` > 0 the images (debayer, warp, tags, labels, compression) are made
    by that many processes (each a contiguous range of pairs, into a temporary file) while this
    one streams the events; their compressed chunks are then copied over as they are. With 0,
    one pass does everything here.
    """
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
        if reader.status in RECOVERABLE_STATUSES:  # crashed or failed: recovery comes first
            raise BuildError(recover_hint(p.path, reader.status, reader.manifest.status_detail))
        if reader.status not in BUILDABLE_STATUSES:
            raise BuildError(f"{p.path}: session status is {reader.status!r} (need "
                             f"{' or '.join(BUILDABLE_STATUSES)})")
        if not reader.events_path.is_file():
            raise BuildError(f"{reader.events_path}: missing")
        manifest = reader.manifest
        align = Alignment.from_file(opts.calib_path)
        remove_stale_temporaries(out_path)
        writer = SequenceWriter(out_path, align.height, align.width)
        job = None
        try:
            sync = None
            if opts.image_workers > 0:
                sync = pair_session(reader, _triggers_only(reader.events_path,
                                                           opts.decode_chunk_bytes), opts.sync)
                job = ImageJob.start(p, opts, reader, sync, out_path)
            # events: streaming decode -> aligned (cropped grid) -> appended; triggers collected
            trig_chunks = []
            n_raw = 0
            total = max(1, reader.events_path.stat().st_size)
            done = 0
            for events, triggers in open_events(reader.events_path,
                                                chunk_bytes=opts.decode_chunk_bytes):
                if triggers.size:
                    trig_chunks.append(triggers)
                if events.size:
                    n_raw += events.size
                    keep = align.events_on_grid(events["x"], events["y"])
                    writer.append_events(events["x"][keep], events["y"][keep], events["t"][keep],
                                         events["p"][keep])
                done = min(total, done + opts.decode_chunk_bytes)
                if progress:
                    progress("events", done, total)
            writer.finish_events()
            if sync is None:
                triggers = np.concatenate(trig_chunks) if trig_chunks else np.zeros(0, TRIGGER_DTYPE)
                sync = pair_session(reader, triggers, opts.sync)

            # windows on the event clock
            n = sync.num_pairs
            # ExposureActive on the trigger input: its rising edge is the exposure start itself
            delay_us = 0 if manifest.wiring.exposure_active_to_event else int(opts.trigger_delay_us)
            exp_t0 = sync.edge_t_us + delay_us
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
                images, labels, masks = writer.create_pairs(
                    n, with_masks=opts.write_masks and has_masks(reader))
                result = make_pair_images(reader, p.name, opts, align, sync, images, labels, masks,
                                          progress)
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
            writer.write_rectify_map(align.rectify_map())
            report = {
                "sync": sync.to_dict(), "label_source": result["label_source"],
                "labels_missing": result["labels_missing"], "events_decoded": int(n_raw),
                "events_kept": int(writer.num_events),
                "events_reordered": int(writer.events_reordered),
                "duration_s": float(manifest.duration_s),
                "image_workers": int(opts.image_workers),
            }
            truth = reader.ground_truth
            truth_pulses = truth.pulses() if truth is not None else None
            if truth_pulses is not None and truth_pulses.size:  # a simulated session
                report["sync_vs_truth"] = sync_vs_truth(truth_pulses, sync,
                                                        reader.frame_meta["t_device_ns"],
                                                        delay_us)
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


def remove_stale_temporaries(out_path: Path) -> list[Path]:
    """Remove the temporary files an earlier build of this sequence left behind when it was killed
    (`.<name>.h5.*.tmp` of the sequence file, `.<name>.images*.tmp` of its image workers): a
    build publishes its file atomically, so these never hold anything that was kept."""
    stem = out_path.stem
    removed = []
    for pattern in (f".{stem}.h5.*.tmp", f".{stem}.images*.tmp"):
        for tmp in out_path.parent.glob(pattern):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


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
