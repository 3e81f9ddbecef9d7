"""Training configuration: defaults (the compact CPU preset), YAML files, `--set` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# The compact CPU preset: MiT-B0 from scratch, small crops, a few minutes on 2 cores.
DEFAULTS: dict[str, Any] = {
    "model": {
        "backbone": "mit_b0",
        "modalities": "both",  # both | image | event
        "hfca": True,
        "jbcd": True,
        "proj_dim": 64,
        "decoder_dim": None,  # None: SegFormer's (256 for B0/B1, 768 for B2-B5)
        "drop_path_rate": 0.1,
        "num_classes": 19,
        "pretrained_rgb": None,  # local mit_b*.pth or nvidia/mit-b* folder
        "pretrained_event": None,
    },
    "data": {
        "representation": "frame",  # frame (3 channels) | voxel
        "bins": 5,
        "crop": [96, 128],  # [height, width]; null = full frames
        "hflip": True,
        "num_workers": 0,
        "masks": "auto",  # masks | graph | sam | auto
        "sam_checkpoint": None,
        "sam_model_type": "vit_h",
        "enhance": "clahe",  # clahe | none | package.module:function
    },
    "loss": {
        "cluster": 0.0005,
        "align": 0.01,
        "boundary": 0.001,
        "content": 0.001,
        "tau": 0.1,
        "alpha": 0.1,  # HSV V below: under-exposed
        "beta": 0.9,  # HSV V above: over-exposed
        "max_instances": 64,
    },
    "train": {
        "epochs": 40,
        "batch_size": 8,
        "optimizer": "adam",
        "lr": 0.0006,
        "weight_decay": 0.0,
        "lr_schedule": "poly",  # poly | constant
        "max_minutes": 4.0,  # wall-clock budget; null = none
        "max_steps": None,  # caps the schedule length
        "stop_after_steps": None,  # stop early but resumably (schedule unchanged)
        "amp": "auto",  # auto (bf16 on CUDA) | bf16 | off
        "seed": 0,
        "val_every": 5,  # epochs
        "save_every_steps": 200,
        "log_every": 10,
        "threads": None,  # torch intra-op threads on CPU (null = torch default)
    },
    "eval": {"batch_size": 4},
}


def deep_update(base: dict, other: dict, path: str = "") -> dict:
    """Merge `other` into a copy of `base`; unknown keys are an error (typos fail loudly)."""
    out = copy.deepcopy(base)
    for k, v in other.items():
        where = f"{path}{k}"
        if k not in out:
            raise KeyError(f"unknown config key {where!r}")
        if isinstance(out[k], dict):
            if not isinstance(v, dict):
                raise TypeError(f"config key {where!r} must be a mapping")
            out[k] = deep_update(out[k], v, where + ".")
        else:
            out[k] = v
    return out


def parse_set(items: list[str] | tuple[str, ...]) -> dict:
    """`["train.lr=1e-4", "data.crop=[64,64]"]` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def load_file(path: str | Path) -> dict:
    """Read a YAML config (a bare name is looked up in configs/), following `base:`."""
    p = Path(path)
    if not p.is_file() and (CONFIG_DIR / p).is_file():
        p = CONFIG_DIR / p
    if not p.is_file() and (CONFIG_DIR / f"{p}.yaml").is_file():
        p = CONFIG_DIR / f"{p}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{p}: invalid YAML: {err}") from err
    base = data.pop("base", None)
    if base:
        data = _merge_raw(load_file(p.parent / base if (p.parent / base).is_file() else base),
                          data)
    return data


def _merge_raw(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge_raw(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def resolve(config_file: str | Path | None = None, sets: list[str] | tuple[str, ...] = ()) -> dict:
    """DEFAULTS <- config file <- --set overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if config_file:
        cfg = deep_update(cfg, load_file(config_file))
    if sets:
        cfg = deep_update(cfg, parse_set(sets))
    return cfg
