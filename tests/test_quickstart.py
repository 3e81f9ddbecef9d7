"""The README's quick start, typed as a new user types it: bare commands in an empty folder, each
finding what the one before it wrote through the workspace convention (docs/workspace.md).
Only the sizes are small (durations, board poses, training steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

BIN = Path(sys.executable).parent


def typed(workspace: Path, line: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """Run one command line in `workspace` as a shell would (the installed console scripts)."""
    cmd, *args = line.split()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RPEA_DEBUG", None)
    proc = subprocess.run([str(BIN / cmd), *args], cwd=workspace, capture_output=True, text=True,
                          timeout=timeout_s, env=env)
    assert proc.returncode == 0, f"$ {line}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_the_bare_commands_run_the_whole_pipeline(tmp_path: Path) -> None:
    ws = tmp_path / "lab"
    ws.mkdir()

    rec = typed(ws, "rig record --duration 1.5 --quiet")
    assert "No hardware configured: recording on the simulated rig (--sim)." in rec.stderr
    assert "session: recordings/session_" in rec.stderr
    cal = typed(ws, "rig calibrate --checkerboard --views 16 --quiet")
    assert "No hardware configured: recording on the simulated rig (--sim)." in cal.stderr
    assert (ws / "calib" / "calib.yaml").is_file()
    assert len(list((ws / "recordings").glob("calib_*"))) == 1

    train = typed(ws, "rpea build --split train --quiet")
    assert "sessions: 1 complete under recordings/" in train.stderr
    assert "left out: 1 calibration" in train.stderr
    assert "calibration: calib/calib.yaml" in train.stderr and "splits: train 1" in train.stderr
    empty = typed(ws, "rpea build --split val --quiet")  # one session: nothing held out yet
    assert "warning: no session is assigned to split 'val'" in empty.stderr
    assert "rig record" in empty.stderr and "rpea build --split val" in empty.stderr

    typed(ws, "rig record --duration 1.5 --seed 1 --quiet")
    val = typed(ws, "rpea build --split val --quiet")  # the new session fills val
    assert "val 1" in val.stderr and (ws / "data" / "val" / "index.json").is_file()
    assert len(list((ws / "data" / "train").glob("*.h5"))) == 1
    assert len(list((ws / "data" / "val").glob("*.h5"))) == 1

    fit = typed(ws, "cacd train --set train.max_steps=2 --quiet")
    assert "no val split" not in fit.stderr
    (run,) = list((ws / "runs").iterdir())
    assert (run / "best.safetensors").is_file() and (run / "summary.json").is_file()
    ev = typed(ws, "cacd eval")
    assert f"checkpoint: the newest run, runs/{run.name}" in ev.stderr
    metrics = json.loads((run / "eval_val.json").read_text())
    assert metrics["split"] == "val" and metrics["num_samples"] == 30
    assert 0.0 <= metrics["mIoU"] <= 100.0 and len(metrics["overall"]["per_class"]) > 0


def test_training_without_a_val_split_says_how_to_build_one(tmp_path: Path, monkeypatch) -> None:
    from dataset.synthetic import SynthConfig, write_dataset
    from model.cli import main as cacd

    write_dataset(tmp_path / "data", {"train": 1}, SynthConfig(height=32, width=48,
                                                               pairs_per_sequence=2))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cacd, ["train", "--set", "train.max_steps=1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "has no val split" in res.output and "rpea build --split val" in res.output
    assert "not validated (no val split)" in res.output
    assert len(list((tmp_path / "runs").iterdir())) == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["rpea", "build", "--split", "train"], "no session to build under recordings"),
    (["cacd", "train"], "no dataset at data"),
    (["cacd", "eval"], "no trained run under runs"),
])
def test_a_bare_command_in_an_empty_folder_says_what_to_run_first(tmp_path: Path, argv, message
                                                                   ) -> None:
    proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_workspace_yaml_moves_a_folder_and_rejects_unknown_keys(tmp_path: Path) -> None:
    from common.workspace import WorkspaceError, load_workspace

    (tmp_path / "workspace.yaml").write_text("data: shared/rpea\n")
    (tmp_path / "sub").mkdir()
    ws = load_workspace(tmp_path / "sub")  # found from a subfolder
    assert ws.root == tmp_path.resolve() and ws.data == (tmp_path / "shared" / "rpea").resolve()
    assert ws.recordings == tmp_path.resolve() / "recordings"
    assert ws.origin("data").startswith("from ") and ws.origin("runs") == "workspace default"
    (tmp_path / "workspace.yaml").write_text("recording: elsewhere\n")
    with pytest.raises(WorkspaceError, match="did you mean 'recordings'"):
        load_workspace(tmp_path)


def test_build_warns_about_real_sessions_recorded_before_the_calibration(tmp_path: Path) -> None:
    from calibration.accuracy import calibration_from_geometry
    from calibration.io import save_calibration
    from dataset.build.options import SessionPlan
    from dataset.builder import recorded_before_calibration
    from rig.session import SessionManifest
    from rig.sim.optics import default_rig

    calib = calibration_from_geometry(default_rig())
    calib.info["recorded_utc"] = "2026-12-06T12:00:00.000000Z"
    save_calibration(calib, tmp_path / "calib.yaml")
    plans = []
    for name, started, sim in (("before", "2026-12-06T11:00:00.000000Z", False),
                               ("after", "2026-12-06T13:00:00.000000Z", False),
                               ("simulated", "2026-12-06T11:00:00.000000Z", True)):
        SessionManifest(status="complete", started_utc=started, sim=sim).save(tmp_path / name)
        plans.append(SessionPlan(tmp_path / name, name, "train", "day", "x"))
    (line,) = recorded_before_calibration(plans, tmp_path / "calib.yaml")
    assert line.startswith("warning: 1 session(s)") and ": before." in line
    assert "rig calibrate --checkerboard" in line
    del calib.info["recorded_utc"]  # a calibration from image folders: nothing to compare
    save_calibration(calib, tmp_path / "calib.yaml")
    assert recorded_before_calibration(plans, tmp_path / "calib.yaml") == []
