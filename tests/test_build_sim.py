"""`rpea build` on sessions recorded by the simulated rig, measured against its ground truth.

Two short sessions (day with injected faults, night clean) -> train and val; the files must pass
`rpea check` (alignment sanity included); every pair must hold the frame of its own pulse (the
simulator's ground-truth trigger table says which); events must land within 1 px (mean) of the
true frame-camera position of what they saw (`RigGeometry.event_to_frame_pixels` with the true
depth), carried onto the aligned grid.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("rig.sim.world", reason="simulated rig (rig.sim.world) not available")

from calibration.align import EventAligner, frame_to_aligned  # noqa: E402
from calibration.io import load_calibration  # noqa: E402
from dataset.cli import main  # noqa: E402
from dataset.demo import ground_truth_calibration  # noqa: E402
from dataset.rpea_check import check_root  # noqa: E402
from dataset.rpea_format import grid_positions  # noqa: E402
from rig import recorder  # noqa: E402
from rig.evt3 import decode_file  # noqa: E402
from rig.session import SessionReader  # noqa: E402
from rig.sim.world import SimConfig, SimRig  # noqa: E402

DURATION_S = 1.5
SCALE = 0.25  # 256x192 frames, 160x90 events: the whole pipeline, at test speed
FAULTS = {"drop_frames": [4], "duplicate_trigger_edges": [8], "missing_trigger_edges": [12],
          "missed_triggers": [20]}


def record_small(out: Path, scenario: str, seed: int, faults: dict | None = None,
                 mirror: str | None = None, duration_s: float = DURATION_S) -> Path:
    """`rig record` on the simulated rig with both sensors scaled down (the recorder's own code,
    only the rig it opens is smaller); `mirror` as `rig record --mirror` (None: the default,
    the event camera on the reflected arm)."""
    def open_small(opts: recorder.RecordOptions) -> recorder.RigDevices:
        cfg = SimConfig(scenario=opts.scenario, seed=opts.seed, scale=SCALE, mirror=mirror,
                        **{k: frozenset(v) for k, v in opts.sim_faults.items()})
        sim = SimRig(cfg)
        return recorder.RigDevices(sim.event_camera, sim.frame_camera, sim.trigger, sim_rig=sim)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder, "open_devices", open_small)
        summary = recorder.record_session(recorder.RecordOptions(
            out_dir=out, duration_s=duration_s, rate_hz=20, scenario=scenario, seed=seed,
            show_status=False, sim_faults=faults or {}))
    assert summary.status == "complete", summary.detail
    return out


@pytest.fixture(scope="module")
def sim_built(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("simbuild")
    day = record_small(tmp / "rec" / "day_sim", "day", 3, faults=FAULTS)
    night = record_small(tmp / "rec" / "night_sim", "night", 4)
    calib = ground_truth_calibration(SessionReader(day).ground_truth_geometry(), tmp / "calib.yaml")
    out = tmp / "data"
    for split in ("train", "val"):
        res = CliRunner().invoke(main, ["build", "--split", split, "--sessions", str(day),
                                        "--sessions", str(night), "--calib", str(calib),
                                        "--out", str(out), "--quiet", "--seed", "0"])
        assert res.exit_code == 0, res.output + repr(res.exception)
    return {"out": out, "calib": calib, "day": day, "night": night}


def _file_of(out: Path, name: str) -> Path:
    hits = list(out.glob(f"*/{name}.h5"))
    assert len(hits) == 1, f"{name} built into {hits}"
    return hits[0]


def test_sim_dataset_passes_check_with_alignment(sim_built) -> None:
    problems = check_root(sim_built["out"])
    assert [str(p) for p in problems if p.level == "error"] == []
    splits = {p.parent.name for p in sim_built["out"].glob("*/*.h5")}
    assert splits == {"train", "val"}


def _gt_triggers(session: Path) -> dict[int, dict[str, str]]:
    with open(session / "ground_truth" / "triggers.csv") as f:
        return {int(r["pulse_index"]): r for r in csv.DictReader(f)}


def test_sim_pairing_with_injected_faults(sim_built) -> None:
    path = _file_of(sim_built["out"], "day_sim")
    gt = _gt_triggers(sim_built["day"])
    reader = SessionReader(sim_built["day"])
    t_dev = reader.frame_meta["t_device_ns"]
    with h5py.File(path, "r") as f:
        pulses = f["pairs/pulse_index"][()]
        fidx = f["pairs/frame_index"][()]
        edge = f["pairs/exposure_t0_us"][()]
        report = json.loads(f["build/report"][()])
    faulty = {4, 8, 12, 20}
    n = len(gt)
    assert set(range(n)) - set(pulses.tolist()) <= faulty | {8}
    assert {4, 12, 20}.isdisjoint(pulses.tolist())
    assert len(pulses) >= n - 4
    for k, i in zip(pulses, fidx, strict=True):  # zero mis-paired frames
        assert int(gt[int(k)]["frame_delivered"]) == 1
        assert int(t_dev[i]) == int(float(gt[int(k)]["t_frame_clock_ns"]))
    true_edge = np.array([float(gt[int(k)]["t_event_clock_us"]) for k in pulses])
    assert np.max(np.abs(edge - true_edge)) <= 2
    assert report["sync"]["num_pulses"] == n


def test_sim_events_within_one_pixel_of_truth(sim_built) -> None:
    session = sim_built["day"]
    reader = SessionReader(session)
    geometry = reader.ground_truth_geometry()
    calib = load_calibration(sim_built["calib"])
    raw, _ = decode_file(reader.events_path)
    _, _, keep = EventAligner(calib).map_events(raw["x"], raw["y"])
    raw = raw[keep]  # the builder keeps this order
    with h5py.File(session / "ground_truth" / "labels.h5", "r") as g:
        depth = g["depth_event_m"][()].astype(np.float32)
        row_of = {int(k): i for i, k in enumerate(g["pulse_index"][()])}
    path = _file_of(sim_built["out"], "day_sim")
    errs = []
    with h5py.File(path, "r") as f:
        assert f["events/x"].shape[0] == raw.size
        assert np.array_equal(f["events/x"][()], raw["x"])  # sensor pixels, DSEC's meaning
        assert np.array_equal(f["events/y"][()], raw["y"])
        rmap = f["rectify_map"][()]
        pulses = f["pairs/pulse_index"][()]
        for i in range(0, len(pulses), 3):
            a, b = int(f["pairs/event_idx0"][i]), int(f["pairs/event_idx1"][i])
            src = raw[a:b]
            d = depth[row_of[int(pulses[i])]][src["y"], src["x"]]
            ok = np.isfinite(d) & (d > 0.5) & (d < 1e4)
            px = np.stack([src["x"][ok], src["y"][ok]], axis=1).astype(np.float64)
            true_al = frame_to_aligned(calib, geometry.event_to_frame_pixels(px, d[ok]))
            x, y = grid_positions(rmap, f["events/x"][a:b][ok], f["events/y"][a:b][ok])
            errs.append(np.hypot(x - true_al[:, 0], y - true_al[:, 1]))
    err = np.concatenate(errs)
    assert err.size > 1000
    print(f"event alignment error vs truth: mean {err.mean():.3f} px, "
          f"p95 {np.percentile(err, 95):.3f} px, n={err.size}")
    assert err.mean() < 1.0, err.mean()


def test_sim_labels_masks_and_conditions(sim_built) -> None:
    with h5py.File(_file_of(sim_built["out"], "day_sim"), "r") as f:
        assert f["pairs/has_label"][()].all()
        lab = f["labels"][0]
        assert (lab != 255).mean() > 0.5 and len(np.unique(lab)) >= 4
        assert "masks" in f and f["masks"].shape == f["labels"].shape
        assert not f["pairs/is_night"][()].any()
    with h5py.File(_file_of(sim_built["out"], "night_sim"), "r") as f:
        assert f.attrs["time_of_day"] == "night" and f["pairs/is_night"][()].all()
        assert f["pairs/underexposed_frac"][()].mean() > 0.2


def test_frame_mirrored_session_builds_the_unmirrored_view(tmp_path) -> None:
    """A rig with the frame camera on the reflected arm (`--mirror frame`) and one with no
    mirror see the same world through the same optics: built with their true calibrations, the
    aligned images, labels and events must agree; mirroring is undone, not carried into the
    dataset (issue 15)."""
    built = {}
    for mirror in ("none", "frame"):
        session = record_small(tmp_path / "rec" / f"m_{mirror}", "day", 7, mirror=mirror,
                               duration_s=0.5)
        geometry = SessionReader(session).ground_truth_geometry()
        assert geometry.mirror == mirror
        assert SessionReader(session).manifest.reflected_arm == mirror
        calib = ground_truth_calibration(geometry, tmp_path / f"calib_{mirror}.yaml")
        out = tmp_path / f"data_{mirror}"
        res = CliRunner().invoke(main, ["build", "--split", "train", "--sessions", str(session),
                                        "--calib", str(calib), "--out", str(out), "--quiet"])
        assert res.exit_code == 0, res.output + repr(res.exception)
        assert [str(p) for p in check_root(out) if p.level == "error"] == []
        with h5py.File(_file_of(out, f"m_{mirror}"), "r") as f:
            built[mirror] = {k: f[k][()] for k in ("images", "labels", "events/x", "events/y")}
    a, b = built["none"], built["frame"]
    assert np.array_equal(a["events/x"], b["events/x"]) and np.array_equal(a["events/y"],
                                                                           b["events/y"])
    valid = (a["labels"] != 255) & (b["labels"] != 255)
    agree = float((a["labels"] == b["labels"])[valid].mean())
    flipped = float((a["labels"] == b["labels"][..., ::-1])[valid].mean())
    print(f"label agreement, frame-mirrored rig vs direct: {agree:.4f} (left as mirrored: "
          f"{flipped:.4f})")
    assert agree > 0.97 and flipped < 0.9 * agree
    diff = np.abs(a["images"].astype(np.int16) - b["images"].astype(np.int16)).mean()
    diff_flipped = np.abs(a["images"].astype(np.int16)
                          - b["images"][:, :, ::-1].astype(np.int16)).mean()
    assert diff < 0.5 * diff_flipped, (diff, diff_flipped)


def test_check_finds_labels_shifted_off_their_images(sim_built, tmp_path) -> None:
    """A built simulated file's labels sit on its images (the label-to-image check passes);
    the same file with its labels moved 4 px right fails it, naming the shift (issue 18)."""
    import shutil

    from dataset.rpea_check import check_sequence

    src = _file_of(sim_built["out"], "day_sim")
    probs, _ = check_sequence(src)
    assert not [p for p in probs if "labels and images" in str(p)]
    moved = tmp_path / src.name
    shutil.copy(src, moved)
    with h5py.File(moved, "r+") as f:
        lab = f["labels"][()]
        f["labels"][...] = np.concatenate([np.full_like(lab[:, :, :4], 255), lab[:, :, :-4]], 2)
    probs, _ = check_sequence(moved)
    bad = [str(p) for p in probs if "labels and images look misaligned" in str(p)]
    assert len(bad) == 1 and "(+4, " in bad[0], [str(p) for p in probs]
