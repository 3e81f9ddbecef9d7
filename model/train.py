"""The CACD trainer: single process or DDP (`torchrun --nproc_per_node N`), exact resume.

Determinism for resume: the sample order of an epoch is a permutation seeded by (seed, epoch),
augmentation randomness is keyed by (seed, epoch, sample index) inside the dataset, and the torch
RNG (dropout, stochastic depth) is saved with every checkpoint; so a run resumed from step k
follows the same trajectory as an uninterrupted one (bit-exact on CPU). Ctrl-C ends the current
step and saves its checkpoint (`summary["interrupted"]`); a killed run resumes from its last one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from common.atomic import write_text_atomic
from common.interrupt import sigint_sets
from dataset.reader import has_split
from model.cacd import CACDNet, NetConfig
from model.checkpoint import (
    load_model,
    load_training_state,
    save_checkpoint,
    save_model,
)
from model.data import collate, hfca_masks_label, make_dataset, to_device
from model.evaluate import evaluate, write_json
from model.losses import LossWeights, total_loss
from model.pretrained import load_pretrained


def build_net(cfg: dict, event_channels: int) -> CACDNet:
    """The network of a config, with pretrained weights from local files if the config names any
    (`model.pretrained_rgb` / `pretrained_event`: MiT encoder weights, or a SegFormer / mmseg
    segmentation checkpoint whose `backbone.*` fills the encoder and `decode_head.*` the decoder
    where shapes match; a segmentation checkpoint's load report goes to stderr)."""
    m = cfg["model"]
    net = CACDNet(NetConfig(
        backbone=m["backbone"], num_classes=int(m["num_classes"]),
        event_channels=event_channels, modalities=m["modalities"], hfca=bool(m["hfca"]),
        jbcd=bool(m["jbcd"]), proj_dim=int(m["proj_dim"]), decoder_dim=m["decoder_dim"],
        drop_path_rate=float(m["drop_path_rate"])))
    for report in load_pretrained(net, m.get("pretrained_rgb"), m.get("pretrained_event")):
        if os.environ.get("RANK", "0") == "0":
            print(report.summary(), file=sys.stderr)
    return net


def loss_weights(cfg: dict) -> LossWeights:
    """Eq. 8's weights and the HFCA/JBCD constants of a config (`loss.*`)."""
    c = cfg["loss"]
    return LossWeights(float(c["cluster"]), float(c["align"]), float(c["boundary"]),
                       float(c["content"]), float(c["tau"]), int(c["max_instances"]),
                       distill=str(c.get("distill_direction", "event_to_image")))


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int,
                   world: int) -> list[list[int]]:
    """This rank's batches of an epoch: a seeded permutation, split evenly between ranks."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    per_rank = n // world
    mine = perm[rank * per_rank:(rank + 1) * per_rank]
    bs = min(max(batch_size // world, 1), len(mine))  # batch_size is the global batch
    return [mine[i:i + bs] for i in range(0, len(mine) - bs + 1, bs)] if bs else []


def _lr_at(cfg: dict, step: int, total: int, time_frac: float = 0.0) -> float:
    """Learning rate of `step`: a linear warm-up over `train.warmup_steps`, then poly decay to 0
    at the end of the run. The end is whichever comes first, the step count or the wall-clock
    budget (`time_frac`: the share of train.max_minutes used), so a run bounded by minutes still
    anneals instead of stopping at a high rate; a run bounded by steps stays exactly repeatable."""
    t = cfg["train"]
    base = float(t["lr"])
    warm = int(t.get("warmup_steps") or 0)
    if step < warm:
        return base * (step + 1) / warm
    if t["lr_schedule"] == "poly" and total > 0:
        frac = max(step / total, min(max(time_frac, 0.0), 1.0))
        return base * max(1.0 - frac, 0.0) ** 0.9
    return base


def train(cfg: dict, data_root: str | Path, run_dir: str | Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train on `<data_root>/train`, validate on `<data_root>/val` if present."""
    rank, world, local = _dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    t = cfg["train"]
    if t.get("threads"):
        torch.set_num_threads(int(t["threads"]))
    seed = int(t["seed"])
    torch.manual_seed(seed)
    run = Path(run_dir)
    main = rank == 0
    train_ds = make_dataset(cfg, data_root, "train", train=True)
    has_val = has_split(data_root, "val")
    if resume and (run / "last.safetensors").is_file():
        net = load_model(run / "last.safetensors")
    else:
        resume = False
        net = build_net(cfg, train_ds.event_channels)
    net.to(device)
    optim = _make_optimizer(cfg, net)
    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_miou": None,
                             "history": [], "elapsed_s": 0.0}
    if resume:
        state.update(load_training_state(run, optim))
    model: torch.nn.Module = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[local] if device.type == "cuda" else None)
    weights = loss_weights(cfg)
    amp = device.type == "cuda" and t["amp"] in ("auto", "bf16")
    epochs = int(t["epochs"])
    steps_per_epoch = len(_epoch_batches(len(train_ds), int(t["batch_size"]), seed, 0, rank,
                                         world))
    if steps_per_epoch == 0:
        raise ValueError(f"{data_root}/train: {len(train_ds)} labelled pairs, too few for "
                         f"{world} process(es)")
    if main:  # only now that the data and the network are there: a bad input leaves no run folder
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    total_steps = epochs * steps_per_epoch
    if t.get("max_steps"):
        total_steps = min(total_steps, int(t["max_steps"]))
    budget_s = float(t["max_minutes"]) * 60 if t.get("max_minutes") else math.inf
    writer = _writer(run) if main else None
    started = time.monotonic() - float(state.get("elapsed_s", 0.0))
    use_hfca, use_jbcd = net.cfg.hfca, net.cfg.jbcd
    stop = False
    interrupt = threading.Event()  # Ctrl-C: stop after this step, checkpoint, say how to resume
    bar = tqdm(total=total_steps, initial=state["global_step"], disable=None if (main and progress) else True,
               desc="train", dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 30.0)  # a log file gets a line per 30 s
    with sigint_sets(interrupt):  # Ctrl-C: stop after this step
        while state["epoch"] < epochs and not stop:
            epoch = state["epoch"]
            train_ds.set_epoch(epoch)
            batches = _epoch_batches(len(train_ds), int(t["batch_size"]), seed, epoch, rank, world)
            todo = batches[state["step_in_epoch"]:]
            # an own generator: creating loaders must not consume the global RNG (exact resume)
            loader = torch.utils.data.DataLoader(train_ds, batch_sampler=todo, collate_fn=collate,
                                                 num_workers=int(cfg["data"]["num_workers"]),
                                                 generator=torch.Generator().manual_seed(epoch))
            model.train()
            for batch in loader:
                batch = to_device(batch, device)
                time_frac = (time.monotonic() - started) / budget_s if math.isfinite(budget_s) else 0.0
                lr = _lr_at(cfg, state["global_step"], total_steps, time_frac)
                for g in optim.param_groups:
                    g["lr"] = lr
                image = batch["image"] if net.cfg.modalities != "event" else None
                events = batch["events"] if net.cfg.modalities != "image" else None
                with torch.autocast("cuda", dtype=torch.bfloat16) if amp else _Null():
                    logits, aux = model(image, events, with_aux=True)
                loss, parts = total_loss(logits, batch["label"], aux, batch, weights,
                                         use_hfca, use_jbcd)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                state["global_step"] += 1
                state["step_in_epoch"] += 1
                bar.update(1)
                if main:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in parts.items() if k != "total"},
                                    refresh=False)
                    if state["global_step"] % int(t["log_every"]) == 0:
                        if writer is not None:
                            for k, v in parts.items():
                                writer.add_scalar(f"loss/{k}", v, state["global_step"])
                            writer.add_scalar("lr", lr, state["global_step"])
                        state.setdefault("loss_log", []).append(
                            {"step": state["global_step"],
                             **{k: round(v, 5) for k, v in parts.items()}})
                elapsed = time.monotonic() - started
                halt = (t.get("stop_after_steps") and state["global_step"] >= int(t["stop_after_steps"])
                        or interrupt.is_set())
                stop = _agree(bool(elapsed > budget_s or state["global_step"] >= total_steps or halt),
                              world)
                if stop:
                    break
                if main and state["global_step"] % int(t["save_every_steps"]) == 0:
                    state["elapsed_s"] = elapsed
                    _save(run, net, optim, state)
            if state["step_in_epoch"] >= len(batches):
                state["epoch"] += 1
                state["step_in_epoch"] = 0
            state["elapsed_s"] = time.monotonic() - started
            epoch_done = state["step_in_epoch"] == 0
            due = state["epoch"] % int(t["val_every"]) == 0 or state["epoch"] >= epochs
            interrupted = _agree(interrupt.is_set(), world)
            # Ctrl-C: no validation of its own, so the resumed run validates where an uninterrupted
            # one does (same history, same best weights)
            if main and has_val and ((stop and not interrupted) or (epoch_done and due)):
                _validate(cfg, net, data_root, device, state, run, writer)
            if main:
                _save(run, net, optim, state)
            if world > 1:
                dist.barrier()
            if interrupted:
                stop = True
            if not stop:  # a validation can use up the time budget: no new epoch after it
                stop = _agree(time.monotonic() - started > budget_s, world)
    bar.close()
    if writer is not None:
        writer.close()
    with torch.no_grad():
        checksum = float(sum(p.double().sum() for p in net.parameters()))
    rank_checksums = [checksum]
    if world > 1:  # DDP keeps replicas identical; record it so a desync is visible
        gathered: list = [None] * world
        dist.all_gather_object(gathered, checksum)
        rank_checksums = gathered
    summary = {"global_step": state["global_step"], "epoch": state["epoch"],
               "elapsed_s": round(state["elapsed_s"], 1), "best_val_mIoU": state["best_miou"],
               "history": state["history"],
               "param_checksum": checksum, "rank_checksums": rank_checksums,
               # what the auxiliary terms trained on, so no report can hide oracle masks
               "hfca_masks": hfca_masks_label(cfg, data_root),
               "distill_direction": weights.distill if hasattr(net, "content_img") else None,
               "world_size": world, "interrupted": interrupt.is_set()}
    if main:
        write_json(summary, run / "summary.json")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _agree(flag: bool, world: int) -> bool:
    """All ranks stop together (any rank's budget/step limit stops everyone)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _make_optimizer(cfg: dict, net: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg["train"]
    params = [p for p in net.parameters() if p.requires_grad]
    if t["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=float(t["lr"]), weight_decay=float(t["weight_decay"]))
    if t["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=float(t["lr"]),
                                 weight_decay=float(t["weight_decay"]))
    raise ValueError(f"unknown optimizer {t['optimizer']!r} (adam | adamw)")


def _save(run: Path, net: CACDNet, optim, state: dict) -> None:
    save_checkpoint(run, net, optim, {k: v for k, v in state.items()
                                      if k not in ("optimizer_param_groups", "optimizer_scalars",
                                                   "scheduler")})


def _validate(cfg, net, data_root, device, state, run, writer) -> None:
    doc = evaluate(net, cfg, data_root, "val", device=device, progress=False)
    miou = doc["mIoU"]
    state["history"].append({"epoch": state["epoch"], "step": state["global_step"],
                             "val_mIoU": miou, "under": doc["under"]["mIoU"],
                             "over": doc["over"]["mIoU"]})
    if writer is not None and miou is not None:
        writer.add_scalar("val/mIoU", miou, state["global_step"])
    if miou is not None and (state["best_miou"] is None or miou > state["best_miou"]):
        state["best_miou"] = miou
        save_model(net, run / "best.safetensors", {"global_step": str(state["global_step"])})
        write_json(doc, run / "best_val.json")
    tqdm.write(f"[val] epoch {state['epoch']} step {state['global_step']}: mIoU {miou}")
    net.train()


def _writer(run: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard missing: train without logs
        return None
    return SummaryWriter(str(run / "tb"))


def read_summary(run: str | Path) -> dict:
    return json.loads((Path(run) / "summary.json").read_text())
