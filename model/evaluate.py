"""Evaluation: mIoU overall, per class, per condition (day/night, over/under-exposed regions).

Conventions (mmseg's): IoU_c = TP / (TP + FP + FN) over all evaluated pixels, classes whose
union is empty are left out of the mean (NaN), label 255 is ignored. Condition "under"/"over"
are the pixels whose HSV V is below alpha / above beta in the input image; "day"/"night" are
the pairs' tags.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.atomic import write_text_atomic
from model.data import collate, make_dataset, to_device

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle")
CONDITIONS = ("overall", "day", "night", "under", "over", "normal")


class Confusion:
    """Accumulating K x K confusion matrix (rows: truth, columns: prediction)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.mat = np.zeros((k, k), np.int64)

    def add(self, truth: np.ndarray, pred: np.ndarray, sel: np.ndarray | None = None) -> None:
        ok = truth != 255
        if sel is not None:
            ok &= sel
        t, p = truth[ok].astype(np.int64), pred[ok].astype(np.int64)
        self.mat += np.bincount(t * self.k + p, minlength=self.k * self.k).reshape(self.k, self.k)

    def iou(self) -> np.ndarray:
        tp = np.diag(self.mat).astype(np.float64)
        union = self.mat.sum(0) + self.mat.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.mat.sum()
        return float(np.trace(self.mat) / total) if total else float("nan")


@torch.no_grad()
def predict_logits(net, batch: dict, amp: bool = False,
                   size: tuple[int, int] | None = None) -> torch.Tensor:
    """Logits (B, K, H, W) at `size`, else at the label's resolution, else at the image's."""
    image = batch["image"] if net.cfg.modalities != "event" else None
    events = batch["events"] if net.cfg.modalities != "image" else None
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else _null()
    with ctx:
        logits = net(image, events)
    if size is None:
        size = batch["label"].shape[1:] if "label" in batch else batch["image"].shape[2:]
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def evaluate(net, cfg: dict, root: str | Path, split: str = "val", misalign_px: float = 0.0,
             device: torch.device | str = "cpu", progress: bool = True,
             max_samples: int | None = None) -> dict[str, Any]:
    """Run the network over a split; return the metrics document."""
    ds = make_dataset(cfg, root, split, train=False, misalign_px=misalign_px)
    k = net.cfg.num_classes
    conf = {c: Confusion(k) for c in CONDITIONS}
    net.eval()
    device = torch.device(device)
    n = len(ds) if max_samples is None else min(len(ds), max_samples)
    bs = int(cfg.get("eval", {}).get("batch_size", 4))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(n)), batch_size=bs,
                                         collate_fn=collate,
                                         num_workers=int(cfg["data"]["num_workers"]),
                                         generator=torch.Generator().manual_seed(0))
    amp = device.type == "cuda" and cfg["train"]["amp"] in ("auto", "bf16")
    for batch in tqdm(loader, desc=f"eval {split}", leave=False,
                      disable=None if progress else True):  # None: no bar off a terminal
        batch = to_device(batch, device)
        pred = predict_logits(net, batch, amp).argmax(1).cpu().numpy()
        label = batch["label"].cpu().numpy()
        exposure = batch["exposure"]
        if exposure.shape[1:] != batch["label"].shape[1:]:  # a working resolution below the grid's
            exposure = F.interpolate(exposure[:, None].float(), size=batch["label"].shape[1:],
                                     mode="nearest")[:, 0].to(batch["exposure"].dtype)
        exposure = exposure.cpu().numpy()
        for b in range(pred.shape[0]):
            t, p = label[b], pred[b]
            night = bool(batch["is_night"][b])
            conf["overall"].add(t, p)
            conf["night" if night else "day"].add(t, p)
            conf["under"].add(t, p, exposure[b] == 1)
            conf["over"].add(t, p, exposure[b] == 2)
            conf["normal"].add(t, p, exposure[b] == 0)
    doc: dict[str, Any] = {"split": split, "misalign_px": misalign_px, "num_samples": n}
    for c, m in conf.items():
        iou = m.iou()
        doc[c] = {
            "mIoU": _f(m.miou()),
            "pixel_accuracy": _f(m.pixel_accuracy()),
            "pixels": int(m.mat.sum()),
            "per_class": {class_names(k)[i]: _f(iou[i]) for i in range(k)
                          if not math.isnan(iou[i])},
        }
    doc["mIoU"] = doc["overall"]["mIoU"]
    # the overall confusion matrix, for the figure `cacd eval` draws (and to redraw it later)
    doc["confusion"] = {"classes": list(class_names(k)), "rows": "truth",
                        "columns": "prediction", "pixels": conf["overall"].mat.tolist()}
    return doc


def class_names(k: int) -> tuple[str, ...]:
    """Names of `k` classes: Cityscapes' 19, else their numbers."""
    return CITYSCAPES_CLASSES if k == len(CITYSCAPES_CLASSES) else tuple(str(i) for i in range(k))


#: The condition columns of the per-class table (`normal` stays in the JSON only).
TABLE_CONDITIONS = ("overall", "day", "night", "under", "over")


def per_class_table(doc: dict[str, Any]) -> str:
    """The per-class IoU (%) of an `evaluate` document as a text table: one row per class, one
    column per condition whose subset has labelled pixels, '-' where the class is absent (no
    pixel in truth nor prediction); the last row is the mIoU. Numbers are the JSON's, rounded."""
    conds = [c for c in TABLE_CONDITIONS if doc.get(c, {}).get("pixels", 0) > 0]
    names = doc.get("confusion", {}).get("classes") or list(
        dict.fromkeys(n for c in conds for n in doc[c]["per_class"]))
    width = max([len("class")] + [len(n) for n in names])
    head = f"{'class':<{width}}" + "".join(f"{c:>9}" for c in conds)
    lines = [f"per-class IoU (%), {doc.get('split', '?')} split, {doc.get('num_samples', '?')} "
             "pairs ('-': the class is in neither truth nor prediction)", head, "-" * len(head)]

    def cell(x: float | None) -> str:
        return f"{'-':>9}" if x is None else f"{x:>9.1f}"

    for n in names:
        lines.append(f"{n:<{width}}" + "".join(cell(doc[c]["per_class"].get(n)) for c in conds))
    lines.append("-" * len(head))
    lines.append(f"{'mIoU':<{width}}" + "".join(cell(doc[c]["mIoU"]) for c in conds))
    return "\n".join(lines)


def _f(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x) * 100.0, 3)


def write_json(doc: dict, path: str | Path) -> None:
    """`doc` as indented JSON, published atomically (readers never see half a report). Lists of
    plain numbers (the confusion matrix' rows) stay on one line each."""
    text = json.dumps(doc, indent=1)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m[1].split(",")) + "]",
                            text)
    write_text_atomic(path, text)


#: a JSON list that holds numbers only (no strings, no nested lists), spread over lines by the
#: indent (a line break after "[", which a JSON string never holds: string values stay as they are)
_NUMBER_LIST = re.compile(r"\[\n\s*([-+0-9.eE]+(?:,\n\s*[-+0-9.eE]+)*)\n\s*\]")
