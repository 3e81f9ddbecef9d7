"""`rig calibrate export`: calib.yaml as a Kalibr camera chain and as ROS camera_info files.

The numbers must come back exactly, Kalibr's transform must be the one Kalibr means (checked by
projecting a point the way Kalibr does), and files are published atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from calibration.accuracy import calibration_from_geometry
from calibration.export import export_kalibr, export_ros, k3_drop_px
from calibration.io import Calibration, load_calibration, save_calibration
from rig.cli import main as rig_main
from rig.geometry import project_normalized, rotation_from_euler_deg
from rig.sim.optics import default_rig


@pytest.fixture()
def calib() -> Calibration:
    """The simulated rig's true calibration with a pose far from identity (so a transposed or
    inverted transform cannot pass) and the event camera's k3 kept (nonzero)."""
    c = calibration_from_geometry(default_rig())
    c.R = rotation_from_euler_deg(2.0, -3.0, 1.5)
    c.T = np.array([0.05, -0.02, 0.01])
    c.rms_frame, c.rms_event, c.rms_stereo = 0.11, 0.21, 0.25
    assert c.dist_event[4] != 0 and c.dist_frame[4] != 0
    return c


def _radtan_pixel(intrinsics: list[float], coeffs: list[float], X: np.ndarray) -> np.ndarray:
    """Kalibr's pinhole + radtan projection (aslam_cv RadialTangentialDistortion::distort)."""
    fu, fv, pu, pv = intrinsics
    k1, k2, p1, p2 = coeffs
    x, y = X[0] / X[2], X[1] / X[2]
    mx2, my2, mxy = x * x, y * y, x * y
    rho2 = mx2 + my2
    rad = k1 * rho2 + k2 * rho2 * rho2
    xd = x + x * rad + 2.0 * p1 * mxy + p2 * (rho2 + 2.0 * mx2)
    yd = y + y * rad + 2.0 * p2 * mxy + p1 * (rho2 + 2.0 * my2)
    return np.array([fu * xd + pu, fv * yd + pv])


def test_kalibr_round_trip_matches_calib_yaml(tmp_path: Path, calib: Calibration) -> None:
    save_calibration(calib, tmp_path / "calib.yaml")
    src = load_calibration(tmp_path / "calib.yaml")
    res = export_kalibr(src, tmp_path)  # a folder: camchain.yaml inside
    assert res.paths == [tmp_path / "camchain.yaml"]
    doc = yaml.safe_load(res.paths[0].read_text())
    assert set(doc) == {"cam0", "cam1"} and "T_cn_cnm1" not in doc["cam0"]
    for cam, K, dist, size in (("cam0", src.K_frame, src.dist_frame, src.size_frame),
                               ("cam1", src.K_event, src.dist_event, src.size_event)):
        c = doc[cam]
        assert c["camera_model"] == "pinhole" and c["distortion_model"] == "radtan"
        fu, fv, pu, pv = c["intrinsics"]
        np.testing.assert_array_equal(np.array([[fu, 0, pu], [0, fv, pv], [0, 0, 1]]), K)
        assert c["distortion_coeffs"] == list(dist[:4])  # k1 k2 p1 p2, exactly
        assert c["resolution"] == list(size) and all(type(v) is int for v in c["resolution"])
        assert c["rostopic"].endswith("/image_raw")
    T = np.array(doc["cam1"]["T_cn_cnm1"])
    np.testing.assert_array_equal(T[:3, :3], src.R)
    np.testing.assert_array_equal(T[:3, 3], src.T)
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    assert doc["cam0"]["cam_overlaps"] == [1] and doc["cam1"]["cam_overlaps"] == [0]
    # both cameras' k3 are dropped, and said so with the pixels it costs
    assert len(res.notes) == 2 and all("k3" in n and "px" in n for n in res.notes)


def test_kalibr_transform_projects_like_our_calibration(tmp_path: Path, calib: Calibration) -> None:
    calib.dist_event = calib.dist_event.copy()
    calib.dist_event[4] = 0.0  # radtan can represent this camera exactly
    doc = yaml.safe_load(export_kalibr(calib, tmp_path / "c.yaml").paths[0].read_text())
    cam1 = doc["cam1"]
    T_cn_cnm1 = np.array(cam1["T_cn_cnm1"])
    rng = np.random.default_rng(0)
    for _ in range(20):
        X_fr = np.array([rng.uniform(-1, 1), rng.uniform(-0.6, 0.6), rng.uniform(1.5, 6.0)])
        ours = project_normalized(((calib.R @ X_fr + calib.T)[:2] / (calib.R @ X_fr + calib.T)[2])
                                  [None], calib.K_event, calib.dist_event)[0]
        X_c1 = (T_cn_cnm1 @ np.append(X_fr, 1.0))[:3]
        kalibr = _radtan_pixel(cam1["intrinsics"], cam1["distortion_coeffs"], X_c1)
        np.testing.assert_allclose(kalibr, ours, atol=1e-9)
        # the other reading of the transform (cam1 -> cam0) lands far away: the check has teeth
        X_wrong = (np.linalg.inv(T_cn_cnm1) @ np.append(X_fr, 1.0))[:3]
        wrong = _radtan_pixel(cam1["intrinsics"], cam1["distortion_coeffs"], X_wrong)
        assert np.linalg.norm(wrong - ours) > 5.0


