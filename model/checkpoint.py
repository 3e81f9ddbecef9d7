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

from common.atomic import PendingFile, atomic_write, fsync_file, write_text_atomic
from model.cacd import CACDNet, NetConfig


class CheckpointError(ValueError):
    """A checkpoint file that is not one, or is damaged (the message names the file)."""


def _write_model(net: CACDNet, path: Path, extra: dict[str, str] | None = None) -> None:
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"cacd_net": json.dumps(asdict(net.cfg)), "format": "cacd-1"}
    meta.update(extra or {})
    save_file(sd, str(path), metadata=meta)


def save_model(net: CACDNet, path: Path, extra: dict[str, str] | None = None) -> None:
    """Weights (+ BN buffers) and the NetConfig as metadata `cacd_net`."""
    atomic_write(path, lambda p: _write_model(net, p, extra))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CACDNet:
    """Rebuild the network from a `.safetensors` checkpoint written by `save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    what = "give a run folder or the .safetensors file cacd train wrote"
    try:
        with safe_open(str(path), "pt", device="cpu") as f:
            meta = f.metadata() or {}
            if "cacd_net" not in meta:
                raise CheckpointError(f"{path}: not a cacd checkpoint (no cacd_net metadata); {what}")
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as err:  # SafetensorError (garbage, truncated), OSError: one clear line
        detail = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({detail}); "
                              f"{what}") from None
    try:
        net = CACDNet(NetConfig(**json.loads(meta["cacd_net"])))
        net.load_state_dict(sd, strict=True)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path}: the weights do not fit the network its metadata "
                              f"describes ({detail}); {what}") from None
    return net.to(device)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder -> its best (else last) weights file; a file -> itself."""
    p = Path(path)
    if p.is_dir():
        for name in RUN_WEIGHTS:
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: no best.safetensors or last.safetensors in this run folder; "
                              "give a run folder that cacd train wrote, or a .safetensors file")
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


def _training_state(optim: torch.optim.Optimizer, state: dict[str, Any],
                    scheduler_state: dict | None) -> tuple[dict[str, torch.Tensor], str]:
    """(optimizer tensors + torch RNG states, the state.json text)."""
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
    doc = dict(state, optimizer_param_groups=osd["param_groups"], optimizer_scalars=scalars,
               scheduler=scheduler_state)
    return tensors, json.dumps(doc, indent=1)


def _step_meta(state: dict[str, Any]) -> dict[str, str]:
    return {"global_step": str(state["global_step"])} if "global_step" in state else {}


def save_training_state(run: Path, optim: torch.optim.Optimizer, state: dict[str, Any],
                        scheduler_state: dict | None = None) -> None:
    """Optimizer tensors + torch RNG -> last.optim.safetensors; scalars -> state.json."""
    tensors, text = _training_state(optim, state, scheduler_state)
    atomic_write(run / "last.optim.safetensors",
                 lambda p: save_file(tensors, str(p), metadata=_step_meta(state)))
    write_text_atomic(run / "state.json", text)


#: The files of a run's resumable checkpoint, in the order `save_checkpoint` publishes them.
CHECKPOINT_FILES = ("last.optim.safetensors", "last.safetensors", "state.json")


def save_checkpoint(run: Path, net: CACDNet, optim: torch.optim.Optimizer, state: dict[str, Any],
                    scheduler_state: dict | None = None) -> None:
    """The resumable checkpoint of one step: weights, optimizer + RNG, state.json, each stamped
    with the step. All three are written and flushed to disk under temporary names first, then
    renamed in one go (state.json last), so a kill or a power cut leaves the previous checkpoint
    or this one; `load_training_state` refuses the torn set the instant between two renames
    could leave, rather than resume inexactly."""
    tensors, text = _training_state(optim, state, scheduler_state)
    meta = _step_meta(state)
    pending = [PendingFile(run / name) for name in CHECKPOINT_FILES]
    try:
        save_file(tensors, str(pending[0].tmp_path), metadata=meta)
        _write_model(net, pending[1].tmp_path, meta)
        pending[2].tmp_path.write_text(text)
        for f in pending:
            fsync_file(f.tmp_path)
        for f in pending:
            f.publish()
    except BaseException:
        for f in pending:
            f.discard()
        raise


def _file_step(path: Path) -> str | None:
    with safe_open(str(path), "pt", device="cpu") as f:
        return (f.metadata() or {}).get("global_step")


def load_training_state(run: Path, optim: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore optimizer and RNG; return the JSON state. Refuses (CheckpointError) a checkpoint
    whose files are of different steps (a run killed while saving)."""
    doc = json.loads((run / "state.json").read_text())
    steps = {name: _file_step(run / name) for name in CHECKPOINT_FILES[:2]
             if (run / name).is_file()}
    torn = {n: s for n, s in steps.items() if s is not None and s != str(doc.get("global_step"))}
    if torn:
        raise CheckpointError(
            f"{run}: state.json is at step {doc.get('global_step')} but "
            + ", ".join(f"{n} at step {s}" for n, s in torn.items())
            + " (the run was killed while saving a checkpoint); it cannot continue exactly: "
            "start the run again without --resume")
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
