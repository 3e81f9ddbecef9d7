"""Event-only calibration (`rig calibrate --checkerboard --events GLOB`): synthetic blinking-board
recordings with known intrinsics, the real DVS128 recordings of ../shared/data/dvs128_blink, and
bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from calibration.board import Board
from calibration.event_only import blink_phase, calibrate_event_only, refine_blink_hz
from calibration.io import CalibrationFileError, load_calibration, load_event_calibration
from rig.cli import main as rig_main
from rig.evt.aedat import write_aedat2
from rig.evt.common import EVENT_DTYPE

REPO = Path(__file__).resolve().parents[1]
BOARD = Board(8, 4, 0.055)
K_TRUE = np.array([[90.0, 0.0, 63.0], [0.0, 90.0, 65.0], [0.0, 0.0, 1.0]])
BLINK_HZ = 30.0


def _real_dir() -> Path:
    env = os.environ.get("RPEA_SHARED_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "data") / "dvs128_blink"


@pytest.fixture(scope="module")
def real_dir() -> Path:
    path = _real_dir()
    if len(list(path.glob("calibration_*.aedat"))) < 11:
        pytest.skip(f"the DVS128 blinking-board recordings are not at {path} (set RPEA_SHARED_DATA)")
    return path


# ---- synthetic recordings ------------------------------------------------------------------------
def _lit_coverage(rvec: np.ndarray, tvec: np.ndarray, size: tuple[int, int] = (128, 128),
                  ss: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by lit squares of the 9x5-square board (lit corner
    squares) seen by the pinhole K_TRUE at pose (rvec, tvec): ss x ss supersampling."""
    w, h = size
    R, _ = cv2.Rodrigues(rvec)
    H = K_TRUE @ np.column_stack([R[:, 0], R[:, 1], tvec])
    Hinv = np.linalg.inv(H)
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cover = np.zeros((h, w))
    for dy in offs:
        for dx in offs:
            pts = np.stack([xs + dx, ys + dy, np.ones_like(xs)], -1) @ Hinv.T
            u, v = pts[..., 0] / pts[..., 2], pts[..., 1] / pts[..., 2]
            i = np.floor(u / BOARD.square_m).astype(int) + 1  # square column, 0..cols
            j = np.floor(v / BOARD.square_m).astype(int) + 1
            inside = (i >= 0) & (i <= BOARD.cols) & (j >= 0) & (j <= BOARD.rows)
            cover += inside & ((i + j) % 2 == 0)
    return cover / (ss * ss)


def _blink_events(cover: np.ndarray, seed: int, duration_s: float = 0.3) -> np.ndarray:
    """A blinking board: per period an ON burst (0-5 ms) then an OFF burst (15-20 ms), each lit
    pixel firing ~4 x its coverage events per burst, plus uniform noise events."""
    rng = np.random.default_rng(seed)
    period = 1e6 / BLINK_HZ
    ys, xs = np.nonzero(cover > 0)
    parts = []
    t0 = 1_000_000 + rng.uniform(0, period)
    for k in range(int(duration_s * BLINK_HZ)):
        for pol, start in ((1, 0.0), (0, 15_000.0)):
            n = rng.poisson(4.0 * cover[ys, xs])
            ev = np.zeros(int(n.sum()), EVENT_DTYPE)
            ev["x"], ev["y"] = np.repeat(xs, n), np.repeat(ys, n)
            ev["t"] = t0 + k * period + start + rng.uniform(0, 5000, ev.size)
            ev["p"] = pol
            parts.append(ev)
    noise = np.zeros(3000, EVENT_DTYPE)
    noise["x"], noise["y"] = rng.integers(0, 128, (2, noise.size))
    noise["t"] = t0 + rng.uniform(0, duration_s * 1e6, noise.size)
    noise["p"] = rng.integers(0, 2, noise.size)
    ev = np.concatenate(parts + [noise])
    return ev[np.argsort(ev["t"], kind="stable")]


POSES = [((0.25, 0.0, 0.0), (-0.22, -0.1, 0.55)), ((-0.25, 0.0, 0.05), (-0.22, -0.1, 0.55)),
         ((0.0, 0.3, 0.0), (-0.22, -0.1, 0.55)), ((0.0, -0.3, -0.05), (-0.22, -0.1, 0.6)),
         ((0.2, 0.2, 0.1), (-0.25, -0.12, 0.6)), ((-0.2, -0.25, -0.1), (-0.2, -0.08, 0.55)),
         ((0.05, 0.0, 0.3), (-0.18, -0.15, 0.6))]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    """Seven blinking-board recordings (AEDAT 2.0, DVS128 layout) through K_TRUE, no distortion,
    and one recording of noise only."""
    out = tmp_path_factory.mktemp("ev_only_syn")
    for n, (r, t) in enumerate(POSES):
        cover = _lit_coverage(np.array(r), np.array(t))
        write_aedat2(out / f"pose_{n}.aedat", _blink_events(cover, seed=n))
    rng = np.random.default_rng(99)
    noise = np.zeros(20_000, EVENT_DTYPE)
    noise["x"], noise["y"] = rng.integers(0, 128, (2, noise.size))
    noise["t"] = np.sort(rng.integers(0, 300_000, noise.size))
    noise["p"] = rng.integers(0, 2, noise.size)
    write_aedat2(out / "pose_noise.aedat", noise)
    return out


