"""Fingerprint of what the pipeline produces for fixed seeds, to check that a refactor changes nothing.

Records two short simulated sessions (one with injected drops), calibrates the simulated rig,
builds RPEA files, converts an event file to DSEC, writes a synthetic dataset and its masks, and
prints one sha256 per array (and per calibration number), so two runs -- before and after a change --
can be compared with `diff`. Volatile values (wall-clock times, tool paths, build durations) are left
out.

    .venv/bin/python tools/behaviour_fingerprint.py --work /tmp/fp_before > before.txt
    .venv/bin/python tools/behaviour_fingerprint.py --work /tmp/fp_after > after.txt
    diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

BIN = Path(sys.executable).parent
VOLATILE_ATTRS = {"tool_version", "created_utc", "fingerprint"}
VOLATILE_DATASETS = {"t_host_ns"}
VOLATILE_YAML_KEYS = ("date", "source", "created_utc", "recorded_utc")
VOLATILE_JSON = {"build_s", "started_utc", "stopped_utc", "elapsed_s", "created_utc", "wall_s",
                 "tool_version", "image_workers", "path", "file", "out_dir", "calib_path",
                 "splits_file", "labels_dir", "session", "recorded_utc", "date", "source", "sha256"}


def run(*args: str) -> None:
    subprocess.run([str(BIN / args[0]), *args[1:]], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def h5_lines(path: Path, prefix: str) -> list[str]:
    """One line per dataset (content hash) and per non-volatile attribute."""
    lines: list[str] = []
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and name.rsplit("/", 1)[-1] in VOLATILE_DATASETS:
                lines.append(f"{prefix}:{name} (volatile, not compared)")
            elif isinstance(obj, h5py.Dataset):
                data = obj[()]
                if isinstance(data, bytes):
                    lines.append(f"{prefix}:{name} = {_json_or_text(data.decode())}")
                elif isinstance(data, np.ndarray):
                    lines.append(f"{prefix}:{name} {digest(data)}")
                else:
                    lines.append(f"{prefix}:{name} = {data!r}")
            for k, v in obj.attrs.items():  # type: ignore[attr-defined]
                if k in VOLATILE_ATTRS:
                    continue
                if k == "yaml":
                    v = _calib_text(v if isinstance(v, str) else v.decode())
                lines.append(f"{prefix}:{name}@{k} = {v!r}")
        for k, v in f.attrs.items():
            if k not in VOLATILE_ATTRS:
                lines.append(f"{prefix}:@{k} = {v!r}")
        f.visititems(visit)
    return sorted(lines)


def _json_or_text(text: str) -> str:
    try:
        return json.dumps(_strip(json.loads(text)), sort_keys=True)
    except ValueError:
        return text


def _strip(d: object) -> object:
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in VOLATILE_JSON}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def _calib_text(text: str) -> str:
    """Calibration YAML without its date line."""
    return hashlib.sha256("\n".join(line for line in text.splitlines()
                                    if not any(k in line.lower() for k in VOLATILE_YAML_KEYS)
                                    ).encode()).hexdigest()[:16]


def calib_lines(calib_dir: Path) -> list[str]:
    import cv2

    lines = []
    fs = cv2.FileStorage(str(calib_dir / "calib.yaml"), cv2.FILE_STORAGE_READ)
    root = fs.root()
    for key in root.keys():
        node = root.getNode(key)
        if node.isString():
            if "date" not in key.lower():
                lines.append(f"calib:{key} = {node.string()}")
        elif node.isReal() or node.isInt():
            lines.append(f"calib:{key} = {node.real():.12g}")
        elif node.isMap() and not node.getNode("dt").empty():
            lines.append(f"calib:{key} {digest(node.mat())}")
        elif node.isMap():
            lines.append(f"calib:{key} = map {sorted(node.keys())}")
        elif node.isSeq():
            lines.append(f"calib:{key} = {[node.at(i).real() for i in range(node.size())]}")
    fs.release()
    report = json.loads((calib_dir / "report.json").read_text())
    lines.append("calib:report.json = " + json.dumps(_strip(report), sort_keys=True))
    return lines


def session_lines(session: Path, name: str) -> list[str]:
    lines = [f"{name}:{f} {hashlib.sha256((session / f).read_bytes()).hexdigest()[:16]}"
             for f in ("events.raw", "triggers.csv")]
    manifest = json.loads((session / "session.json").read_text())
    lines.append(f"{name}:session.json = " + json.dumps(_strip(manifest), sort_keys=True))
    lines += h5_lines(session / "frames.h5", f"{name}:frames.h5")
    gt = session / "ground_truth"
    for p in sorted(gt.rglob("*")) if gt.is_dir() else []:
        if p.suffix == ".h5":
            lines += h5_lines(p, f"{name}:gt/{p.name}")
        elif p.is_file():
            lines.append(f"{name}:gt/{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (emptied first)")
    ap.add_argument("--hash-only", action="store_true", help="hash what --work already holds")
    args = ap.parse_args()
    w: Path = args.work
    if not args.hash_only:
        produce(w)
    print("\n".join(fingerprint(w)))


def produce(w: Path) -> None:
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    run("rig", "record", "--sim", "--quiet", "--duration", "2", "--seed", "5", "--out", str(w / "s_day"))
    run("rig", "record", "--sim", "--quiet", "--duration", "1.5", "--scenario", "night", "--seed", "6",
        "--drop-frames", "3,7", "--incomplete-frames", "10", "--out", str(w / "s_night"))
    run("rig", "calibrate", "--checkerboard", "--sim", "--quiet", "--views", "24", "--seed", "2",
        "--out", str(w / "calib"))
    (w / "splits.yaml").write_text("train: [s_day]\nval: [s_night]\n")
    for split in ("train", "val"):
        run("rpea", "build", "--split", split, "--sessions", str(w / "s_day"), str(w / "s_night"),
            "--calib", str(w / "calib" / "calib.yaml"), "--splits", str(w / "splits.yaml"),
            "--out", str(w / "rpea"))
    run("rpea", "events", "convert", str(w / "s_day" / "events.raw"), str(w / "day_events.h5"))
    run("cacd", "synth", "--out", str(w / "synth"), "--train", "2", "--val", "1", "--pairs", "4",
        "--seed", "3")
    run("cacd", "masks", str(w / "synth"), "--provider", "graph")


def fingerprint(w: Path) -> list[str]:
    lines: list[str] = []
    lines += session_lines(w / "s_day", "s_day") + session_lines(w / "s_night", "s_night")
    lines += calib_lines(w / "calib")
    for p in sorted((w / "rpea").rglob("*.h5")):
        lines += h5_lines(p, f"rpea/{p.relative_to(w / 'rpea')}")
    for p in sorted((w / "rpea").rglob("*.json")):
        lines.append(f"rpea/{p.relative_to(w / 'rpea')} = "
                     + json.dumps(_strip(json.loads(p.read_text())), sort_keys=True))
    lines += h5_lines(w / "day_events.h5", "dsec")
    for p in sorted((w / "synth").rglob("*.h5")):
        lines += h5_lines(p, f"synth/{p.relative_to(w / 'synth')}")
    return lines


if __name__ == "__main__":
    main()
