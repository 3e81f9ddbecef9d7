"""`cacd predict --session`: predictions on a recorded session, its pairs made on the fly through
the dataset layer (`dataset.session_pairs`), equal to those of `rpea build` + `cacd predict
--data` on the same session; PNG panels and the `--video` MP4; bad input refused in one line with
nothing left behind (no output folder, no temporary build)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("rig.sim.world", reason="simulated rig (rig.sim.world) not available")

from common.video import read_video_info  # noqa: E402
from dataset.cli import main as rpea  # noqa: E402
from dataset.demo import ground_truth_calibration  # noqa: E402
from dataset.reader import RPEADataset  # noqa: E402
from dataset.session_pairs import SessionPairs, SessionPairsError  # noqa: E402
from model.cli import main as cacd  # noqa: E402
from rig import recorder  # noqa: E402
from rig.session import SessionReader  # noqa: E402
from rig.sim.world import SimConfig, SimRig  # noqa: E402

RATE_HZ = 20.0
DURATION_S = 0.3  # 6 pulses
SCALE = 0.25  # 256x192 frames, 160x90 events: an aligned grid of ~161x89


def _record_small(out: Path) -> Path:
    """`rig record` on the simulated rig, both sensors scaled down (the recorder's own code)."""
    def open_small(opts: recorder.RecordOptions) -> recorder.RigDevices:
        sim = SimRig(SimConfig(scenario=opts.scenario, seed=opts.seed, scale=SCALE))
        return recorder.RigDevices(sim.event_camera, sim.frame_camera, sim.trigger, sim_rig=sim)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder, "open_devices", open_small)
        summary = recorder.record_session(recorder.RecordOptions(
            out_dir=out, duration_s=DURATION_S, rate_hz=RATE_HZ, scenario="day", seed=5,
            show_status=False))
    assert summary.status == "complete", summary.detail
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A short simulated session, its true calibration, the session built by `rpea build`, and
    an untrained checkpoint."""
    import torch

    from model.cacd import CACDNet, NetConfig
    from model.checkpoint import save_model

    tmp = tmp_path_factory.mktemp("predict_session")
    session = _record_small(tmp / "rec" / "sim_day")
    calib = ground_truth_calibration(SessionReader(session).ground_truth_geometry(),
                                     tmp / "calib.yaml")
    res = CliRunner().invoke(rpea, ["build", "--split", "all", "--sessions", str(session),
                                    "--calib", str(calib), "--out", str(tmp / "data"), "--quiet",
                                    "--serial"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    (split,) = [d.name for d in (tmp / "data").iterdir() if (d / "index.json").is_file()]
    torch.manual_seed(0)
    (tmp / "run").mkdir()
    save_model(CACDNet(NetConfig(proj_dim=16)), tmp / "run" / "best.safetensors")
    return {"session": session, "calib": calib, "data": tmp / "data", "split": Path(split),
            "run": tmp / "run"}


@pytest.fixture(autouse=True)
def _one_torch_thread_and_own_tmp(tmp_path_factory, monkeypatch):
    """One torch thread (a 2-core machine under load runs this net ~20x faster so), and a
    temporary folder of the test's own, so a build left behind would show."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    own_tmp = tmp_path_factory.mktemp("systmp")
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    yield
    torch.set_num_threads(threads)
    assert list(own_tmp.iterdir()) == [], "a temporary build was left behind"


