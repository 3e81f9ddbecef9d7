"""Calibration of the simulated rig against its ground truth, per seed and mirrored arm.

Runs `rig calibrate --checkerboard --sim` (recording included) for each seed and `--mirror`
choice and prints the report.json figures the issue sets goals for: the truth_* alignment
errors (continuous map, and the float32 rectify map the builder stores), the event coverage of
the aligned grid, the RMS values and what mirroring was found.

    python benchmarks/calib_truth.py                        # seeds 0 1 2, mirror event/frame/none
    python benchmarks/calib_truth.py --full-res --seeds 0 --mirrors event none
    python benchmarks/calib_truth.py --optics real          # blur, vignetting, splitter loss

Run by hand (minutes per row); docs/calibration.md quotes its tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ("seed", "mirror", "found", "rms_fr", "rms_ev", "t1_med", "t1_p95", "t1s_med",
           "t1s_p95", "t10_med", "t10_p95", "t10s_med", "t10s_p95", "cover", "views", "wall_s")


def run_one(seed: int, mirror: str, full_res: bool, views: int, extra: list[str],
            out: Path) -> dict:
    cmd = [sys.executable, "-m", "rig.cli", "calibrate", "--checkerboard", "--sim", "--seed",
           str(seed), "--mirror", mirror, "--views", str(views), "--out", str(out), "--quiet",
           "--no-keep-session", *extra]
    if full_res:
        cmd.append("--full-res")
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        return {"seed": seed, "mirror": mirror, "error": (res.stderr or res.stdout).strip()[-300:]}
    rep = json.loads((out / "report.json").read_text())
    e = rep["alignment_error_px"]
    return {"seed": seed, "mirror": mirror, "found": rep["mirror"]["camera"],
            "rms_fr": rep["frame"]["rms_px"], "rms_ev": rep["event"]["rms_px"],
            "t1_med": e["truth_1m_median"], "t1_p95": e["truth_1m_p95"],
            "t1s_med": e["truth_1m_stored_median"], "t1s_p95": e["truth_1m_stored_p95"],
            "t10_med": e["truth_10m_median"], "t10_p95": e["truth_10m_p95"],
            "t10s_med": e["truth_10m_stored_median"], "t10s_p95": e["truth_10m_stored_p95"],
            "cover": rep["aligned_grid"]["event_coverage"], "views": rep["stereo"].get(
                "views_used", len(rep["stereo"]["per_view_rms_px"])), "wall_s": wall}


def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--mirrors", nargs="+", default=["event", "frame", "none"])
    ap.add_argument("--full-res", action="store_true")
    ap.add_argument("--views", type=int, default=40)
    ap.add_argument("--optics", default=None, help="passed to rig calibrate --optics")
    args = ap.parse_args()
    extra = ["--optics", args.optics] if args.optics else []
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    worst = {"med": 0.0, "p95": 0.0, "cover": 1.0}
    with tempfile.TemporaryDirectory(prefix="calib-truth-") as tmp:
        for seed in args.seeds:
            for mirror in args.mirrors:
                row = run_one(seed, mirror, args.full_res, args.views, extra,
                              Path(tmp) / f"{seed}_{mirror}")
                if "error" in row:
                    print(f"| {seed} | {mirror} | FAILED: {row['error']} |", flush=True)
                    continue
                print("| " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |", flush=True)
                worst["med"] = max(worst["med"], *(row[k] for k in row if k.endswith("_med")))
                worst["p95"] = max(worst["p95"], *(row[k] for k in row if k.endswith("_p95")))
                worst["cover"] = min(worst["cover"], row["cover"])
    print(f"\nworst truth median {worst['med']:.3f} px (goal <= 0.3), worst p95 "
          f"{worst['p95']:.3f} px (goal <= 1), lowest event coverage {worst['cover']:.4f} "
          "(goal >= 0.99)")


if __name__ == "__main__":
    main()
