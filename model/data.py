"""Glue between `dataset.reader.RPEADataset` and the trainer: the training-time sample
transform (enhancement, gradient map, exposure regions, instance masks) and loaders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataset.reader import RPEADataset, widen_batch
from model.enhance import exposure_map, get_enhancer, gradient_intensity_map
from model.masks import STORED, check_stored_masks, get_provider, mask_source_label


class TrainTransform:
    """Adds `exposure` (always), and for HFCA/JBCD `gim` and `masks` to a numpy sample: masks
    computed from the enhanced image (`data.masks` graph | sam), or the stored ones the dataset
    read (precomputed | oracle).

    Runs in DataLoader workers; the SAM model (if any) is created lazily per process.
    """

    def __init__(self, cfg: dict, need_masks: bool, need_gim: bool) -> None:
        d = cfg["data"]
        self.alpha, self.beta = cfg["loss"]["alpha"], cfg["loss"]["beta"]
        self.representation = d["representation"]
        self.need_masks, self.need_gim = need_masks, need_gim
        self.mask_name = d["masks"]
        self.sam = (d.get("sam_checkpoint"), d.get("sam_model_type", "vit_h"))
        self.enhance_name = d["enhance"]
        self._enhance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
        self._provider: Any = False

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_enhance"], state["_provider"] = None, False
        return state

    def __call__(self, s: dict[str, Any]) -> dict[str, Any]:
        image = s["image"]
        s["exposure"] = exposure_map(image, self.alpha, self.beta)
        if not (self.need_masks or self.need_gim):
            return s
        if self._enhance is None:
            self._enhance = get_enhancer(self.enhance_name)
        enhanced = self._enhance(image, s["events"])
        if self.need_gim:
            s["gim"] = gradient_intensity_map(enhanced, s["events"], self.representation)
        if self.need_masks:
            if self.mask_name in STORED:  # read with the sample; make_dataset checked the source
                if "masks" not in s:
                    raise ValueError(f"data.masks={self.mask_name} but a sample has no stored "
                                     "masks; run `cacd masks DIR` or use data.masks=graph")
            else:  # computed from the enhanced image, never the file's (oracle) masks
                if self._provider is False:
                    self._provider = get_provider(self.mask_name, *self.sam)
                s["masks"] = self._provider(enhanced)
        return s


def make_dataset(cfg: dict, root: str | Path, split: str, train: bool,
                 misalign_px: float = 0.0, working_resolution: bool = True) -> RPEADataset:
    """The split's dataset with the config's representation (+ augmentation when `train`), at
    the config's working resolution (`data.short_side`; for evaluation with the labels on the
    grid), or with `working_resolution=False` all on the grid (pictures drawn at full size)."""
    d = cfg["data"]
    m = cfg["model"]
    two = m["modalities"] == "both"
    need_masks = train and two and bool(m["hfca"])
    need_gim = train and two and bool(m["jbcd"])
    stored = need_masks and d["masks"] in STORED
    if stored:  # oracle masks never pass for computed ones, nor the reverse
        check_stored_masks(root, split, d["masks"])
    crop = tuple(d["crop"]) if (train and d.get("crop")) else None
    # masks are read only where the loss uses the stored ones; label/masks stay in the file's
    # narrow dtypes across the worker boundary and `to_device` widens them (loader throughput)
    return RPEADataset(
        root, split, representation=d["representation"], bins=d["bins"], crop_hw=crop,
        hflip=train and bool(d["hflip"]), misalign_px=misalign_px,
        transform=TrainTransform(cfg, need_masks, need_gim), seed=int(cfg["train"]["seed"]),
        with_masks=stored, compact=True,
        short_side=d.get("short_side") if working_resolution else None, full_label=not train)


def hfca_masks_label(cfg: dict, root: str | Path) -> str | None:
    """How reports name the instance masks a config's HFCA trains on ("graph masks", "oracle
    masks", "precomputed SAM masks", ...; `model.masks.mask_source_label`); None when the
    config trains no HFCA. Stored masks are checked as `make_dataset` checks them."""
    m = cfg["model"]
    if not (m["modalities"] == "both" and m["hfca"]):
        return None
    kind = cfg["data"]["masks"]
    sources = check_stored_masks(root, "train", kind) if kind in STORED else ()
    return mask_source_label(kind, sources)


def collate(samples: list[dict]) -> dict[str, Any]:
    """Stack tensors; keep everything else as lists."""
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if isinstance(vals[0], torch.Tensor):
            dtypes = {v.dtype for v in vals}
            if len(dtypes) > 1:  # stored (uint16) and computed (int64) masks in one batch
                floating = any(d.is_floating_point for d in dtypes)
                vals = [v.to(torch.float32 if floating else torch.int64) for v in vals]
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], (int, np.integer)):
            out[k] = torch.tensor(vals)
        else:
            out[k] = vals
    return out


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors moved to `device`; compact `label`/`masks` widened to int64 there."""
    return widen_batch({k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                        for k, v in batch.items()})
