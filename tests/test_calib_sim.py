"""End to end on the simulated rig: record a blinking-checkerboard session once (40 poses),
calibrate it through `rig calibrate`, and measure against the simulator's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from calibration.align import EventAligner, ImageAligner
from calibration.io import load_calibration
from rig.cli import main as rig_main
from rig.session import SessionReader

N_POSES = 40


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory) -> tuple[Path, str]:
    """`rig calibrate --checkerboard --sim`: records a simulated session into OUT/session and
    calibrates it (the slow part of the suite: ~1-2 min on 2 cores)."""
    out = tmp_path_factory.mktemp("calib_sim")
    res = CliRunner().invoke(rig_main, ["calibrate", "--checkerboard", "--sim", "--views",
                                        str(N_POSES), "--seed", "0", "--out", str(out),
                                        "--quiet"])
    assert res.exit_code == 0, res.output
    return out, res.output


@pytest.fixture(scope="session")
def calib_session(calibrated) -> Path:
    return calibrated[0] / "session"


def test_cli_writes_three_files_and_prints_numbers(calibrated):
    out, text = calibrated
    assert {p.name for p in out.iterdir()} >= {"calib.yaml", "report.json", "report.png"}
    assert "RMS (px)" in text and "vs truth   1m" in text and "vs truth  10m" in text
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "homography"
    assert len(report["frame"]["per_view_rms_px"]) >= 15
    assert report["heldout_views"] and report["alignment_error_px"]["heldout_p95"] < 1.5
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_accuracy_targets_against_ground_truth(calibrated):
    out, _ = calibrated
    calib = load_calibration(out / "calib.yaml")
    assert calib.rms_frame <= 0.3 and calib.rms_event <= 0.3
    err = calib.alignment_error_px
    for depth in ("1m", "10m"):
        assert err[f"truth_{depth}_median"] <= 0.3, err
        assert err[f"truth_{depth}_p95"] <= 1.0, err
        # what the builder stores and the reader applies (the float32 rectify map), issue 15
        assert err[f"truth_{depth}_stored_median"] <= 0.3, err
        assert err[f"truth_{depth}_stored_p95"] <= 1.0, err
    assert int(calib.info["views_stereo"]) >= 12


def test_events_reach_every_pixel_of_the_aligned_grid(calibrated):
    """The default grid samples at the event camera's focal length (coarser than the frame
    camera's); the reader's sub-pixel splat reaches all its pixels (report.json, issue 15)."""
    out, text = calibrated
    report = json.loads((out / "report.json").read_text())
    grid = report["aligned_grid"]
    assert grid["grid"] == "event" and grid["event_coverage"] >= 0.99
    K_fr, K_ev = np.array(report["frame"]["K"]), np.array(report["event"]["K"])
    assert grid["focal_scale_vs_frame"] == pytest.approx(K_ev[0, 0] / K_fr[0, 0], rel=0.01)
    w_ev, h_ev = SessionReader(out / "session").manifest.sensor_size("event")
    w, h = grid["output_size"]
    assert 0.9 * w_ev <= w <= 1.1 * w_ev and 0.9 * h_ev <= h <= 1.1 * h_ev
    assert "event reach" in text


def test_default_rig_mirrors_the_event_camera_and_calibration_undoes_it(calibrated):
    """The README's rig puts the EVK4 on the beam splitter's reflected arm: the simulated rig
    does too by default, the session says so, and calibration finds the mirrored pair by itself
    (the truth figures above are then those of a mirrored rig)."""
    out, text = calibrated
    session = SessionReader(out / "session")
    assert session.manifest.reflected_arm == "event"
    assert session.ground_truth_geometry().mirror == "event"
    report = json.loads((out / "report.json").read_text())
    assert report["mirror"]["camera"] == "event" and report["mirror"]["detected"]
    assert load_calibration(out / "calib.yaml").mirror == "event"
    assert "mirrored      the event camera" in text


def test_recovered_geometry_is_close_to_truth(calibrated, calib_session):
    out, _ = calibrated
    calib = load_calibration(out / "calib.yaml")
    truth = SessionReader(calib_session).ground_truth_geometry()
    assert np.linalg.norm(calib.T - truth.T_ev_fr_m) < 0.3e-3  # metres
    for est, cam in ((calib.K_frame, truth.frame), (calib.K_event, truth.event)):
        assert abs(est[0, 0] / cam.K[0, 0] - 1) < 0.01


def test_aligners_load_from_the_file(calibrated, calib_session):
    out, _ = calibrated
    calib = load_calibration(out / "calib.yaml")
    reader = SessionReader(calib_session)
    img = ImageAligner(calib).align(reader.frame(0), reader.pixel_format)
    assert img.shape == (calib.output_size[1], calib.output_size[0], 3)
    events, _ = reader.decode_events()
    al = EventAligner(calib)
    xa, ya, keep = al.map_events(events["x"][:200_000], events["y"][:200_000])
    assert keep.any() and al.dropped_total == int((~keep).sum())
    assert xa[keep].max() < al.width and ya[keep].max() < al.height


def test_session_source_pairs_every_frame_with_its_trigger(calib_session):
    from calibration.sources import session_views

    src = session_views(calib_session, progress=False)
    assert src.notes == ()  # counts agreed: no pairing by frame ids needed
    assert src.truth is not None and src.dedupe_px
    reader = SessionReader(calib_session)
    assert src.total == reader.num_frames >= N_POSES * 3


def test_session_source_pairs_through_the_sync_after_dropped_frames(calib_session, tmp_path):
    """Frames lost in transport (rows missing from frames.h5): every remaining frame still
    meets its own trigger edge (rig.sync.pair_session, never pairing by order), so each view's
    time equals the time that frame had in the complete session."""
    import shutil

    from calibration.sources import session_views
    from rig.devices import Frame
    from rig.session import FramesWriter

    lost = {3, 4, 40}
    cut = tmp_path / "session"
    shutil.copytree(calib_session, cut, ignore=shutil.ignore_patterns("frames.h5"))
    with SessionReader(calib_session) as full:
        meta, fmt = full.frame_meta, full.pixel_format
        with FramesWriter(cut / "frames.h5", full.frame(0).shape[1], full.frame(0).shape[0],
                          fmt) as w:
            for k in range(full.num_frames):
                if k not in lost:
                    w.append(Frame(full.frame(k), int(meta["frame_id"][k]), int(meta["t_device_ns"][k]),
                                   int(meta["t_host_ns"][k]), float(meta["exposure_us"][k]),
                                   float(meta["gain_db"][k]), bool(meta["incomplete"][k]), fmt))
    full_labels = [label for _, label, _, _ in session_views(calib_session, progress=False).views]
    src = session_views(cut, progress=False)
    cut_labels = [label for _, label, _, _ in src.views]
    kept = [k for k in range(len(full_labels)) if k not in lost]
    assert len(cut_labels) == len(kept)
    for new_k, old_k in enumerate(kept):
        assert cut_labels[new_k].split(" t=")[1] == full_labels[old_k].split(" t=")[1]
    assert any("frame dropped" in note for note in src.notes)


def test_a_never_closed_session_is_named_with_the_way_to_recover_it(calib_session, monkeypatch):
    """A calibration recording that crashed still says 'recording': the notes say how to make it
    whole (`rig session recover`, issue 16)."""
    from calibration.sources import session_views
    from rig import session as session_mod

    monkeypatch.setattr(session_mod.SessionReader, "status", property(lambda self: "recording"))
    source = session_views(calib_session, progress=False)
    assert any("rig session recover" in n and "'recording'" in n for n in source.notes), \
        source.notes
