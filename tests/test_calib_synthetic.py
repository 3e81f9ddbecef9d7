"""Calibration on synthetic renders (no event simulator): image folders through the CLI with
`--model stereo`, compared with plain OpenCV on the same images, and the homography model's
alignment measured against the true rig."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from calib_synthetic_views import synthetic_views
from click.testing import CliRunner

from calibration.accuracy import truth_alignment_error
from calibration.align import event_to_aligned, frame_to_aligned
from calibration.board import Board
from calibration.io import load_calibration
from calibration.pipeline import CalibOptions, calibrate_views, detect_views
from rig.cli import main as rig_main
from rig.sim.checkerboard import make_scene
from rig.sim.optics import RigGeometry, default_rig, rotation_from_euler_deg

N_VIEWS = 16
BOARD = Board(9, 6, 0.025)


def _write_views(root: Path, geometry: RigGeometry, seed: int) -> list:
    (root / "frames").mkdir(parents=True)
    (root / "events").mkdir()
    views = []
    scene = make_scene(seed, n_poses=N_VIEWS, geometry=geometry)
    for i, v in enumerate(synthetic_views(geometry, scene, N_VIEWS, seed=seed)):
        cv2.imwrite(str(root / "frames" / f"{i:03d}.png"), v.frame_gray)
        cv2.imwrite(str(root / "events" / f"{i:03d}.png"), v.event_image)
        views.append(v)
    return views


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory) -> tuple[Path, Path, list]:
    """Frame and event-accumulation PNGs of N_VIEWS board poses on the coaxial rig."""
    root = tmp_path_factory.mktemp("calib_synth")
    views = _write_views(root, default_rig(), 11)
    return root / "frames", root / "events", views


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory) -> tuple[Path, Path, RigGeometry]:
    """The same cameras side by side, 6 cm apart (a DSEC-like rig)."""
    rig = default_rig()
    side = RigGeometry(rig.frame, rig.event, rotation_from_euler_deg(0.3, -1.5, 0.2),
                       np.array([-0.06, 0.0008, 0.001]))
    root = tmp_path_factory.mktemp("calib_side")
    _write_views(root, side, 5)
    return root / "frames", root / "events", side


def _plain_opencv_rms(folder: Path, size: tuple[int, int]) -> tuple[float, np.ndarray]:
    """What a user gets with the textbook OpenCV recipe on the same images."""
    obj, img = [], []
    for path in sorted(folder.glob("*.png")):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        ok, c = cv2.findChessboardCorners(gray, BOARD.pattern_size)
        if not ok:
            continue
        c = cv2.cornerSubPix(gray, c, (11, 11), (-1, -1),  # as in OpenCV's tutorial
                             (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 1e-3))
        obj.append(BOARD.object_points())
        img.append(np.asarray(c, np.float32).reshape(-1, 1, 2))
    rms, K, _dist, _r, _t = cv2.calibrateCamera(obj, img, size, None, None)
    return float(rms), K


def test_folders_stereo_model_matches_plain_opencv(side_by_side, tmp_path):
    frames, events, side = side_by_side
    out = tmp_path / "c"
    res = CliRunner().invoke(rig_main, [
        "calibrate", "--checkerboard", "--frame-images", str(frames / "*.png"),
        "--event-images", str(events), "--model", "stereo", "--pattern", "9x6",
        "--square-mm", "25", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    calib = load_calibration(out / "calib.yaml")
    assert calib.model == "stereo" and calib.stereo is not None
    report = json.loads((out / "report.json").read_text())
    for cam, folder, truth in (("frame", frames, side.frame), ("event", events, side.event)):
        plain_rms, plain_K = _plain_opencv_rms(folder, truth.size)
        ours = report[cam]
        assert ours["rms_px"] <= 1.10 * plain_rms, (cam, ours["rms_px"], plain_rms)
        assert np.asarray(ours["K"])[0, 0] == pytest.approx(plain_K[0, 0], rel=0.01), cam
    assert np.linalg.norm(calib.T - side.T_ev_fr_m) < 1e-3  # metres
    # rectified: at infinity events land where the frame sees the same point; nearer, the
    # disparity f * B / Z lies along the rows
    far = truth_alignment_error(calib, side, (1e6,))
    assert far["truth_1e+06m_median"] < 0.5
    near = event_to_aligned(calib, np.array([[320.0, 180.0]]))
    true_fr = side.event_to_frame_pixels(np.array([[320.0, 180.0]]), np.array([2.0]))
    d = near[0] - frame_to_aligned(calib, true_fr)[0]
    assert abs(d[1]) < 0.5 and abs(abs(d[0]) - calib.K_aligned[0, 0] * 0.06 / 2.0) < 2.0


def test_stereo_model_refuses_a_coaxial_pair(image_folders, tmp_path):
    frames, events, _ = image_folders
    res = CliRunner().invoke(rig_main, [
        "calibrate", "--checkerboard", "--frame-images", str(frames / "*.png"),
        "--event-images", str(events / "*.png"), "--model", "stereo", "--out", str(tmp_path),
        "--quiet"])
    assert res.exit_code != 0 and "ill-conditioned" in res.output


def test_folder_errors_are_clear(image_folders, tmp_path):
    frames, events, _ = image_folders
    res = CliRunner().invoke(rig_main, ["calibrate", "--checkerboard", "--frame-images",
                                        str(frames / "00[0-4].png"), "--event-images",
                                        str(events / "*.png"), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "counts must agree" in res.output
    res = CliRunner().invoke(rig_main, ["calibrate", "--checkerboard", "--frame-images",
                                        str(tmp_path / "none*.png"), "--event-images",
                                        str(events / "*.png"), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "no files match" in res.output
    res = CliRunner().invoke(rig_main, ["calibrate", "--checkerboard", "--sim", "--frame-images",
                                        str(frames / "*.png"), "--event-images",
                                        str(events / "*.png"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "give one source of views" in res.output
    assert not (tmp_path / "calib.yaml").exists()


def test_homography_alignment_on_synthetic_renders(image_folders):
    """Truth-measured alignment of the homography model on renders of another seed than the
    simulated session (both targets: median <= 0.3 px, p95 <= 1 px at 1 m and 10 m)."""
    _, _, views = image_folders
    rig = default_rig()
    vs = detect_views(((i, str(i), v.frame_gray, v.event_image) for i, v in enumerate(views)),
                      BOARD, rig.frame.size, rig.event.size, progress=False)
    vs.truth = rig
    calib, report = calibrate_views(vs, CalibOptions(BOARD, holdout_every=0))
    assert calib.rms_frame <= 0.3 and calib.rms_event <= 0.3
    err = calib.alignment_error_px
    for depth in ("1m", "10m"):
        assert err[f"truth_{depth}_median"] <= 0.3, err
        assert err[f"truth_{depth}_p95"] <= 1.0, err
    # detected corners against the true projections
    for i in vs.pair_ids[:5]:
        assert np.linalg.norm(vs.frame_corners[i] - views[i].frame_corners_true, axis=1).max() < 0.5
        assert np.linalg.norm(vs.event_corners[i] - views[i].event_corners_true, axis=1).max() < 1.0


def _calibrate_flipped(views, flip: str, reflected_arm: str | None):
    """Calibrate the synthetic views with one camera's images mirrored left-right, as the
    reflected arm of a beam splitter delivers them."""
    rig = default_rig().with_mirror(flip)

    def image(img, cam):
        return np.ascontiguousarray(img[:, ::-1]) if cam == flip else img

    vs = detect_views(((i, str(i), image(v.frame_gray, "frame"), image(v.event_image, "event"))
                       for i, v in enumerate(views)), BOARD, rig.frame.size, rig.event.size,
                      progress=False)
    vs.truth, vs.reflected_arm, vs.reflected_arm_source = rig, reflected_arm, "test"
    return calibrate_views(vs, CalibOptions(BOARD, holdout_every=0))


@pytest.mark.parametrize("flip", ["event", "frame"])
def test_a_mirrored_camera_is_detected_and_aligned(image_folders, flip, tmp_path):
    """The detectors give a mirrored image's corners in the same image handedness, so corner k
    is another board corner; calibration must find the mirroring from the views themselves,
    un-mirror the camera the rig names, and align as well as on the direct views (issue 15)."""
    _, _, views = image_folders
    direct, direct_report = _calibrate_flipped(views, "none", None)
    assert direct.mirror == "none" and not direct_report["mirror"]["detected"]
    calib, report = _calibrate_flipped(views, flip, flip)
    assert calib.mirror == flip, report["mirror"]
    m = report["mirror"]
    assert m["detected"] and m["cross_view_error_mirrored_px"] < 0.1 * m["cross_view_error_direct_px"]
    # the unmirrored lens: the same intrinsics as from the direct views
    assert np.abs(calib.K_event - direct.K_event).max() < 1.0
    assert np.abs(calib.K_frame - direct.K_frame).max() < 1.0
    err = calib.alignment_error_px
    for depth in ("1m", "10m"):
        assert err[f"truth_{depth}_median"] <= 0.3, err
        assert err[f"truth_{depth}_p95"] <= 1.0, err
    assert err["train_median"] < 0.6, err
    # calib.yaml keeps it; a file without the field (before mirroring existed) reads as none
    from calibration.io import load_calibration, save_calibration

    save_calibration(calib, tmp_path / "calib.yaml")
    assert load_calibration(tmp_path / "calib.yaml").mirror == flip
    text = (tmp_path / "calib.yaml").read_text()
    (tmp_path / "old.yaml").write_text("\n".join(line for line in text.splitlines()
                                                 if not line.startswith("mirror:")))
    assert load_calibration(tmp_path / "old.yaml").mirror == "none"
