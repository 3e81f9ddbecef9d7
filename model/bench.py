"""Model cost: parameters, FLOPs, inference latency of CACD vs single-stream SegFormer.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (PyTorch's counter: matmuls,
convolutions and attention; one multiply-add = 2 FLOPs; normalisation, activations and
interpolation are not counted). Papers in this area (SegFormer, CMX, Table 3 of CACD) usually
report mmcv/fvcore "FLOPs", which are multiply-adds, so GMACs = FLOPs / 2 is printed too.
Latency: batch 1, `warmup` untimed runs, then the median of `runs` timed forwards under
`torch.inference_mode()` (CUDA: synchronised, bf16 autocast when `amp`).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.cacd import CACDNet, NetConfig


def _inputs(net: CACDNet, size: int, device: torch.device):
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, device=device)
    events = torch.rand(1, net.cfg.event_channels, size, size, device=device)
    return (image if net.cfg.modalities != "event" else None,
            events if net.cfg.modalities != "image" else None)


def count_flops(net: CACDNet, size: int = 512) -> int:
    """Forward FLOPs of inference (encoders + fusion + decoder) at size x size."""
    net.eval()
    dev = next(net.parameters()).device
    image, events = _inputs(net, size, dev)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(image, events)
    return int(counter.get_total_flops())


def latency_ms(net: CACDNet, size: int = 512, runs: int = 20, warmup: int = 3,
               amp: bool = False) -> float:
    """Median forward latency in milliseconds."""
    net.eval()
    dev = next(net.parameters()).device
    image, events = _inputs(net, size, dev)
    times = []
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else _nullctx
    with torch.inference_mode():
        for i in range(warmup + runs):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with ctx():
                net(image, events)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def bench(cfg: NetConfig, size: int = 512, runs: int = 20, warmup: int = 3,
          device: str = "cpu", amp: bool = False, flops: bool = True, progress: bool = False) -> dict:
    """Compare CACD (cfg), the same without HFCA/JBCD heads, and SegFormer (image only).
    `progress`: a bar over the FLOP counts and the timing rounds (on a terminal only)."""
    from common.progress import progress_bar

    variants = {
        "CACD": cfg,
        "CACD without HFCA/JBCD": replace(cfg, hfca=False, jbcd=False),
        "SegFormer (RGB only)": replace(cfg, modalities="image", hfca=False, jbcd=False),
    }
    rows, nets = [], []
    bar = progress_bar(desc="bench", total=len(variants) * 2 + runs, unit="step", enabled=progress,
                       leave=False)
    for name, c in variants.items():
        torch.manual_seed(0)
        net = CACDNet(c).to(device).eval()
        row = {"model": name, "backbone": c.backbone,
               "trainable_params_M": round(sum(p.numel() for p in net.parameters()
                                               if p.requires_grad) / 1e6, 3),
               "inference_params_M": round(net.inference_parameters() / 1e6, 3)}
        if flops:
            f = count_flops(net, size)
            row["flops"] = f
            row["GFLOPs"] = round(f / 1e9, 2)
            row["GMACs"] = round(f / 2e9, 2)
        rows.append(row)
        nets.append(net)
        bar.update()
    # interleaved timing: each round times every variant once, so load drift hits all alike
    samples: list[list[float]] = [[] for _ in nets]
    for net in nets:
        latency_ms(net, size, runs=1, warmup=warmup, amp=amp)
        bar.update()
    for _ in range(runs):
        for k, net in enumerate(nets):
            samples[k].append(latency_ms(net, size, runs=1, warmup=0, amp=amp))
        bar.update()
    bar.close()
    latency = [round(statistics.median(s), 2) for s in samples]
    for row, ms in zip(rows, latency, strict=True):
        row["latency_ms"] = ms
    ratio = latency[0] / latency[2]
    return {"size": size, "device": device, "amp": amp, "runs": runs, "config": asdict(cfg),
            "flop_counter": "torch.utils.flop_counter.FlopCounterMode (1 MAC = 2 FLOPs)",
            "rows": rows, "latency_ratio_cacd_over_segformer": round(ratio, 3)}


def format_table(doc: dict) -> str:
    cols = ["model", "backbone", "trainable_params_M", "inference_params_M", "GFLOPs", "GMACs",
            "latency_ms"]
    cols = [c for c in cols if c in doc["rows"][0]]
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for r in doc["rows"]:
        lines.append(" | ".join(str(r[c]) for c in cols))
    lines.append(f"latency ratio CACD / SegFormer: {doc['latency_ratio_cacd_over_segformer']} "
                 f"({doc['size']}x{doc['size']}, {doc['device']}, median of {doc['runs']})")
    return "\n".join(lines)
