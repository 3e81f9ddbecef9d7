"""End-to-end validation on the simulated rig: record, calibrate, build, train, evaluate.

The evidence the dataset exists for (paper Table 2 and Table 4), measured on recorded data
rather than on synthetic pictures: day, night and over-exposed sessions are recorded on the
simulated rig, the rig is calibrated from a blinking checkerboard, the sessions are built into
an RPEA dataset (whole sessions per split, every condition on both sides), and three networks
are trained with the same budget (same optimiser steps, batch, schedule, seed and data order):
image only, events only, image + events (the compact CACD preset: HFCA with graph masks, JBCD
event -> image). Each is evaluated on the val split: mIoU overall, on under- / over-exposed
pixels of the frame (HSV V < alpha / > beta), day and night pairs. The image + events network is
evaluated again with the events shifted by 0, 1, 2, 4 pixels in random directions (Table 4),
in pixels of the RPEA grid (`cacd eval --misalign`) and in pixels of the network's input (the
compact preset shrinks the grid to a 96-pixel short side, so one input pixel is ~3.7 grid
pixels). Everything runs for two training seeds; the table gives their mean and spread.

Every stage is typed as a user types it (`rig record`, `rig calibrate --checkerboard`,
`rpea build`, `cacd train`, `cacd eval`), in a workspace folder; a stage whose output is
already there is skipped, so an interrupted run resumes.

    python benchmarks/e2e_validation.py --quick --json e2e.json       # < 25 min on 2 cores
    python benchmarks/e2e_validation.py --out runs/e2e --seconds 12 --steps 1200 --seeds 0,1,2

JSON: `rgb_only`, `event_only`, `rgb_events` each {mIoU, under, over, day, night} in percent
(the mean over seeds; `spread` (max - min) and `per_seed` beside them), `misalign`
{"0": mIoU, "1": ..., "4": ...} (image + events, events shifted in grid pixels, mean over seeds),
`misalign_working_px` (the same in input pixels), `goal` (which goals held, and the margin per
class overall / under / over), `setup`. Each row's `per_class`: IoU per class (mean over seeds)
overall and on the under- / over-exposed pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common.atomic import write_text_atomic
from dataset.reader import working_scale

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the rig / rpea / cacd entry points of this environment
SCENARIOS = ("day", "night", "overexposed")
SPLITS = ("train", "val")
#: row name -> (config, what it sees)
ROWS = {"rgb_only": ("ablation/image_only.yaml", "image"),
        "event_only": ("ablation/event_only.yaml", "events"),
        "rgb_events": ("compact.yaml", "image + events (CACD: HFCA graph masks, JBCD)")}
METRICS = ("mIoU", "under", "over", "day", "night")
PER_CLASS_SUBSETS = ("overall", "under", "over")  # pixel subsets of the per-class IoU
MISALIGN_PX = (0, 1, 2, 4)
GOAL_MARGIN = 3.0  # image + events over image only, mIoU points, overall / under / over


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[14:]))
    ap.add_argument("--out", default="runs/e2e_validation",
                    help="workspace folder (recordings/, calib/, data/, runs/)")
    ap.add_argument("--json", dest="json_out", default=None, help="write the results here too")
    ap.add_argument("--quick", action="store_true",
                    help="the small size (6-s sessions, 300 steps): under 25 min on 2 cores")
    ap.add_argument("--seconds", type=float, default=None,
                    help="seconds per recorded session [quick: 6, else 12]")
    ap.add_argument("--steps", type=int, default=None,
                    help="optimiser steps of every network [quick: 300, else 1200]")
    ap.add_argument("--seeds", default="0,1", help="training seeds, comma separated")
    ap.add_argument("--jobs", type=int, default=2,
                    help="trainings at a time, one torch thread each (2 cores: 2)")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="config override for every network (repeatable)")
    ap.add_argument("--exposure-us", dest="exposures", action="append", default=[],
                    metavar="SCENARIO=US",
                    help="record that scenario's sessions with this frame exposure instead of "
                         "the scenario's (repeatable; e.g. overexposed=40000)")
    args = ap.parse_args()
    try:
        exposure_us = parse_exposures(args.exposures)
    except ValueError as e:
        ap.error(str(e))
    seconds = args.seconds or (6.0 if args.quick else 12.0)
    steps = args.steps or (300 if args.quick else 1200)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    ws = Path(args.out).resolve()
    ws.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    timing: dict[str, float] = {}

    def stage(name: str, fn, *a) -> Any:
        t = time.monotonic()
        print(f"\n=== {name}", flush=True)
        result = fn(*a)
        timing[name] = round(time.monotonic() - t, 1)
        print(f"    ({timing[name]:.0f} s)", flush=True)
        return result

    stage("record", record, ws, seconds, exposure_us)
    stage("calibrate", calibrate, ws)
    stage("build", build, ws)
    grid = grid_size(ws)
    cfg = preset(args.sets)
    scale = working_scale(*grid, cfg["data"]["short_side"])
    docs = stage("train + evaluate", train_all, ws, steps, seeds, args.jobs, args.sets, scale)
    result = summarise(docs, seeds, scale)
    result["setup"] = {"seconds_per_session": seconds, "sessions": session_table(exposure_us),
                       "steps": steps, "seeds": seeds,
                       "batch_size": cfg["train"]["batch_size"],
                       "grid_size": list(grid),
                       "working_size": [round(grid[0] * scale), round(grid[1] * scale)],
                       "pairs": pair_counts(ws), "overrides": args.sets,
                       "misalign_unit": "misalign: pixels of the RPEA grid (cacd eval "
                                        "--misalign); misalign_working_px: pixels of the "
                                        f"network's input ({scale:.3f} of the grid)",
                       "stage_seconds": timing,
                       "total_minutes": round((time.monotonic() - t0) / 60, 1),
                       "cpu_count": os.cpu_count()}
    text = json.dumps(result, indent=1)
    write_text_atomic(ws / "e2e_validation.json", text)
    if args.json_out:
        write_text_atomic(args.json_out, text)
    print()
    print(format_table(result))
    print(f"\n{result['setup']['total_minutes']} min in all; JSON: {ws / 'e2e_validation.json'}")


def run(cmd: list[str], cwd: Path, log: Path | None = None, threads: int | None = None) -> None:
    """Run one command of the pipeline as a user types it; its output goes to `log` if given
    (`threads`: torch's CPU threads in it, so parallel jobs do not fight over the cores)."""
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    print("$ " + " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if log is None:
        subprocess.run([exe, *cmd[1:]], cwd=cwd, check=True, env=env)
        return
    with open(log, "w") as f:
        done = subprocess.run([exe, *cmd[1:]], cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                              env=env)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}; its output: {log}")


def parse_exposures(items: list[str]) -> dict[str, float]:
    """`--exposure-us SCENARIO=US` items -> {scenario: exposure in microseconds}."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SCENARIOS:
            raise ValueError(f"--exposure-us {item!r}: want SCENARIO=US with SCENARIO one of "
                             f"{', '.join(SCENARIOS)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--exposure-us {item!r}: {value!r} is not a number") from None
        if not out[name] > 0:
            raise ValueError(f"--exposure-us {item!r}: the exposure must be positive")
    return out


def session_table(exposure_us: dict[str, float] | None = None) -> list[dict]:
    """The recorded sessions: one per (split, scenario), each with its own simulator seed (and
    the frame exposure, where `--exposure-us` replaced the scenario's)."""
    exposure_us = exposure_us or {}
    return [{"name": f"{split}_{sc}", "split": split, "scenario": sc, "seed": 1 + 10 * i + j,
             **({"exposure_us": exposure_us[sc]} if sc in exposure_us else {})}
            for i, split in enumerate(SPLITS) for j, sc in enumerate(SCENARIOS)]


def _complete_manifest(session: Path) -> dict | None:
    """The session's manifest if it was recorded to the end, else None."""
    path = session / "session.json"
    manifest = json.loads(path.read_text()) if path.is_file() else None
    return manifest if manifest and manifest.get("status") == "complete" else None


def record(ws: Path, seconds: float, exposure_us: dict[str, float]) -> None:
    for s in session_table(exposure_us):
        out = ws / "recordings" / s["name"]
        recorded = _complete_manifest(out)
        if recorded is not None:
            exposure_was = recorded.get("settings", {}).get("frame_camera", {}).get("exposure_us")
            if "exposure_us" in s and exposure_was != s["exposure_us"]:
                sys.exit(f"{out}: recorded with exposure {exposure_was} us, not the "
                         f"{s['exposure_us']:g} us asked for; use another --out")
            print(f"{out.name}: recorded already")
            continue
        if out.exists():
            shutil.rmtree(out)
        exposure = ["--exposure-us", f"{s['exposure_us']:g}"] if "exposure_us" in s else []
        run(["rig", "record", "--duration", f"{seconds:g}", "--scenario", s["scenario"],
             "--seed", str(s["seed"]), *exposure, "--out", str(out.relative_to(ws)), "--quiet"],
            ws)


def calibrate(ws: Path) -> None:
    if (ws / "calib" / "calib.yaml").is_file():
        print("calib/calib.yaml: calibrated already")
        return
    run(["rig", "calibrate", "--checkerboard", "--quiet"], ws)


def build(ws: Path) -> None:
    splits = {split: [s["name"] for s in session_table() if s["split"] == split]
              for split in SPLITS}
    (ws / "splits.yaml").write_text(json.dumps(splits))  # JSON is YAML
    for split in SPLITS:
        if (ws / "data" / split / "index.json").is_file():
            print(f"data/{split}: built already")
            continue
        run(["rpea", "build", "--split", split, "--splits", "splits.yaml", "--quiet"], ws)
    # training reads a root with the train split only, so `cacd train` does not validate (the
    # val split is scored once, below, on the last weights: no choice made on it)
    train_root = ws / "data_train"
    if not (train_root / "train").exists():
        train_root.mkdir(exist_ok=True)
        (train_root / "train").symlink_to(Path("..") / "data" / "train", target_is_directory=True)


def train_all(ws: Path, steps: int, seeds: list[int], jobs: int, sets: list[str], scale: float
              ) -> dict[tuple[str, int], dict]:
    """Train every (row, seed), `jobs` at a time; evaluate each on val (image + events also
    with its events shifted; `scale`: working / grid resolution)."""
    tasks = [(row, seed) for seed in seeds for row in ROWS]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        docs = pool.map(lambda t: train_eval(ws, *t, steps, sets, scale), tasks)
        return dict(zip(tasks, docs, strict=True))


def shifts_grid_px(scale: float) -> dict[str, float]:
    """The event shifts evaluated, in pixels of the RPEA grid (what `cacd eval --misalign`
    takes): 0, 1, 2, 4 grid pixels, and 1, 2, 4 pixels of the network's working resolution
    (`data.short_side` shrinks the grid by `scale`), keyed "grid:N" / "working:N"."""
    out = {f"grid:{p}": float(p) for p in MISALIGN_PX}
    out.update({f"working:{p}": round(p / scale, 3) for p in MISALIGN_PX if p})
    return out


def train_eval(ws: Path, row: str, seed: int, steps: int, sets: list[str], scale: float) -> dict:
    run_dir = ws / "runs" / f"seed{seed}" / row
    config, _ = ROWS[row]
    done = run_dir / "summary.json"
    if not (done.is_file() and json.loads(done.read_text())["global_step"] >= steps):
        run_dir.mkdir(parents=True, exist_ok=True)
        overrides = [f"train.max_steps={steps}", "train.max_minutes=null", "train.epochs=100000",
                     f"train.seed={seed}", "train.threads=1", *sets]
        cmd = ["cacd", "train", "--config", str(REPO / "configs" / config),
               "--data", "data_train", "--out", str(run_dir.relative_to(ws))]
        for s in overrides:
            cmd += ["--set", s]
        if (run_dir / "last.safetensors").is_file():  # stopped part-way (Ctrl-C): go on
            cmd.append("--resume")
        t = time.monotonic()
        run(cmd, ws, log=run_dir.parent / f"{row}.train.log", threads=1)
        print(f"{row} seed {seed}: trained in {time.monotonic() - t:.0f} s", flush=True)
    shifts = sorted(set(shifts_grid_px(scale).values())) if row == "rgb_events" else [0.0]
    out = run_dir / "eval_val.json"
    if not out.is_file():
        run(["cacd", "eval", "--checkpoint", str(run_dir / "last.safetensors"), "--data", "data",
             "--misalign", ",".join(f"{p:g}" for p in shifts), "--out", str(out)], ws,
            log=run_dir.parent / f"{row}.eval.log", threads=1)
    return json.loads(out.read_text())


def _unshifted(doc: dict) -> dict:
    """The figures of a `cacd eval` document with the events where they are (the first entry of
    a misalignment sweep, or the document itself)."""
    return doc["misalignment"][0] if "misalignment" in doc else doc


def _row_metrics(doc: dict) -> dict[str, float | None]:
    first = _unshifted(doc)
    return {"mIoU": first["mIoU"], "under": first["under"]["mIoU"], "over": first["over"]["mIoU"],
            "day": first["day"]["mIoU"], "night": first["night"]["mIoU"]}


def _per_class(docs: list[dict]) -> dict[str, dict[str, float]]:
    """IoU per class (percent, mean over the seeds' docs) overall and on the under- / over-exposed
    pixels: where the events help or cost, which one mIoU over all classes hides."""
    out: dict[str, dict[str, float]] = {}
    for subset in PER_CLASS_SUBSETS:
        seen: dict[str, list[float]] = {}
        for doc in docs:
            for name, iou in _unshifted(doc)[subset]["per_class"].items():
                if iou is not None:
                    seen.setdefault(name, []).append(float(iou))
        out[subset] = {name: round(sum(v) / len(v), 1) for name, v in seen.items()}
    return out


def _mean_spread(vals: list[float]) -> tuple[float | None, float | None]:
    """(mean, max - min) of the seeds' values, rounded to 0.01; (None, None) when none."""
    if not vals:
        return None, None
    return round(sum(vals) / len(vals), 2), round(max(vals) - min(vals), 2)


def summarise(docs: dict[tuple[str, int], dict], seeds: list[int], scale: float
              ) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for row in ROWS:
        per_seed = {str(s): _row_metrics(docs[(row, s)]) for s in seeds}
        stats = {m: _mean_spread([v[m] for v in per_seed.values() if v[m] is not None])
                 for m in METRICS}
        result[row] = {**{m: st[0] for m, st in stats.items()},
                       "spread": {m: st[1] for m, st in stats.items()}, "per_seed": per_seed,
                       "per_class": _per_class([docs[(row, s)] for s in seeds])}
    by_px = {}
    for s in seeds:
        for d in docs[("rgb_events", s)]["misalignment"]:
            by_px.setdefault(round(float(d["misalign_px"]), 3), []).append(d["mIoU"])
    for unit, key in (("grid", "misalign"), ("working", "misalign_working_px")):
        curve = {}
        for name, px in shifts_grid_px(scale).items():
            if name.startswith(unit + ":"):
                curve[name.split(":")[1]] = by_px[round(px, 3)]
        if unit == "working":
            curve = {"0": by_px[0.0], **curve}
        stats = {k: _mean_spread(v) for k, v in curve.items()}
        result[key] = {k: st[0] for k, st in stats.items()}
        result[key + "_spread"] = {k: st[1] for k, st in stats.items()}
    both, img = result["rgb_events"], result["rgb_only"]
    margins = {m: (None if both[m] is None or img[m] is None else round(both[m] - img[m], 2))
               for m in ("mIoU", "under", "over")}
    def falls(curve: list[float]) -> bool:
        return all(b <= a for a, b in zip(curve, curve[1:], strict=False)) and curve[-1] < curve[0]

    per_class_margin = {
        subset: {name: round(iou - img["per_class"][subset][name], 1)
                 for name, iou in both["per_class"][subset].items()
                 if name in img["per_class"][subset]}
        for subset in PER_CLASS_SUBSETS}
    result["goal"] = {
        "margin_over_rgb_only": margins,
        "per_class_margin_over_rgb_only": per_class_margin,
        "events_help_by_3": all(v is not None and v >= GOAL_MARGIN for v in margins.values()),
        "misalign_falls": falls(list(result["misalign"].values())),
        "misalign_working_px_falls": falls(list(result["misalign_working_px"].values())),
    }
    return result


def format_table(r: dict) -> str:
    def cell(row: str, m: str) -> str:
        v, sp = r[row][m], r[row]["spread"][m]
        return "-" if v is None else f"{v:.1f} ± {sp / 2:.1f}"

    lines = ["network | mIoU | under-exp. | over-exp. | day | night",
             "---|---|---|---|---|---"]
    for row in ROWS:
        lines.append(" | ".join([row] + [cell(row, m) for m in METRICS]))
    lines.append("")
    for key, unit in (("misalign", "grid px"), ("misalign_working_px", "input px")):
        lines.append("")
        lines.append(f"events shifted ({unit}) | " + " | ".join(r[key]))
        lines.append("---|" + "---|" * len(r[key]))
        lines.append("image + events mIoU | " + " | ".join(
            f"{v:.1f} ± {r[key + '_spread'][k] / 2:.1f}" for k, v in r[key].items()))
    g = r["goal"]
    lines.append("")
    lines.append(f"image + events - image only: {g['margin_over_rgb_only']} "
                 f"(goal >= {GOAL_MARGIN:g} each: {'met' if g['events_help_by_3'] else 'NOT met'})"
                 f"; mIoU falls with misalignment: grid px {'yes' if g['misalign_falls'] else 'NO'}"
                 f", input px {'yes' if g['misalign_working_px_falls'] else 'NO'}")
    for subset in ("under", "over"):
        moved = {k: v for k, v in g["per_class_margin_over_rgb_only"][subset].items() if v}
        lines.append(f"per class, {subset}-exposed pixels, image + events - image only: "
                     + (", ".join(f"{k} {v:+.1f}" for k, v in moved.items()) or "no change"))
    lines.append("(mean of the seeds ± half their spread)")
    return "\n".join(lines)


def preset(sets: list[str]) -> dict:
    """The image + events network's resolved config (the rows share data and train settings)."""
    from model.config import resolve

    return resolve(str(REPO / "configs" / ROWS["rgb_events"][0]), list(sets))


def grid_size(ws: Path) -> tuple[int, int]:
    """(height, width) of the RPEA grid the dataset was built on."""
    import h5py

    f = sorted((ws / "data" / "val").glob("*.h5"))[0]
    with h5py.File(f, "r") as h:
        return int(h["images"].shape[1]), int(h["images"].shape[2])


def pair_counts(ws: Path) -> dict[str, int]:
    counts = {}
    for split in SPLITS:
        index = json.loads((ws / "data" / split / "index.json").read_text())
        counts[split] = sum(int(seq["num_labelled"]) for seq in index["sequences"])
    return counts

if __name__ == "__main__":
    main()
