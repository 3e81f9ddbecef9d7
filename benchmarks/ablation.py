"""Table 2 of the paper on a small dataset: modality and module ablation of CACD.

Trains each configuration of configs/ablation/ for the same number of steps (same seed, same
data order) and evaluates it on the val split: mIoU overall, on under-/over-exposed pixels, and
the trainable parameter count. Without --data it writes a synthetic hard-lighting dataset
(glare, shadows, night; `model.synthetic`) into the output folder first.

    python benchmarks/ablation.py --out runs/ablation --epochs 12
    python benchmarks/ablation.py --data data/ --out runs/ablation_b5 \
        --set model.backbone=mit_b5 --set data.crop=[512,512] --epochs 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

ROWS = [  # (config, Image, Event, HFCA, JBCD) as in Table 2
    ("image_only", True, False, False, False),
    ("event_only", False, True, False, False),
    ("concat", True, True, False, False),
    ("hfca", True, True, True, False),
    ("jbcd", True, True, False, True),
    ("full", True, True, True, True),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="RPEA root (default: synthesise one)")
    ap.add_argument("--out", required=True, help="folder for runs and the table")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS))
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="config override applied to every row (repeatable)")
    ap.add_argument("--synth-train", type=int, default=24, help="synthetic train sequences")
    ap.add_argument("--synth-val", type=int, default=8, help="synthetic val sequences")
    args = ap.parse_args()

    from model.config import resolve
    from model.evaluate import evaluate
    from model.train import build_net, train

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if not args.data and not (data / "train" / "index.json").is_file():
        from model.synthetic import SynthConfig, write_dataset

        write_dataset(data, {"train": args.synth_train, "val": args.synth_val}, SynthConfig(),
                      seed=2024)
    results = []
    for name, img, evt, hfca, jbcd in ROWS:
        if name not in args.rows.split(","):
            continue
        cfg = resolve(f"ablation/{name}.yaml", [f"train.epochs={args.epochs}",
                                                "train.max_minutes=null",
                                                f"train.val_every={args.epochs}", *args.sets])
        t0 = time.monotonic()
        done = out / name / "summary.json"
        same = (out / name / "config.yaml").is_file() and yaml.safe_load(
            (out / name / "config.yaml").read_text()) == cfg
        if done.is_file() and same:
            print(f"{name}: already trained in {out / name}, evaluating only")
        else:
            train(cfg, data, out / name, progress=True)
        from model.checkpoint import load_model

        net = load_model(out / name / "last.safetensors")
        doc = evaluate(net, cfg, data, "val", progress=False)
        channels = 3 if cfg["data"]["representation"] == "frame" else cfg["data"]["bins"]
        params = sum(p.numel() for p in build_net(cfg, channels).parameters()) / 1e6
        results.append({"config": name, "image": img, "event": evt, "hfca": hfca, "jbcd": jbcd,
                        "params_M": round(params, 3), "mIoU": doc["mIoU"],
                        "under": doc["under"]["mIoU"], "over": doc["over"]["mIoU"],
                        "day": doc["day"]["mIoU"], "night": doc["night"]["mIoU"],
                        "train_s": round(time.monotonic() - t0, 1)})
        (out / "ablation.json").write_text(json.dumps(results, indent=1))
    print(format_table(results))


def format_table(rows: list[dict]) -> str:
    mark = {True: "✓", False: "✗"}
    lines = ["Image | Event | HFCA | JBCD | Trainable Param (M) | mIoU | under-exp. | over-exp. "
             "| day | night",
             "---|---|---|---|---|---|---|---|---|---"]
    base = next((r["mIoU"] for r in rows if r["config"] == "concat"), None)
    for r in rows:
        delta = ""
        if base is not None and (r["hfca"] or r["jbcd"]):
            delta = f" ({r['mIoU'] - base:+.1f})"
        lines.append(" | ".join([mark[r["image"]], mark[r["event"]], mark[r["hfca"]],
                                 mark[r["jbcd"]], f"{r['params_M']:.2f}",
                                 f"{r['mIoU']:.1f}{delta}", f"{r['under']:.1f}",
                                 f"{r['over']:.1f}", f"{r['day']:.1f}", f"{r['night']:.1f}"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
