"""Calibration building blocks, each checked against a known answer (fast)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from calib_synthetic_views import event_pose

from calibration.accuracy import (
    calibration_from_geometry,
    homography_residual_table,
    truth_alignment_error,
)
from calibration.align import EventAligner, ImageAligner, event_to_aligned, frame_to_aligned
from calibration.board import Board, parse_pattern
from calibration.detect import check_view, detect_corners, normalise_order
from calibration.event_views import count_images, estimate_blink_hz, event_view
from calibration.io import CalibrationFileError, load_calibration, save_calibration
from calibration.mono import MonoResult
from calibration.relation import choose_model
from rig.evt3 import EVENT_DTYPE
from rig.frames import to_rgb
from rig.geometry import project_normalized, undistort_to_normalized
from rig.sim.checkerboard import CheckerboardScene, make_scene
from rig.sim.optics import RigGeometry, default_rig

BOARD = Board(9, 6, 0.025)


@pytest.fixture(scope="module")
def rig() -> RigGeometry:
    return default_rig()


@pytest.fixture(scope="module")
def scene(rig) -> CheckerboardScene:
    return make_scene(4, n_poses=4)


def _frame_view(rig, scene, pose: int):
    """Noise-free rendering of pose `pose` in the frame camera, and its true corners."""
    t = (pose + 0.5) * scene.hold_s
    rad = scene.render(rig.frame.pixel_rays(), np.eye(3), np.zeros(3), t).radiance[..., 0]
    gray = np.clip(rad * 400, 0, 255).astype(np.uint8)
    R, tb = scene.board_pose(t)
    return gray, rig.frame.project(scene.object_points() @ R.T + tb)


def test_parse_pattern_and_object_points():
    assert parse_pattern("9x6") == (9, 6)
    assert parse_pattern(" 7 X 5 ") == (7, 5)
    with pytest.raises(ValueError, match="COLSxROWS"):
        parse_pattern("nine by six")
    pts = BOARD.object_points()
    assert pts.shape == (54, 3)
    np.testing.assert_allclose(pts[10], [0.025, 0.025, 0.0], atol=1e-7)  # row 1, col 1
    assert BOARD.colour_asymmetric and not Board(8, 6, 0.02).colour_asymmetric


def test_undistort_inverts_distort(rig):
    rng = np.random.default_rng(0)
    px = rng.uniform([0, 0], rig.event.size, (500, 2))
    xy = undistort_to_normalized(px, rig.event.K, rig.event.dist)
    back = project_normalized(xy, rig.event.K, rig.event.dist)
    assert np.abs(back - px).max() < 1e-6


def test_scene_blinks_and_moves_in_the_dark(scene):
    p = scene.params
    t_lit0, t_lit1 = scene.lit_interval_s(0)
    assert scene.is_on(0.5 * (t_lit0 + t_lit1)) and not scene.is_on(0.5 * t_lit0)
    assert scene.pose_index(t_lit0) == scene.pose_index(t_lit1 - 1e-6) == 0
    assert scene.pose_index(scene.hold_s + 1e-6) == 1
    assert not scene.is_on(scene.hold_s)  # the pose changes while the board is dark
    assert p.background == p.black  # so a move in the dark makes no events


def test_detect_corners_subpixel_on_render(rig, scene):
    gray, truth = _frame_view(rig, scene, 0)
    det = detect_corners(gray, BOARD)
    assert det.ok, det.reason
    err = np.linalg.norm(det.corners - truth, axis=1)
    assert err.max() < 0.25 and np.median(err) < 0.1
    classic = detect_corners(gray, BOARD, try_sb=False)
    assert classic.ok and classic.method == "classic"
    assert np.linalg.norm(classic.corners - truth, axis=1).max() < 0.25


def test_normalise_order_is_detector_independent(rig, scene):
    gray, truth = _frame_view(rig, scene, 1)
    # a detector may return the grid reversed, and (N, 1, 2) like OpenCV 4.x
    rev = truth[::-1].reshape(-1, 1, 2).astype(np.float32)
    np.testing.assert_allclose(normalise_order(rev, BOARD, gray), truth, atol=1e-4)
    np.testing.assert_allclose(normalise_order(truth, BOARD, gray), truth, atol=1e-4)


def test_blank_and_broken_views_are_rejected(rig, scene):
    blank = np.full((rig.frame.height, rig.frame.width), 40, np.uint8)
    det = detect_corners(blank, BOARD)
    assert not det.ok and "no contrast" in det.reason
    _, truth = _frame_view(rig, scene, 0)
    assert check_view(truth, BOARD, rig.frame.size) == ""
    broken = truth.copy()
    broken[20] += 9.0  # 12.7 px on ~41 px squares: 0.3 of a square (the limit is 0.2)
    assert "off the grid" in check_view(broken, BOARD, rig.frame.size)
    bent = truth.copy()
    bent[20] += 2.0  # 0.07 of a square: within what a real lens and detector give
    assert check_view(bent, BOARD, rig.frame.size) == ""
    assert "edge" in check_view(truth - truth.min(axis=0), BOARD, rig.frame.size)


def test_event_view_window_and_on_off_check(rig, scene):
    """Events of one blink of the board make a detectable image; a moved board is refused."""
    rng = np.random.default_rng(1)
    R_wev, c_ev = event_pose(rig)
    rays = rig.event.pixel_rays()

    def edge_events(t_s: float, pose_t: float, polarity: int) -> np.ndarray:
        rad = scene.render(rays, R_wev, c_ev, pose_t).radiance[..., 0]
        ys, xs = np.nonzero(rad > 0.3)
        n = np.repeat(4, len(xs))
        ev = np.zeros(n.sum(), EVENT_DTYPE)
        ev["x"], ev["y"] = np.repeat(xs, n), np.repeat(ys, n)
        ev["t"] = int(t_s * 1e6) + rng.integers(0, 2000, n.sum())
        ev["p"] = polarity
        return ev

    lit0, lit1 = scene.lit_interval_s(0)
    mid = 0.5 * (lit0 + lit1)
    good = np.sort(np.concatenate([edge_events(lit0, mid, 1), edge_events(lit1, mid, 0)]),
                   order="t")
    period_us = 1e6 / scene.params.blink_hz
    view = event_view(good, mid * 1e6, period_us, rig.event.size)
    assert view.reason == "" and view.on_off_correlation > 0.95
    det = detect_corners(view.image, BOARD)
    assert det.ok, det.reason
    R, tb = scene.board_pose(mid)
    truth = rig.event.project((scene.object_points() @ R.T + tb) @ rig.R_ev_fr.T + rig.T_ev_fr_m)
    assert np.linalg.norm(det.corners - truth, axis=1).max() < 0.6
    moved = np.sort(np.concatenate([edge_events(lit0, mid, 1),
                                    edge_events(lit1, mid + scene.hold_s, 0)]), order="t")
    assert "moved" in event_view(moved, mid * 1e6, period_us, rig.event.size).reason
    on, off = count_images(good["x"], good["y"], good["p"], rig.event.size)
    assert on.sum() + off.sum() == len(good)


def test_estimate_blink_hz():
    """ON bursts once per period, OFF bursts half a period later, plus noise: 3.5 Hz, not 7."""
    rng = np.random.default_rng(2)
    bursts = np.arange(0, 3e6, 1e6 / 7.0)
    t = np.concatenate([b + rng.normal(0, 800, 3000) for b in bursts]
                       + [rng.uniform(0, 3e6, 20000)])
    p = np.concatenate([np.full(3000, (k + 1) % 2) for k in range(len(bursts))]
                       + [rng.integers(0, 2, 20000)])
    assert estimate_blink_hz(t, p) == pytest.approx(3.5, rel=0.05)


def test_calib_yaml_round_trip(tmp_path, rig):
    calib = calibration_from_geometry(rig)
    calib.alignment_error_px = {"heldout_median": 0.25, "truth_1m_p95": 0.5}
    calib.info = {"pattern": "9x6", "views_frame": 17}
    path = tmp_path / "calib.yaml"
    save_calibration(calib, path)
    assert [p.name for p in tmp_path.iterdir()] == ["calib.yaml"]  # no temp file left
    back = load_calibration(path)
    assert back.yaml_text == path.read_text() == calib.yaml_text
    for name in ("K_frame", "dist_frame", "K_event", "dist_event", "R", "T", "H", "K_aligned"):
        np.testing.assert_allclose(getattr(back, name), getattr(calib, name), rtol=1e-12)
    assert back.size_frame == rig.frame.size and back.size_event == rig.event.size
    assert back.output_size == calib.output_size and back.valid_roi == calib.valid_roi
    assert back.model == "homography" and back.plane_depth_m == pytest.approx(1.818)
    assert back.alignment_error_px == {"heldout_median": 0.25, "truth_1m_p95": 0.5}
    assert back.info["pattern"] == "9x6"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)  # plain OpenCV reads it
    np.testing.assert_allclose(fs.getNode("K_event").mat(), rig.event.K)
    fs.release()


def test_load_calibration_errors_name_the_file(tmp_path, rig):
    with pytest.raises(CalibrationFileError, match="missing.yaml"):
        load_calibration(tmp_path / "missing.yaml")
    calib = calibration_from_geometry(rig)
    path = tmp_path / "c.yaml"
    save_calibration(calib, path)
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if not line.startswith("rms_event")) + "\n")
    with pytest.raises(CalibrationFileError, match=r"c\.yaml: missing field 'rms_event'"):
        load_calibration(path)


def test_event_aligner_matches_continuous_map_and_counts_drops(rig):
    calib = calibration_from_geometry(rig)
    al = EventAligner(calib)
    w, h = rig.event.size
    x = np.array([0, w // 2, w - 1, w + 5], np.uint16)
    y = np.array([0, h // 2, h - 1, 3], np.uint16)
    xa, ya, keep = al.map_events(x, y)
    assert xa.dtype == np.uint16 and ya.dtype == np.uint16 and keep.dtype == bool
    assert list(keep) == [False, True, False, False]  # sensor corners fall outside the crop
    assert al.dropped_total == 3 and al.mapped_total == 4
    cont = event_to_aligned(calib, np.array([[w // 2, h // 2]], float))[0]
    assert abs(xa[1] - cont[0]) <= 0.5 and abs(ya[1] - cont[1]) <= 0.5
    assert (al.width, al.height) == calib.output_size
    assert 0.8 < al.coverage < 1.0
    # every kept event lands inside the grid
    rng = np.random.default_rng(0)
    xs = rng.integers(0, w, 100000).astype(np.uint16)
    ys = rng.integers(0, h, 100000).astype(np.uint16)
    xa, ya, keep = al.map_events(xs, ys)
    assert xa[keep].max() < al.width and ya[keep].max() < al.height


def test_image_aligner_debayers_and_puts_the_board_where_events_go(rig, scene):
    """True calibration: a board corner seen by both cameras lands on the same aligned pixel
    (to the parallax of a board at ~0.6 m, < 0.6 px), through the image and the event maps."""
    calib = calibration_from_geometry(rig)
    gray, truth_fr = _frame_view(rig, scene, 2)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    bayer = np.zeros(gray.shape, np.uint8)  # RGGB mosaic of the grey image
    bayer[0::2, 0::2] = rgb[0::2, 0::2, 0]
    bayer[0::2, 1::2] = rgb[0::2, 1::2, 1]
    bayer[1::2, 0::2] = rgb[1::2, 0::2, 1]
    bayer[1::2, 1::2] = rgb[1::2, 1::2, 2]
    assert np.abs(to_rgb(bayer, "BayerRG8").astype(int) - rgb).mean() < 3
    out = ImageAligner(calib).align(bayer, "BayerRG8")
    assert out.shape == (calib.output_size[1], calib.output_size[0], 3) and out.dtype == np.uint8
    det = detect_corners(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), BOARD)
    assert det.ok
    t = 2.5 * scene.hold_s
    R, tb = scene.board_pose(t)
    pts_fr = scene.object_points() @ R.T + tb
    ev_px = rig.event.project(pts_fr @ rig.R_ev_fr.T + rig.T_ev_fr_m)
    on_grid_ev = event_to_aligned(calib, ev_px)
    assert np.linalg.norm(det.corners - frame_to_aligned(calib, truth_fr), axis=1).max() < 0.3
    assert np.linalg.norm(det.corners - on_grid_ev, axis=1).max() < 0.8
    with pytest.raises(ValueError, match="calibration is for"):
        ImageAligner(calib).align(bayer[:100], "BayerRG8")


def test_homography_residual_follows_the_parallax_formula(rig):
    rows = homography_residual_table(rig, depths_m=(1.0, 10.0), plane_depths_m=(1.0, 1.818))
    at = {(r["plane_depth_m"], r["depth_m"]): r for r in rows}
    assert at[(1.0, 1.0)]["max_px"] < 1e-3  # exact on the plane
    f = rig.frame.K[0, 0]
    lateral = f * np.hypot(*rig.T_ev_fr_m[:2])
    for z in (1.0, 10.0):  # bounded by |1/Z - 1/Z0| (f |T_xy| + r_max |T_z|), r_max ~ 520 px
        bound = abs(1 / z - 1 / 1.818) * (lateral + 520 * abs(rig.T_ev_fr_m[2]))
        assert abs(1 / z - 1 / 1.818) * lateral * 0.9 < at[(1.818, z)]["max_px"] <= bound
    # the harmonic mid-point balances 1 m and 10 m
    assert at[(1.818, 1.0)]["median_px"] == pytest.approx(at[(1.818, 10.0)]["median_px"], rel=0.05)


def test_choose_model_by_baseline(rig):
    fr = MonoResult(rig.frame.K, rig.frame.dist, rig.frame.size, 0, [], np.zeros(0), [], [])
    ev = MonoResult(rig.event.K, rig.event.dist, rig.event.size, 0, [], np.zeros(0), [], [])
    model, why = choose_model(fr, ev, rig.T_ev_fr_m, 1.0, 10.0, 1.818)
    assert model == "homography" and "ill-conditioned" in why
    model, why = choose_model(fr, ev, np.array([0.06, 0.0, 0.0]), 1.0, 10.0, 1.818)
    assert model == "stereo" and "disparity" in why


def test_stereo_model_aligns_a_side_by_side_rig_at_infinity(rig):
    side = RigGeometry(rig.frame, rig.event, rig.R_ev_fr, np.array([-0.06, 0.001, 0.002]))
    calib = calibration_from_geometry(side, model="stereo")
    assert calib.model == "stereo" and calib.stereo is not None
    far = truth_alignment_error(calib, side, (1e6,))
    assert far["truth_1e+06m_max"] < 0.05
    near = truth_alignment_error(calib, side, (5.0,))
    f = calib.K_frame[0, 0]  # truth errors are frame-camera pixels, whatever the grid's sampling
    assert near["truth_5m_median"] == pytest.approx(f * 0.06 / 5.0, rel=0.1)  # disparity


def test_show_pattern_image_is_the_board_it_claims():
    from calibration.pattern import pattern_image

    img = pattern_image(BOARD, 800, 600)
    det = detect_corners(img, BOARD)
    assert det.ok and det.corners.shape == (54, 2)
    assert det.corners[0].sum() < det.corners[-1].sum()  # dark corner square at the top-left
    steps = np.linalg.norm(np.diff(det.corners.reshape(6, 9, 2), axis=1), axis=2)
    assert steps.std() < 0.05 * steps.mean()
    with pytest.raises(ValueError, match="too small"):
        pattern_image(BOARD, 40, 30)


def test_aligned_grid_samples_at_the_event_cameras_focal_length_by_default(rig):
    """`--grid event` (default) gives a grid about the event sensor's size, `--grid frame` the
    frame camera's; what the alignment gets right (truth errors, in frame pixels) is the same,
    and the sub-pixel splat reaches every grid pixel either way (issue 15)."""
    from calibration.pipeline import _coverage

    ev = calibration_from_geometry(rig)
    fr = calibration_from_geometry(rig, grid="frame")
    scale = rig.event.K[0, 0] / rig.frame.K[0, 0]
    assert ev.K_aligned[0, 0] == pytest.approx(scale * rig.frame.K[0, 0], rel=1e-3)
    assert abs(ev.output_size[0] - rig.event.width) <= 0.05 * rig.event.width
    assert ev.output_size[0] == pytest.approx(scale * fr.output_size[0], abs=3)
    e_ev, e_fr = truth_alignment_error(ev, rig), truth_alignment_error(fr, rig)
    for key in ("truth_1m_median", "truth_10m_p95"):
        assert e_ev[key] == pytest.approx(e_fr[key], abs=0.01)
    c_ev, c_fr = _coverage(ev), _coverage(fr)
    assert c_ev["event_coverage"] >= 0.99 and c_fr["event_coverage"] >= 0.99
    assert c_fr["event_coverage_nearest"] < 0.6 < c_ev["event_coverage_nearest"]
    with pytest.raises(ValueError, match="grid scale"):
        calibration_from_geometry(rig, grid=9.0)


def test_calibration_without_the_aligned_matrices_gets_their_defaults(rig, tmp_path):
    """Files from before K_aligned/R_rect_frame (and code that leaves them out) get the frame
    camera's K shifted by the crop and the identity, and survive a save/load round trip."""
    from calibration.io import Calibration, load_calibration, save_calibration

    c = Calibration(rig.frame.K, rig.frame.dist, rig.frame.size, rig.event.K, rig.event.dist,
                    rig.event.size, rig.R_ev_fr, rig.T_ev_fr_m, "homography", np.eye(3),
                    (800, 400), (10, 20, 800, 400), 0.1, 0.2, 0.3, mirror="event")
    expected = rig.frame.K.copy()
    expected[0, 2] -= 10
    expected[1, 2] -= 20
    np.testing.assert_allclose(c.K_aligned, expected)
    np.testing.assert_allclose(c.R_rect_frame, np.eye(3))
    save_calibration(c, tmp_path / "calib.yaml")
    back = load_calibration(tmp_path / "calib.yaml")
    np.testing.assert_allclose(back.K_aligned, expected)
    assert back.mirror == "event"
    px = np.array([[0.0, 5.0], [rig.event.width - 1.0, 7.0]])
    np.testing.assert_allclose(back.sensor_to_lens("event", px),
                               [[rig.event.width - 1.0, 5.0], [0.0, 7.0]])
    np.testing.assert_allclose(back.sensor_to_lens("frame", px), px)  # not the mirrored one
