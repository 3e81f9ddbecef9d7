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

from common.atomic import write_json_atomic
from dataset.build.options import BuildError, BuildOptions, SessionPlan
from dataset.build.planning import plan, session_key
from dataset.build.sequence import build_sequence, event_windows
from dataset.labels import LabelError
from dataset.rpea_format import read_index, update_index
from dataset.splits import SPLITS

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