def _predict(args: list[str], cwd: Path, monkeypatch) -> dict:
    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(cacd, ["predict", *args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_session_pairs_are_the_built_datasets(made: dict[str, Path]) -> None:
    """The on-the-fly pairs are `rpea build`'s: same count, images, labels, event frames and
    voxel grids as `RPEADataset` reads them from the built file."""
    built = {rep: RPEADataset(made["data"], str(made["split"]), representation=rep, bins=4,
                              labelled_only=False) for rep in ("frame", "voxel")}
    n = len(built["frame"])
    assert n == int(RATE_HZ * DURATION_S)
    with SessionPairs(made["session"], made["calib"], progress=False) as pairs:
        assert len(pairs) == n and pairs.rate_hz == RATE_HZ
        for rep, ds in built.items():
            for got in pairs.pairs(rep, 4):
                want = ds[got.index]
                assert np.array_equal(got.image, want["image"].permute(1, 2, 0).numpy())
                assert np.array_equal(got.events, want["events"].numpy())
                assert got.label is not None and np.array_equal(got.label, want["label"].numpy())
                assert got.event_t0_us < got.frame_t_us < got.event_t1_us
        assert np.abs(pairs.pair(n - 1, "frame").events).sum() > 0  # events reached the grid
        tmp = pairs.sequence.path.parent.parent
        assert tmp.is_dir()
    assert not tmp.exists()  # the temporary build goes when the pairs are closed


def test_predict_session_equals_predict_on_the_built_dataset(made: dict[str, Path], tmp_path: Path,
                                                             monkeypatch) -> None:
    n = int(RATE_HZ * DURATION_S)
    a = _predict(["--checkpoint", str(made["run"]), "--session", str(made["session"]),
                  "--calib", str(made["calib"]), "--out", "A", "--video", "A.mp4"],
                 tmp_path, monkeypatch)
    b = _predict(["--checkpoint", str(made["run"]), "--data", str(made["data"]), "--split",
                  str(made["split"]), "--out", "B", "--video", "B.mp4"], tmp_path, monkeypatch)
    assert a == {"written": n, "folder": "A", "video": "A.mp4"}
    assert b["written"] == n
    names = sorted(p.name for p in (tmp_path / "A").iterdir())
    assert names == [f"sim_day_{i:05d}.png" for i in range(n)]
    assert names == sorted(p.name for p in (tmp_path / "B").iterdir())
    for name in names:  # same pixels, events and predicted classes: byte-equal panels
        assert (tmp_path / "A" / name).read_bytes() == (tmp_path / "B" / name).read_bytes(), name
    for video in ("A.mp4", "B.mp4"):
        info = read_video_info(tmp_path / video)
        assert info["frames"] == n and info["fps"] == pytest.approx(RATE_HZ)
    import cv2

    from calibration.io import load_calibration

    w, h = load_calibration(made["calib"]).output_size
    panel = cv2.imread(str(tmp_path / "A" / names[0]))
    assert panel is not None  # RGB | events | prediction | ground truth, captioned, 4-px gaps
    assert panel.shape == (22 + h, 4 * w + 3 * 4, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A", "A.mp4", "B", "B.mp4"]  # no data/


def test_limit_every_and_the_video_rate(made: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    out = _predict(["--checkpoint", str(made["run"]), "--session", str(made["session"]),
                    "--calib", str(made["calib"]), "--out", "P", "--every", "2", "--limit", "2",
                    "--video", "v/P.mp4"], tmp_path, monkeypatch)
    assert out["written"] == 2
    assert sorted(p.name for p in (tmp_path / "P").iterdir()) == ["sim_day_00000.png",
                                                                  "sim_day_00002.png"]
    info = read_video_info(tmp_path / "v" / "P.mp4")
    assert info["frames"] == 2 and info["fps"] == pytest.approx(RATE_HZ / 2)  # real time


def test_default_calibration_and_output_come_from_the_workspace(made: dict[str, Path],
                                                                tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "calib").mkdir()
    shutil.copy(made["calib"], tmp_path / "calib" / "calib.yaml")
    shutil.copytree(made["run"], tmp_path / "runs" / "run_1")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cacd, ["predict", "--session", str(made["session"]), "--limit", "1"])
    assert res.exit_code == 0, res.output
    assert "calibration: calib/calib.yaml (workspace default)" in res.stderr
    assert (tmp_path / "runs" / "run_1" / "predictions" / "sim_day" / "sim_day_00000.png").is_file()
    assert not (tmp_path / "data").exists()


def _bad_session(made: dict[str, Path], root: Path, name: str, status: str | None = None,
                 events: bytes | None = None) -> Path:
    folder = root / name
    shutil.copytree(made["session"], folder)
    if status is not None:
        doc = json.loads((folder / "session.json").read_text())
        doc["status"] = status
        (folder / "session.json").write_text(json.dumps(doc))
    if events is not None:
        (folder / "events.raw").write_bytes(events)
    return folder


def _other_rig_calibration(path: Path) -> Path:
    from calibration.io import Calibration, save_calibration

    eye, k = np.eye(3), np.array([[100.0, 0, 32], [0, 100, 24], [0, 0, 1]])
    save_calibration(Calibration(
        K_frame=k, dist_frame=np.zeros(5), size_frame=(64, 48), K_event=k, dist_event=np.zeros(5),
        size_event=(64, 48), R=eye, T=np.zeros(3), model="homography", H=eye, output_size=(64, 48),
        valid_roi=(0, 0, 64, 48), rms_frame=0.1, rms_event=0.1, rms_stereo=0.1, K_aligned=k.copy(),
        R_rect_frame=eye), path)
    return path


@pytest.mark.parametrize(("case", "code", "says"), [
    ("missing", 2, ("--session", "nope")),
    ("no-calibration", 1, ("calib/calib.yaml", "rig calibrate --checkerboard", "--calib")),
    ("with-data", 2, ("--session", "--data")),
    ("calib-text", 1, ("notes.txt",)),
    ("calib-other-rig", 1, ("other.yaml", "64x48", "160x90")),
    ("crashed", 1, ("rig session recover",)),
    ("failed", 1, ("recording failed", "rig session recover")),
    ("events-text", 1, ("events",)),
    ("split", 2, ("--split",)),
    ("video-not-mp4", 2, ("--video",)),
])
def test_bad_input_is_one_line_and_leaves_nothing(case: str, code: int, says: tuple[str, ...],
                                                  made: dict[str, Path], tmp_path: Path,
                                                  monkeypatch) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "notes.txt").write_text("hello\n")
    session, calib = str(made["session"]), str(made["calib"])
    base = ["predict", "--checkpoint", str(made["run"]), "--out", "P", "--video", "P.mp4"]
    args = {
        "missing": ["--session", str(inputs / "nope"), "--calib", calib],
        "no-calibration": ["--session", session],
        "with-data": ["--session", session, "--data", str(made["data"])],
        "calib-text": ["--session", session, "--calib", str(inputs / "notes.txt")],
        "calib-other-rig": ["--session", session,
                            "--calib", str(_other_rig_calibration(inputs / "other.yaml"))],
        "crashed": ["--session", str(_bad_session(made, inputs, "crashed", "recording")),
                    "--calib", calib],
        "failed": ["--session", str(_bad_session(made, inputs, "failed", "failed")),
                   "--calib", calib],
        "events-text": ["--session", str(_bad_session(made, inputs, "ev", events=b"hello\n")),
                        "--calib", calib],
        "split": ["--session", session, "--calib", calib, "--split", "train"],
        "video-not-mp4": ["--session", session, "--calib", calib, "--video", "P.avi"],
    }[case]
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))
    res = CliRunner().invoke(cacd, [*base, *args])
    assert res.exit_code == code, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for text in says:
        assert text in errors[0], res.output
    assert "unexpected" not in errors[0]
    assert list(work.iterdir()) == [], "output left behind"
    assert sorted(p.relative_to(inputs) for p in inputs.rglob("*")) == before


