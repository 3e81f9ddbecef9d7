"""The simulator's camera model must be OpenCV's: calibration is measured against it."""

import cv2
import numpy as np
import pytest

from rig.sim.optics import CameraModel, RigGeometry, default_rig, rotation_from_euler_deg


@pytest.fixture(params=[False, True], ids=["default", "full_res"])
def rig(request) -> RigGeometry:
    return default_rig(full_res=request.param)


def test_default_sizes() -> None:
    small, full = default_rig(), default_rig(full_res=True)
    assert (small.frame.size, small.event.size) == ((1024, 768), (640, 360))
    assert (full.frame.size, full.event.size) == ((2048, 1536), (1280, 720))


def test_project_matches_opencv(rig: RigGeometry) -> None:
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-1, 1, 500), rng.uniform(-0.7, 0.7, 500), rng.uniform(1, 20, 500)])
    for cam in (rig.frame, rig.event):
        ours = cam.project(pts)
        ref, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.dist)
        np.testing.assert_allclose(ours, ref.reshape(-1, 2), atol=1e-9)


def test_undistort_inverts_project(rig: RigGeometry) -> None:
    for cam in (rig.frame, rig.event):
        u, v = np.meshgrid(np.linspace(0, cam.width - 1, 17), np.linspace(0, cam.height - 1, 11))
        px = np.column_stack([u.ravel(), v.ravel()])
        xy = cam.undistort_pixels(px)
        back = cam.project(np.column_stack([xy, np.ones(len(xy))]))
        assert np.abs(back - px).max() < 1e-6


def test_pixel_rays_hit_their_pixel() -> None:
    cam = default_rig().event
    rays = cam.pixel_rays()
    assert rays.shape == (cam.height, cam.width, 3) and rays.dtype == np.float32
    back = cam.project(rays[::37, ::41].reshape(-1, 3).astype(np.float64))
    v, u = np.mgrid[0:cam.height:37, 0:cam.width:41]
    assert np.abs(back - np.column_stack([u.ravel(), v.ravel()])).max() < 1e-3


def test_correspondence_round_trip_and_pose_convention(rig: RigGeometry) -> None:
    rng = np.random.default_rng(1)
    pts_fr = np.column_stack([rng.uniform(-0.5, 0.5, 200), rng.uniform(-0.3, 0.3, 200),
                              rng.uniform(1, 10, 200)])
    pts_ev = pts_fr @ rig.R_ev_fr.T + rig.T_ev_fr_m
    ev_px, fr_px = rig.event.project(pts_ev), rig.frame.project(pts_fr)
    np.testing.assert_allclose(rig.event_to_frame_pixels(ev_px, pts_ev[:, 2]), fr_px, atol=1e-6)
    np.testing.assert_allclose(rig.frame_to_event_pixels(fr_px, pts_fr[:, 2]), ev_px, atol=1e-6)


def test_serialisation_round_trip(tmp_path) -> None:
    rig = default_rig()
    rig.save_json(tmp_path / "rig.json")
    back = RigGeometry.load_json(tmp_path / "rig.json")
    np.testing.assert_array_equal(back.frame.K, rig.frame.K)
    np.testing.assert_array_equal(back.event.dist, rig.event.dist)
    np.testing.assert_array_equal(back.R_ev_fr, rig.R_ev_fr)
    assert isinstance(back.frame, CameraModel) and back.event.size == rig.event.size


def test_rotation_is_orthonormal() -> None:
    R = rotation_from_euler_deg(10, -20, 30)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)
