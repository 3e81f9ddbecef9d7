"""Trainer and `cacd` CLI end to end on a tiny synthetic RPEA dataset (CPU, seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from dataset.synthetic import SynthConfig, write_dataset
from model.cli import main
from model.config import resolve
from model.train import train

TINY = ["model.proj_dim=16", "data.crop=[32,48]", "train.batch_size=2", "train.epochs=2",
        "train.val_every=1", "train.max_minutes=null", "train.log_every=1", "train.threads=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, {"train": 1, "val": 1},
                  SynthConfig(height=48, width=64, pairs_per_sequence=4, substeps=3), seed=1)
    return root


def test_resume_is_exact(data, tmp_path):
    cfg = resolve(None, TINY)
    a = train(cfg, data, tmp_path / "a", progress=False)
    assert a["global_step"] == 4 and (tmp_path / "a" / "best.safetensors").is_file()
    cfg_b = resolve(None, TINY + ["train.stop_after_steps=1"])
    b1 = train(cfg_b, data, tmp_path / "b", progress=False)
    assert b1["global_step"] == 1
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"]) == (0, 1)
    b2 = train(cfg, data, tmp_path / "b", resume=True, progress=False)
    assert b2["global_step"] == 4
    wa = load_file(str(tmp_path / "a" / "last.safetensors"))
    wb = load_file(str(tmp_path / "b" / "last.safetensors"))
    assert wa.keys() == wb.keys()
    diff = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert diff == []
    assert (tmp_path / "a" / "tb").is_dir()


def test_cli_train_eval_predict(data, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    res = runner.invoke(main, ["train", "--data", str(data), "--out", str(run), "--quiet",
                               *sets])
    assert res.exit_code == 0, res.output
    assert "trained 4 steps" in res.output
    res = runner.invoke(main, ["eval", "--checkpoint", str(run), "--data", str(data),
                               "--misalign", "0,2"])
    assert res.exit_code == 0, res.output
    doc = json.loads((run / "eval_val.json").read_text())
    assert [d["misalign_px"] for d in doc["misalignment"]] == [0, 2]
    first = doc["misalignment"][0]
    assert 0 <= first["mIoU"] <= 100 and first["num_samples"] == 4
    assert first["overall"]["pixels"] == first["under"]["pixels"] + first["over"]["pixels"] + \
        first["normal"]["pixels"]
    assert first["overall"]["pixels"] == first["day"]["pixels"] + first["night"]["pixels"]
    res = runner.invoke(main, ["predict", "--checkpoint", str(run / "best.safetensors"),
                               "--data", str(data), "--out", str(tmp_path / "figs"),
                               "--limit", "2"])
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "figs").glob("*.png"))
    assert len(pngs) == 2
    import cv2

    # 4 captioned tiles (RGB | events | prediction | ground truth), a 22-row caption, 4-px gaps
    assert cv2.imread(str(pngs[0])).shape == (22 + 48, 4 * 64 + 3 * 4, 3)


def test_cli_rejects_unknown_config_key(data, tmp_path):
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"),
                                    "--set", "train.lrr=1"])
    assert res.exit_code != 0 and "train.lrr" in res.output


def test_image_only_ablation_row_trains(data, tmp_path):
    cfg = resolve("ablation/image_only.yaml", TINY + ["train.epochs=1"])
    s = train(cfg, data, tmp_path / "img", progress=False)
    assert s["global_step"] == 2
    w = load_file(str(tmp_path / "img" / "last.safetensors"))
    assert not any(k.startswith(("event_encoder.", "fusion.", "proj_")) for k in w)


def test_cli_bench_reports_ratio(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--size", "64", "--runs", "2", "--warmup", "1",
                                    "--device", "cpu", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    rows = {r["model"]: r for r in doc["rows"]}
    cacd, plain, seg = (rows["CACD"], rows["CACD without HFCA/JBCD"],
                        rows["SegFormer (RGB only)"])
    assert cacd["inference_params_M"] == plain["inference_params_M"]
    assert cacd["flops"] == plain["flops"]  # HFCA/JBCD heads cost nothing at inference
    assert 1.2 < cacd["flops"] / seg["flops"] < 2.5  # two encoders, one decoder
    assert doc["latency_ratio_cacd_over_segformer"] > 0


def test_cli_masks_writes_masks_and_updates_index(data, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(data, root)
    with h5py.File(root / "val" / "day_0000.h5", "r+") as f:
        del f["masks"]
    res = CliRunner().invoke(main, ["masks", str(root), "--split", "val"])
    assert res.exit_code == 0, res.output
    with h5py.File(root / "val" / "day_0000.h5", "r") as f:
        m = f["masks"][()]
        assert m.dtype == np.uint16 and m.shape == (4, 48, 64)
        assert (m > 0).all() and all(len(np.unique(x)) >= 3 for x in m)
    import hashlib

    idx = json.loads((root / "val" / "index.json").read_text())
    entry = idx["sequences"][0]
    assert entry["sha256"] == hashlib.sha256((root / "val" / entry["file"]).read_bytes()).hexdigest()


def test_ddp_two_gloo_processes(data, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "model.cli", "train", "--data", str(data), "--out", str(run), "--quiet",
           *[a for s in TINY + ["train.epochs=1", "data.num_workers=0"] for a in ("--set", s)]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["global_step"] == 2  # 4 pairs, global batch 2 -> 1 per rank, 2 steps each
    a, b = summary["rank_checksums"]
    assert a == b  # replicas stayed in sync
    init = resolve(None, TINY)
    from model.train import build_net

    torch.manual_seed(int(init["train"]["seed"]))
    with torch.no_grad():
        start = float(sum(p.double().sum() for p in build_net(init, 3).parameters()))
    assert a != start  # and they did train


def test_loader_is_compact_and_batches_widen(data):
    """The trainer's dataset sends uint8 labels across workers; `to_device` widens them, and
    stored (uint16) and computed (int64) masks batch together."""
    from model.data import collate, make_dataset, to_device

    cfg = resolve(None, TINY)
    ds = make_dataset(cfg, data, "train", train=True)
    s = ds[0]
    assert s["label"].dtype == torch.uint8
    batch = to_device(collate([ds[0], ds[1]]), torch.device("cpu"))
    assert batch["label"].dtype == torch.int64 and batch["label"].shape[0] == 2
    mixed = collate([{"masks": torch.zeros(2, 2, dtype=torch.uint16)},
                     {"masks": torch.full((2, 2), 70000, dtype=torch.int64)}])
    assert mixed["masks"].dtype == torch.int64 and int(mixed["masks"].max()) == 70000


def test_time_budget_spent_in_validation_starts_no_new_epoch(data, tmp_path, monkeypatch):
    """A validation that uses up train.max_minutes ends the run there (no further epoch and
    no second validation), so `make demo` keeps to its budget."""
    import time

    import model.train as mt

    calls = []
    real = mt._validate

    def slow_validate(*args, **kwargs):
        calls.append(1)
        real(*args, **kwargs)
        time.sleep(2.5)

    monkeypatch.setattr(mt, "_validate", slow_validate)
    cfg = resolve(None, [s for s in TINY if not s.startswith("train.max_minutes")]
                  + ["train.max_minutes=0.03"])  # 1.8 s
    out = train(cfg, data, tmp_path / "budget", progress=False)
    assert len(calls) == 1
    assert out["global_step"] <= 2  # one epoch (2 steps) at most