def test_session_pairs_refuse_what_rpea_build_refuses(made: dict[str, Path], tmp_path: Path) -> None:
    crashed = _bad_session(made, tmp_path, "crashed", "recording")
    with pytest.raises(SessionPairsError, match="rig session recover"):
        SessionPairs(crashed, made["calib"])
    with pytest.raises(SessionPairsError, match="not a session folder"):
        SessionPairs(tmp_path, made["calib"])
    recovered = _bad_session(made, tmp_path, "recovered", "interrupted")  # buildable as is
    with SessionPairs(recovered, made["calib"], progress=False) as pairs:
        assert len(pairs) == int(RATE_HZ * DURATION_S)


def test_video_rate_and_pair_choice() -> None:
    """The --data video's rate comes from the pairs' frame times, counted in pulses (a dropped
    pair does not slow it down); --every/--limit pick pairs 0, N, 2N, ..."""
    from model.predict import chosen, rate_hz

    t = np.array([0, 50_000, 150_000, 200_000])
    assert rate_hz({"frame_t_us": t, "pulse_index": np.array([0, 1, 3, 4])}) == pytest.approx(20)
    assert rate_hz({"frame_t_us": np.arange(4) * 40_000}) == pytest.approx(25)  # synthetic files
    assert rate_hz({"frame_t_us": np.array([7])}) is None
    assert list(chosen(7, None, 3)) == [0, 3, 6] and list(chosen(7, 2, 3)) == [0, 3]
    assert list(chosen(3)) == [0, 1, 2]
