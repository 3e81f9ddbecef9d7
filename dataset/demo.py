"""`make demo`: record two short simulated sessions and build the train and val splits.

    python -m dataset.demo --out demo            # ~1-2 min on a laptop
    python -m dataset.demo --out demo --calib calib/calib.yaml --duration 3

Without `--calib` the calibration is the simulated rig's ground truth turned into a calib.yaml
(homography model at infinity, what `rig calibrate` estimates on this rig), so the demo does
not depend on a checkerboard recording; `rig calibrate` on a `--scenario checkerboard` session
gives a measured one for the same rig.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.atomic import write_text_atomic


def ground_truth_calibration(geometry, path: Path) -> Path:
    """calib.yaml from a `RigGeometry` (the simulator's truth): what a perfect calibration gives,
    with the homography's plane at the default depth (1/Z0 midway between 1 m and 10 m)."""
    from calibration.accuracy import calibration_from_geometry
    from calibration.io import save_calibration

    save_calibration(calibration_from_geometry(geometry), path)
    return path


def record(out: Path, scenario: str, seed: int, duration_s: float, faults: dict | None = None,
           rate_hz: float = 20.0) -> Path:
    from rig.recorder import RecordOptions, record_session

    if (out / "session.json").is_file():
        return out  # recorded by an earlier run
    record_session(RecordOptions(out_dir=out, duration_s=duration_s, rate_hz=rate_hz,
                                 scenario=scenario, seed=seed, sim=True, show_status=False,
                                 sim_faults=faults or {}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("demo"))
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per session")
    ap.add_argument("--calib", type=Path, default=None)
    args = ap.parse_args(argv)
    from dataset.builder import BuildOptions, build, index_summary
    from rig.session import SessionReader

    rec = args.out / "sessions"
    sessions = [record(rec / "day_0001", "day", 1, args.duration),
                record(rec / "night_0001", "night", 2, args.duration)]
    calib = args.calib
    if calib is None:
        calib = ground_truth_calibration(SessionReader(sessions[0]).ground_truth_geometry(),
                                         args.out / "calib.yaml")
    splits = args.out / "splits.yaml"
    write_text_atomic(splits, "train: [day_0001]\nval: [night_0001]\n")
    data = args.out / "rpea"
    for split in ("train", "val"):
        result = build(split, sessions, BuildOptions(calib_path=calib, out_dir=data,
                                                     splits_file=splits))
        if result["failed"]:
            print(f"build {split} failed: {result['failed']}", file=sys.stderr)
            return 1
    for line in index_summary(data):
        print(line)
    print(f"next: rpea check {data} && rpea stats {data} && rpea show {data} --index 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
