"""Checkpoints without pickle: weights as safetensors (self-describing: the network config is in
the metadata), optimizer tensors + RNG states as safetensors, scalars in a JSON state file.
Writes are atomic (`common.atomic`: temp + rename)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from common.atomic import atomic_write, write_text_atomic
from model.cacd import CACDNet, NetConfig


def save_model(net: CACDNet, path: Path, extra: dict[str, str] | None = None) -> None:
    """Weights (+ BN buffers) and the NetConfig as metadata `cacd_net`."""
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"cacd_net": json.dumps(asdict(net.cfg)), "format": "cacd-1"}
    meta.update(extra or {})
    atomic_write(path, lambda p: save_file(sd, str(p), metadata=meta))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CACDNet:
    """Rebuild the network from a `.safetensors` checkpoint written by `save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    with safe_open(str(path), "pt", device="cpu") as f:
        meta = f.metadata() or {}
        if "cacd_net" not in meta:
            raise ValueError(f"{path}: not a cacd checkpoint (no cacd_net metadata)")
        sd = {k: f.get_tensor(k) for k in f.keys()}
    net = CACDNet(NetConfig(**json.loads(meta["cacd_net"])))
    net.load_state_dict(sd, strict=True)
    return net.to(device)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder -> its best (else last) weights file; a file -> itself."""
    p = Path(path)
    if p.is_dir():
        for name in RUN_WEIGHTS:
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p}: no best.safetensors or last.safetensors in run folder")
    return p


#: Weights files of a run folder, in the order `resolve_checkpoint` prefers them.
RUN_WEIGHTS = ("best.safetensors", "last.safetensors")


def find_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders directly under `runs_dir` that hold weights, oldest first (by the time their
    newest weights file was written); [] when there is none."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        return []
    stamped = []
    for run in folder.iterdir():
        files = [run / n for n in RUN_WEIGHTS if (run / n).is_file()]
        if files:
            stamped.append((max(f.stat().st_mtime for f in files), run.name, run))
    return [run for _, _, run in sorted(stamped)]


def save_training_state(run: Path, optim: torch.optim.Optimizer, state: dict[str, Any],
                        scheduler_state: dict | None = None) -> None:
    """Optimizer tensors + torch RNG -> last.optim.safetensors; scalars -> state.json."""
    osd = optim.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    scalars: dict[str, Any] = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    atomic_write(run / "last.optim.safetensors", lambda p: save_file(tensors, str(p)))
    doc = dict(state, optimizer_param_groups=osd["param_groups"], optimizer_scalars=scalars,
               scheduler=scheduler_state)
    write_text_atomic(run / "state.json", json.dumps(doc, indent=1))


def load_training_state(run: Path, optim: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore optimizer and RNG; return the JSON state."""
    doc = json.loads((run / "state.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    with safe_open(str(run / "last.optim.safetensors"), "pt", device="cpu") as f:
        for key in f.keys():
            if key.startswith("state."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = f.get_tensor(key)
        torch.set_rng_state(f.get_tensor("rng.cpu"))
        if torch.cuda.is_available() and "rng.cuda" in f.keys():
            torch.cuda.set_rng_state(f.get_tensor("rng.cuda"))
    for key, v in doc.get("optimizer_scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    optim.load_state_dict({"state": state, "param_groups": doc["optimizer_param_groups"]})
    return doc
