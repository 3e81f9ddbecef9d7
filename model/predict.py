"""Colour overlays of predictions (the paper's Fig. 6 layout): RGB | events | prediction | GT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dataset.labels import colorize
from dataset.visual import save_rgb
from model.data import collate, make_dataset, to_device
from model.evaluate import predict_logits


def event_rgb(events: np.ndarray) -> np.ndarray:
    """A viewable picture of a representation: ON red, OFF blue on white (frame), or |sum|."""
    if events.shape[0] == 3:
        on, off = np.clip(events[0], 0, 1), np.clip(events[1], 0, 1)
    else:
        s = events.sum(0)
        on, off = np.clip(s, 0, None), np.clip(-s, 0, None)
        m = max(float(max(on.max(), off.max())), 1e-6)
        on, off = on / m, off / m
    img = np.full(events.shape[1:] + (3,), 255.0)
    img[..., 1] -= 255 * np.maximum(on, off)
    img[..., 2] -= 255 * on
    img[..., 0] -= 255 * off
    return np.clip(img, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    col = colorize(ids).astype(np.float32)
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * col, 0, 255).astype(np.uint8)


def predict_to_folder(net, cfg: dict, root: str | Path, split: str, out: str | Path,
                      device: str | torch.device = "cpu", limit: int | None = None) -> list[Path]:
    """Write one PNG panel per pair (RGB | events | prediction overlay | ground truth)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = make_dataset(cfg, root, split, train=False)
    n = len(ds) if limit is None else min(limit, len(ds))
    net.eval()
    written = []
    for idx in tqdm(range(n), desc="predict"):
        batch = to_device(collate([ds[idx]]), torch.device(device))
        pred = predict_logits(net, batch).argmax(1)[0].cpu().numpy().astype(np.uint8)
        image = batch["image"][0].permute(1, 2, 0).cpu().numpy()
        label = batch["label"][0].cpu().numpy()
        panel = np.concatenate([image, event_rgb(batch["events"][0].cpu().numpy()),
                                overlay(image, pred), colorize(label)], 1)
        s, i = ds.items[idx]
        path = out / f"{ds.sequences[s].path.stem}_{i:05d}.png"
        save_rgb(path, panel)
        written.append(path)
    return written
