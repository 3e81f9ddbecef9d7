"""`rpea build`: recorded sessions -> pixel-aligned RPEA sequence files (docs/rpea-format.md).

The build of a split: plan (which session goes into which split, `dataset.build.planning`),
then one sequence file per session (`dataset.build.sequence`), sessions in parallel processes when
asked, then each split's index.json and build_report.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from calibration.io import CalibrationFileError, load_calibration
from common.atomic import write_json_atomic
from common.clierrors import describe, is_disk_full
from common.progress import StageBar
from common.workspace import show_path
from dataset.build.options import BuildError, BuildOptions, SessionPlan
from dataset.build.planning import plan, session_key
from dataset.build.sequence import build_sequence, event_windows
from dataset.build.sync_truth import summary as truth_summary
from dataset.labels import LabelError
from dataset.rpea_format import read_index, update_index
from dataset.splits import DEFAULT_FRACTIONS, SPLITS
from rig.session import SessionError, SessionManifest

__all__ = ["BuildError", "BuildOptions", "SessionPlan", "build", "build_sequence", "event_windows",
           "index_summary", "plan", "session_key"]


def build(split: str, sessions: list[Path], opts: BuildOptions,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build every session of `split` ("all" = every split); update each split's index.json."""
    if split not in (*SPLITS, "all"):
        raise BuildError(f"unknown split {split!r} (use train, val, test or all)")
    if not Path(opts.calib_path).is_file():
        raise BuildError(f"{opts.calib_path}: calibration file not found")
    if opts.labels_dir is not None and not Path(opts.labels_dir).is_dir():
        raise BuildError(f"{opts.labels_dir}: labels folder not found")
    # every input file is read once before anything is written: a broken one leaves no output
    load_calibration(opts.calib_path)  # CalibrationFileError (a ValueError) names the file
    if opts.label_mapping is not None:
        from dataset.labels import load_mapping

        load_mapping(opts.label_mapping)
    if opts.splits_file is not None:
        from dataset.splits import load_splits_file

        load_splits_file(opts.splits_file)
    plans = plan(sessions, opts)
    log(split_summary(plans, opts))
    todo = [p for p in plans if split == "all" or p.split == split]
    if not todo:
        log(f"warning: no session is assigned to split {split!r}, nothing to build. "
            + next_step_for_empty_split(split, len(plans), Path(opts.out_dir)))
        return {"sequences": [], "failed": []}
    for line in recorded_before_calibration(todo, opts.calib_path):
        log(line)
    entries: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="seq", desc=f"rpea build {split}",
               disable=None if opts.progress else True)  # None: no bar off a terminal
    if opts.workers <= 1 or len(todo) == 1:
        for p in todo:
            stages = StageBar(p.name, enabled=opts.progress)  # events (bytes), then pairs
            try:
                _run_one(p, opts, entries, failed, log, stages)
            finally:
                stages.close()
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
                    _failed(p, err, failed, log)
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


def split_summary(plans: list[SessionPlan], opts: BuildOptions) -> str:
    """The split of every session, one line: whole sessions, and the share held out."""
    by_split = {s: [p.name for p in plans if p.split == s] for s in SPLITS}
    how = (f"as listed in {opts.splits_file}" if opts.splits_file is not None else
           f"whole sessions, seeded (--seed {opts.seed}); "
           + ", ".join(f"{k} quota {v:.0%}" for k, v in DEFAULT_FRACTIONS.items() if v > 0 and k != "train"))
    parts = [f"{s} {len(n)}" + (f" ({', '.join(n)})" if n else "") for s, n in by_split.items()
             if n or s != "test"]
    return (f"splits: {'; '.join(parts)} [{how}; recorded in "
            f"{show_path(Path(opts.out_dir) / 'splits.yaml')}]")


def next_step_for_empty_split(split: str, n_sessions: int, out_dir: Path) -> str:
    """What to run when a split comes out empty."""
    if split == "train":
        return "Record a session (rig record --duration 60), then run rpea build --split train."
    return (f"With {n_sessions} session(s), none is held out for {split}: record another "
            f"(rig record --duration 60) and run rpea build --split {split} again, or choose the "
            f"split of each session in a YAML file (--splits FILE, like {out_dir / 'splits.yaml'}).")


def recorded_before_calibration(plans: list[SessionPlan], calib_path: Path) -> list[str]:
    """Warnings for real sessions recorded before the calibration's own recording: the rig may
    have been moved in between (the simulated rig never moves, so its sessions are left out)."""
    try:
        calib_t = load_calibration(calib_path).info.get("recorded_utc")
    except CalibrationFileError:
        return []  # the build itself reports a broken calibration file
    if not isinstance(calib_t, str) or not calib_t:
        return []
    older = []
    for p in plans:
        try:
            m = SessionManifest.load(p.path)
        except SessionError:
            continue
        if not m.sim and m.started_utc and m.started_utc < calib_t:
            older.append(p.name)
    if not older:
        return []
    return [f"warning: {len(older)} session(s) were recorded before the calibration's own "
            f"recording ({calib_t}): {', '.join(older)}. If the rig was moved or refocused in "
            "between, record a new calibration session (rig record --calibration) and run "
            "rig calibrate --checkerboard again."]


def _split_of(plans: list[SessionPlan], name: str) -> str:
    return next(p.split for p in plans if p.name == name)


def _run_one(p: SessionPlan, opts: BuildOptions, entries: list, failed: list, log,
             progress: Callable[[str, int, int], None] | None = None) -> None:
    try:
        entries.append(build_sequence(p, opts, progress=progress))
        _log_entry(entries[-1], log)
    except (BuildError, LabelError, OSError, ValueError) as err:
        _failed(p, err, failed, log)


def _failed(p: SessionPlan, err: Exception, failed: list, log: Callable[[str], None]) -> None:
    """A session that failed to build: noted, and the build goes on with the next one - unless the
    disk is full, which stops it at once (the half-written file is already gone: atomic publish)."""
    message = describe(err)[0] if isinstance(err, OSError) else str(err)
    if is_disk_full(err):
        raise BuildError(f"disk full while building {p.name} ({message}); nothing of {p.name} was "
                         "kept: free some disk space, then run the same command with --resume "
                         "(the sequences already built are kept)") from None
    failed.append((p.name, message))
    log(f"FAILED {p.name}: {message}")


def _log_entry(e: dict[str, Any], log: Callable[[str], None]) -> None:
    r = e["report"]
    if r.get("resumed"):
        log(f"{e['name']}: up to date ({e['num_pairs']} pairs), skipped")
        return
    ratio = r["recording_s"] / r["build_s"] if r.get("build_s") else 0.0
    truth = f"; {truth_summary(r['sync_vs_truth'])}" if r.get("sync_vs_truth") else ""
    log(f"{e['name']}: {e['num_pairs']} pairs ({e['num_labelled']} labelled), "
        f"{r['events_kept']:,} events; {r['sync']['summary']}{truth}; built in {r['build_s']:.1f} s "
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