def test_blink_frequency_and_phase_on_synthetic(synthetic_dir):
    from rig.evt.files import read_events

    ev, _ = read_events(synthetic_dir / "pose_0.aedat")
    hz = refine_blink_hz(ev["t"], ev["p"], 31.0)
    assert abs(hz - BLINK_HZ) < 0.2
    period = 1e6 / hz
    onset, split = blink_phase(ev, period)
    assert 5000 <= split <= 16_000  # between the ON burst (0-5 ms) and the OFF burst (15-20 ms)
    phase = (ev["t"].astype(np.float64) - onset) % period
    assert np.mean(phase[ev["p"] > 0] < split) > 0.95  # ON events: in the lit part
    assert np.mean(phase[ev["p"] == 0] >= split) > 0.95  # OFF events: in the dark part


def test_synthetic_recovers_known_intrinsics(synthetic_dir, tmp_path):
    paths = sorted(synthetic_dir.glob("pose_*.aedat"))
    res = calibrate_event_only(paths, BOARD, tmp_path, write_png=False)
    ev = res.report["event"]
    assert ev["views_used"] == len(POSES)
    assert "pose_noise.aedat" in ev["not_used"] and "board not found" in ev["not_used"]["pose_noise.aedat"]
    K = res.calib.K_event
    assert abs(K[0, 0] / K_TRUE[0, 0] - 1) < 0.03 and abs(K[1, 1] / K_TRUE[1, 1] - 1) < 0.03, K
    assert abs(K[0, 2] - K_TRUE[0, 2]) < 2.5 and abs(K[1, 2] - K_TRUE[1, 2]) < 2.5, K
    assert res.calib.rms_event < 0.3
    back = load_event_calibration(tmp_path / "calib.yaml")
    np.testing.assert_allclose(back.K_event, K, rtol=1e-9)
    assert back.size_event == (128, 128)


def test_wrong_pattern_is_one_clear_error(synthetic_dir, tmp_path):
    res = CliRunner().invoke(rig_main, ["calibrate", "--checkerboard", "--events",
                                        str(synthetic_dir / "pose_[0-3].aedat"), "--pattern", "6x3",
                                        "--square-mm", "55", "--out", str(tmp_path)])
    assert res.exit_code != 0
    assert "found in 0 of 4 recordings" in res.output and "--pattern" in res.output
    assert not (tmp_path / "calib.yaml").exists()


# ---- bad inputs ----------------------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(rig_main, ["calibrate", "--checkerboard", *args])
    return res.exit_code, res.output


def test_bad_inputs_give_one_clear_line(tmp_path):
    code, out = _cli("--events", str(tmp_path / "nothing_*.aedat"), "--out", str(tmp_path))
    assert code != 0 and "no files match" in out and "Traceback" not in out
    junk = tmp_path / "junk.aedat"
    junk.write_text("hello, I am not an event file\n")
    code, out = _cli("--events", str(junk), "--out", str(tmp_path / "o"))
    assert code != 0 and "not an event file" in out and "junk.aedat" in out
    code, out = _cli("--events", str(junk), "--pattern", "8", "--out", str(tmp_path / "o"))
    assert code != 0 and "pattern" in out
    code, out = _cli("--events", str(junk), "--session", str(tmp_path), "--out", str(tmp_path))
    assert code != 0 and "one source of views" in out


# ---- the real DVS128 recordings ------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_run(real_dir, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ev_only_real")
    res = CliRunner().invoke(rig_main, ["calibrate", "--checkerboard", "--events",
                                        str(real_dir / "calibration_*.aedat"), "--pattern", "8x4",
                                        "--square-mm", "55", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_real_dvs128_targets(real_run):
    out, text = real_run
    report = json.loads((out / "report.json").read_text())
    ev = report["event"]
    assert ev["views_total"] == 11 and ev["views_used"] >= 10, ev["not_used"]
    assert ev["rms_px"] <= 0.3
    fx, fy = ev["K"][0][0], ev["K"][1][1]
    assert 70 < fx < 110 and 70 < fy < 110 and abs(fx / fy - 1) < 0.02
    assert 50 < ev["K"][0][2] < 78 and 50 < ev["K"][1][2] < 78
    assert all(abs(r["blink_hz"] - 30.0) < 1.0 for r in ev["recordings"])
    assert "11 used" in text or "10 of 11" in text or "11 of 11" in text


def test_real_cli_writes_event_only_calib_yaml(real_run):
    out, _ = real_run
    assert {p.name for p in out.iterdir()} >= {"calib.yaml", "report.json", "report.png"}
    fs = cv2.FileStorage(str(out / "calib.yaml"), cv2.FILE_STORAGE_READ)
    assert fs.getNode("model").string() == "event_only"
    K = fs.getNode("K_event").mat()
    assert K.shape == (3, 3) and fs.getNode("dist_event").mat().size == 5
    assert 0 < fs.getNode("rms_event").real() <= 0.3
    assert fs.getNode("K_frame").empty()
    calib = load_event_calibration(out)
    assert calib.size_event == (128, 128) and calib.info["pattern"] == "8x4"
    with pytest.raises(CalibrationFileError, match="event-only calibration"):
        load_calibration(out / "calib.yaml")
