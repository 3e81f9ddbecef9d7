"""`cacd bench`, `cacd masks`, `cacd synth`."""

from __future__ import annotations

import json

import click
import torch

from common.clierrors import Number, positive


@click.command("bench")
@click.option("--backbone", default="mit_b0", show_default=True,
              type=click.Choice([f"mit_b{i}" for i in range(6)]), help="MiT encoder size.")
@click.option("--size", default=512, show_default=True, type=Number(int, min=32, max=8192),
              help="Square input side in pixels.")
@click.option("--runs", default=10, show_default=True, type=positive(int),
              help="Timed forwards per model.")
@click.option("--warmup", default=2, show_default=True, type=Number(int, min=0))
@click.option("--event-channels", default=3, show_default=True, type=positive(int))
@click.option("--device", default=None, help="cpu | cuda (default: cuda if available).")
@click.option("--amp/--no-amp", default=False, help="bf16 autocast (CUDA).")
@click.option("--no-flops", is_flag=True, help="Skip the FLOP count.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False))
def bench_cmd(backbone, size, runs, warmup, event_channels, device, amp, no_flops, json_out):
    """Parameters, FLOPs and latency of CACD vs a single-stream SegFormer (same backbone).

    \b
    Examples:
      cacd bench                       # MiT-B0, 512x512, CPU
      cacd bench --backbone mit_b5 --device cuda --amp --runs 50
    """
    from model.bench import bench, format_table
    from model.cacd import NetConfig
    from model.evaluate import write_json

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = NetConfig(backbone=backbone, event_channels=event_channels, proj_dim=128)
    doc = bench(cfg, size, runs, warmup, device, amp, flops=not no_flops, progress=True)
    if device.startswith("cuda"):
        doc["gpu"] = torch.cuda.get_device_name(0)
    else:
        doc["cpu_threads"] = torch.get_num_threads()
    click.echo(format_table(doc))
    if json_out:
        write_json(doc, json_out)


@click.command("masks")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--provider", type=click.Choice(["graph", "sam"]), default="graph",
              show_default=True, help="graph: Felzenszwalb (offline); sam: needs --sam-checkpoint.")
@click.option("--sam-checkpoint", default=None, type=click.Path(dir_okay=False),
              help="Local SAM checkpoint (never downloaded).")
@click.option("--sam-model-type", default="vit_h", show_default=True)
@click.option("--enhance", default="clahe", show_default=True,
              help="clahe | none | package.module:function (e.g. an EvLight wrapper).")
@click.option("--split", "splits", multiple=True, help="Splits to process (default: all).")
def masks_cmd(data_dir, provider, sam_checkpoint, sam_model_type, enhance, splits):
    """Precompute HFCA instance masks into the dataset files (`masks`, uint16 ids, replacing
    any stored ground-truth masks); train on them with --set data.masks=precomputed.

    \b
    Examples:
      cacd masks data/
      cacd masks data/ --provider sam --sam-checkpoint ~/models/sam_vit_h_4b8939.pth
    """
    from model.masks import write_masks

    if provider == "sam" and not sam_checkpoint:
        raise click.UsageError("--provider sam needs --sam-checkpoint FILE (a local SAM checkpoint, "
                               "never downloaded), or use --provider graph")
    files = write_masks(data_dir, provider, enhance, tuple(splits) or None, sam_checkpoint,
                        sam_model_type)
    click.echo(f"{provider} masks written into {len(files)} file(s); train on them with "
               "--set data.masks=precomputed")


@click.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--train", "n_train", default=12, show_default=True, type=positive(int),
              help="Train sequences.")
@click.option("--val", "n_val", default=4, show_default=True, type=Number(int, min=0),
              help="Val sequences.")
@click.option("--pairs", default=8, show_default=True, type=positive(int), help="Pairs per sequence.")
@click.option("--height", default=96, show_default=True, type=Number(int, min=16, max=4096, unit="px"))
@click.option("--width", default=128, show_default=True, type=Number(int, min=16, max=4096, unit="px"))
@click.option("--seed", default=0, show_default=True)
@click.option("--no-masks", is_flag=True, help="Do not store ground-truth instance masks.")
def synth_cmd(out_dir, n_train, n_val, pairs, height, width, seed, no_masks):
    """Write a small synthetic hard-lighting RPEA dataset (glare, shadows, night).

    \b
    Example:
      cacd synth --out /tmp/synth && cacd train --data /tmp/synth --out runs/s
    """
    from common.atomic import removed_on_failure
    from dataset.synthetic import SynthConfig, write_dataset

    cfg = SynthConfig(height=height, width=width, pairs_per_sequence=pairs)
    splits = {"train": n_train, "val": n_val} if n_val else {"train": n_train}
    with removed_on_failure(out_dir):
        write_dataset(out_dir, splits, cfg, seed, with_masks=not no_masks, progress=True)
    click.echo(json.dumps({"out": out_dir, "train": n_train * pairs, "val": n_val * pairs}))
