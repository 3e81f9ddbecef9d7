"""Table 2 of the paper on a small dataset: modality and module ablation of CACD.

Trains each configuration of configs/ablation/ for the same number of optimiser steps (same
seed, same batch size, same data order, same poly schedule) and evaluates it on the val split:
mIoU overall, on under-/over-exposed pixels (HSV V of the input image < alpha / > beta), day,
night, and the trainable parameter count. The table names what the auxiliary terms trained on:
the HFCA instance masks (`data.masks`: graph by default, computed from the image; "oracle masks"
where `--set data.masks=oracle` trained on the simulator's ground truth) and the JBCD direction
(`loss.distill_direction`: event->image by default, the paper's). The "JBCD without HFCA" row has
no projection heads: its losses compare the two encoders' features directly. Without --data it
writes a synthetic hard-lighting dataset (glare, deep shadows, night; `dataset.synthetic`,
--height x --width) into the output folder first. The defaults (MiT-B0 from scratch, 48x64
images, 360 steps of batch 4) fit a shared 2-core CPU in about 15-25 minutes.

    python benchmarks/ablation.py --out runs/ablation
    python benchmarks/ablation.py --data data/ --out runs/ablation_b5 --steps 20000 \
        --batch-size 16 --set model.backbone=mit_b5 --set data.crop=[512,512]
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
    ap.add_argument("--steps", type=int, default=360, help="optimiser steps for every row")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="training seed (init, crops, order)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a shared 2-core machine 2 threads ran a "
                         "step 2-4x slower than 1)")
    ap.add_argument("--height", type=int, default=48, help="synthetic image height (px)")
    ap.add_argument("--width", type=int, default=64, help="synthetic image width (px)")
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS))
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="config override applied to every row (repeatable)")
    ap.add_argument("--synth-train", type=int, default=24, help="synthetic train sequences")
    ap.add_argument("--synth-val", type=int, default=8, help="synthetic val sequences")
    ap.add_argument("--synth-seed", type=int, default=2024)
    args = ap.parse_args()

    from model.config import resolve
    from model.data import hfca_masks_label
    from model.evaluate import evaluate
    from model.train import build_net, train

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if not args.data and not (data / "train" / "index.json").is_file():
        from dataset.synthetic import SynthConfig, write_dataset

        write_dataset(data, {"train": args.synth_train, "val": args.synth_val},
                      SynthConfig(height=args.height, width=args.width), seed=args.synth_seed)
    results = []
    for name, img, evt, hfca, jbcd in ROWS:
        if name not in args.rows.split(","):
            continue
        # epochs only bound the run; max_steps fixes the step count and the poly schedule
        sets = ["train.epochs=100000", f"train.max_steps={args.steps}", "train.max_minutes=null",
                "train.val_every=100000", f"train.batch_size={args.batch_size}",
                f"train.seed={args.seed}", f"train.threads={args.threads}"]
        if not args.data:
            sets.append(f"data.crop=[{args.height},{args.width}]")
        cfg = resolve(f"ablation/{name}.yaml", sets + args.sets)
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
                        "hfca_masks": hfca_masks_label(cfg, data),
                        "distill_direction": cfg["loss"]["distill_direction"] if jbcd else None,
                        "params_M": round(params, 3), "mIoU": doc["mIoU"],
                        "under": doc["under"]["mIoU"], "over": doc["over"]["mIoU"],
                        "day": doc["day"]["mIoU"], "night": doc["night"]["mIoU"],
                        "steps": json.loads((out / name / "summary.json").read_text())[
                            "global_step"],
                        "train_s": round(time.monotonic() - t0, 1)})
        (out / "ablation.json").write_text(json.dumps(results, indent=1))
    print(format_table(results))
    print(f"steps per row: {sorted({r['steps'] for r in results})}, batch {args.batch_size}, "
          f"seed {args.seed}, data {data}; seconds per row: "
          + ", ".join(f"{r['config']} {r['train_s']:.0f}" for r in results))


DIRECTION = {"event_to_image": "event→image", "mutual": "mutual"}


def format_table(rows: list[dict]) -> str:
    """Table 2's layout; an HFCA cell names its masks ("✓ (graph masks)", "✓ (oracle masks)"),
    a JBCD cell its distillation direction ("✓ (event→image)")."""
    mark = {True: "✓", False: "✗"}

    def hfca_cell(r: dict) -> str:
        masks = r.get("hfca_masks") or "masks not recorded"
        return f"✓ ({masks})" if r["hfca"] else mark[False]

    def jbcd_cell(r: dict) -> str:
        if not r["jbcd"]:
            return mark[False]
        d = r.get("distill_direction")
        return f"✓ ({DIRECTION.get(d, d) if d else 'direction not recorded'})"

    lines = ["Image | Event | HFCA | JBCD | Trainable Param (M) | mIoU | under-exp. | over-exp. "
             "| day | night",
             "---|---|---|---|---|---|---|---|---|---"]
    def num(v: float | None) -> str:  # None: the val split has no such pixels (no night pair)
        return "-" if v is None else f"{v:.1f}"

    base = next((r["mIoU"] for r in rows if r["config"] == "concat"), None)
    for r in rows:
        delta = ""
        if base is not None and r["mIoU"] is not None and (r["hfca"] or r["jbcd"]):
            delta = f" ({r['mIoU'] - base:+.1f})"
        lines.append(" | ".join([mark[r["image"]], mark[r["event"]], hfca_cell(r),
                                 jbcd_cell(r), f"{r['params_M']:.2f}",
                                 num(r["mIoU"]) + delta, num(r["under"]), num(r["over"]),
                                 num(r["day"]), num(r["night"])]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