def test_k3_drop_is_measured(calib: Calibration) -> None:
    K, d, size = calib.K_event, calib.dist_event, calib.size_event
    assert k3_drop_px(K, np.append(d[:4], 0.0), size) == pytest.approx(0.0, abs=1e-9)
    shift = k3_drop_px(K, d, size)
    assert 0.01 < shift < 5.0  # k3 = -0.012 on a 640x360 sensor: a few hundredths of a pixel
    assert k3_drop_px(K, np.append(d[:4], 2 * d[4]), size) > 1.5 * shift


def test_ros_camera_info_round_trip(tmp_path: Path, calib: Calibration) -> None:
    res = export_ros(calib, tmp_path / "ros", frame_name="rgb", event_name="dvs")
    assert [p.name for p in res.paths] == ["rgb.yaml", "dvs.yaml"] and not res.notes
    for path, K, dist, size in ((res.paths[0], calib.K_frame, calib.dist_frame, calib.size_frame),
                                (res.paths[1], calib.K_event, calib.dist_event, calib.size_event)):
        doc = yaml.safe_load(path.read_text())
        assert doc["camera_name"] == path.stem
        assert (doc["image_width"], doc["image_height"]) == size
        assert doc["distortion_model"] == "plumb_bob"

        def mat(key: str, doc: dict = doc) -> np.ndarray:
            m = doc[key]
            assert len(m["data"]) == m["rows"] * m["cols"]  # what parse_yml.cpp reads
            return np.array(m["data"]).reshape(m["rows"], m["cols"])

        np.testing.assert_array_equal(mat("camera_matrix"), K)
        np.testing.assert_array_equal(mat("distortion_coefficients"), dist.reshape(1, 5))
        np.testing.assert_array_equal(mat("rectification_matrix"), np.eye(3))
        np.testing.assert_array_equal(mat("projection_matrix"), np.hstack([K, np.zeros((3, 1))]))


def test_writes_are_atomic(tmp_path: Path, calib: Calibration, monkeypatch) -> None:
    target = tmp_path / "camchain.yaml"
    target.write_text("old\n")
    real_write_text = Path.write_text

    def half_then_fail(self: Path, text: str, *args, **kwargs) -> int:
        real_write_text(self, text[: len(text) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_kalibr(calib, target)
    with pytest.raises(OSError, match="disk full"):
        export_ros(calib, tmp_path)
    monkeypatch.undo()
    assert target.read_text() == "old\n"  # untouched, and no half file or temp file anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camchain.yaml"]
    export_kalibr(calib, target)
    assert "T_cn_cnm1" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camchain.yaml"]


def test_cli_defaults_to_the_workspace(tmp_path: Path, calib: Calibration, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(rig_main, ["calibrate", "export", "--format", "kalibr"])
    assert res.exit_code != 0 and "no calibration at calib/calib.yaml" in res.output
    save_calibration(calib, tmp_path / "calib" / "calib.yaml")
    res = runner.invoke(rig_main, ["calibrate", "export", "--format", "kalibr"])
    assert res.exit_code == 0, res.output
    assert "calibration: calib/calib.yaml (workspace default)" in res.stderr
    assert "wrote calib/camchain.yaml" in res.stdout and "note: cam1 (event): k3" in res.stderr
    assert yaml.safe_load((tmp_path / "calib" / "camchain.yaml").read_text())["cam1"]["T_cn_cnm1"]
    res = runner.invoke(rig_main, ["calibrate", "export", "--format", "ros", "calib", "-o", "ros/"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "ros").iterdir()) == ["event_camera.yaml",
                                                                    "frame_camera.yaml"]
    res = runner.invoke(rig_main, ["calibrate", "export", "--format", "ros", "-o", "x.yaml"])
    assert res.exit_code == 2 and "one file per camera" in res.output
    res = runner.invoke(rig_main, ["calibrate", "export", "--format", "kalibr", "-o", "k/"])
    assert res.exit_code == 0 and (tmp_path / "k" / "camchain.yaml").is_file()


def test_calibrate_stays_a_command_and_gains_export(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    bare = runner.invoke(rig_main, ["calibrate"])
    assert bare.exit_code == 2 and "say how to calibrate: --checkerboard" in bare.output
    mixed = runner.invoke(rig_main, ["calibrate", "--checkerboard", "--quiet", "export",
                                     "--format", "ros"])
    assert mixed.exit_code == 2 and "--checkerboard, --quiet" in mixed.output
    helped = runner.invoke(rig_main, ["calibrate", "--help"])
    assert "--checkerboard" in helped.output and "export" in helped.output
    assert not any(tmp_path.iterdir())
