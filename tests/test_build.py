"""`rpea build` end to end on hand-made session folders (no simulator needed).

A session is written with the project's own writers (EVT3Writer, FramesWriter, TriggersCsvWriter)
from a known truth: every event pixel sees a point at a known depth through the default simulated
rig, every pulse has a known event-clock and frame-clock time, and faults are injected by pulse
index. The built file must put each event where the true geometry says (after alignment), pair
each frame with its own trigger edge, drop (and report) what the faults broke, and pass
`rpea check`; the DSEC-style read (h5py + hdf5plugin, ms_to_idx slicing) must return the same
events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from click.testing import CliRunner

from calibration.align import frame_to_aligned
from calibration.io import load_calibration
from dataset.builder import BuildOptions, build, event_windows
from dataset.cli import main
from dataset.demo import ground_truth_calibration
from dataset.rpea_check import check_root
from dataset.rpea_format import grid_positions
from rig.devices import Frame
from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, EVT3Writer
from rig.session import FramesWriter, TriggersCsvWriter, write_json_atomic
from rig.sim.optics import RigGeometry, default_rig

PERIOD_US = 50_000
EXPOSURE_US = 4_000
DEPTH_M = 8.0


def small_rig() -> RigGeometry:
    g = default_rig()
    return RigGeometry(g.frame.scaled(0.25), g.event.scaled(0.25), g.R_ev_fr, g.T_ev_fr_m)


@dataclass
class Faults:
    drop_frames: set[int] = field(default_factory=set)
    missed_triggers: set[int] = field(default_factory=set)
    missing_edges: set[int] = field(default_factory=set)
    duplicate_edges: set[int] = field(default_factory=set)


def make_session(folder: Path, n: int, faults: Faults, seed: int = 0, scenario: str = "day",
                 geometry: RigGeometry | None = None) -> dict:
    """Write a session; returns the truth (event t -> true frame pixel, pulse of each frame)."""
    g = geometry or small_rig()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    ev_off, fr_off_ns = 1_000, 7_000_000_000
    t_edge = ev_off + 200_000 + np.arange(n) * PERIOD_US
    # events: random pixels, unique times spread over the whole recording
    n_ev = n * 800
    t_ev = np.sort(rng.choice(np.arange(ev_off, t_edge[-1] + PERIOD_US), n_ev, replace=False))
    ev = np.zeros(n_ev, EVENT_DTYPE)
    ev["t"] = t_ev
    ev["x"] = rng.integers(0, g.event.width, n_ev)
    ev["y"] = rng.integers(0, g.event.height, n_ev)
    ev["p"] = rng.integers(0, 2, n_ev)
    trig = []
    for k in range(n):
        if k in faults.missing_edges:
            continue
        trig += [(t_edge[k], 0, 1), (t_edge[k] + 1000, 0, 0)]
        if k in faults.duplicate_edges:
            trig += [(t_edge[k] + 20, 0, 1), (t_edge[k] + 40, 0, 0)]
    tr = np.array(sorted(trig), TRIGGER_DTYPE)
    with EVT3Writer(folder / "events.raw", g.event.width, g.event.height) as w:
        w.write(ev, tr)
    # frames (RGB8): a gradient texture, frame id counts exposures
    fw, fh = g.frame.size
    base = np.zeros((fh, fw, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, fw)[None, :]
    base[..., 1] = np.linspace(0, 255, fh)[:, None]
    frame_pulse, fid = [], 0
    with FramesWriter(folder / "frames.h5", fw, fh, "RGB8") as fwr:
        for k in range(n):
            if k in faults.missed_triggers:
                continue
            fid += 1  # ids count exposures from 0, as the simulated camera's do
            if k in faults.drop_frames:
                continue
            fwr.append(Frame(base.copy(), fid - 1, fr_off_ns + k * PERIOD_US * 1000 + 3_000, 0,
                             EXPOSURE_US, 0.0, False, "RGB8"))
            frame_pulse.append(k)
    csv = TriggersCsvWriter(folder / "triggers.csv")
    for k in range(n):
        csv.write(k, 5_000_000 + k * PERIOD_US)
    csv.close()
    write_json_atomic(folder / "session.json", {
        "schema_version": "1.0", "tool_version": "test", "status": "complete", "sim": True,
        "scenario": scenario, "seed": seed, "duration_s": n * PERIOD_US / 1e6,
        "settings": {"trigger": {"rate_hz": 1e6 / PERIOD_US, "width_us": 1000, "count": n},
                     "frame_camera": {"exposure_us": EXPOSURE_US, "pixel_format": "RGB8"}},
        "wiring": {"event_trigger_channel": 0, "exposure_active_to_event": False},
        "geometry": {"event": list(g.event.size), "frame": list(g.frame.size)},
        "counts": {"pulses_sent": n}})
    px = np.stack([ev["x"], ev["y"]], axis=1).astype(np.float64)
    true_frame_px = g.event_to_frame_pixels(px, np.full(n_ev, DEPTH_M))
    return {"t": t_ev, "frame_px": true_frame_px, "edge_t": t_edge,
            "frame_pulse": np.array(frame_pulse)}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("build")
    g = small_rig()
    calib_path = ground_truth_calibration(g, tmp / "calib.yaml")
    faults = Faults(drop_frames={4}, missed_triggers={9}, missing_edges={13},
                    duplicate_edges={6, 17})
    truth_a = make_session(tmp / "rec" / "day_a", 24, faults, seed=1, scenario="day", geometry=g)
    truth_b = make_session(tmp / "rec" / "night_b", 12, Faults(), seed=2, scenario="night",
                           geometry=g)
    splits = tmp / "splits.yaml"
    splits.write_text("train: [day_a]\nval: [night_b]\n")
    out = tmp / "data"
    sessions = [tmp / "rec" / "day_a", tmp / "rec" / "night_b"]
    runner = CliRunner()
    for split in ("train", "val"):
        args = ["build", "--split", split, "--calib", str(calib_path), "--out", str(out),
                "--splits", str(splits), "--quiet"]
        if split == "train":  # --sessions repeated
            for s in sessions:
                args += ["--sessions", str(s)]
        else:  # --sessions rec/* as a shell expands it
            args += ["--sessions", *map(str, sessions)]
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output + str(res.exception)
    return {"out": out, "calib": calib_path, "truth": truth_a, "truth_b": truth_b, "tmp": tmp,
            "sessions": sessions, "splits": splits}


def test_built_dataset_passes_check(built) -> None:
    problems = check_root(built["out"], alignment=False)
    assert [str(p) for p in problems if p.level == "error"] == []
    res = CliRunner().invoke(main, ["check", str(built["out"]), "--no-alignment"])
    assert res.exit_code == 0, res.output


def test_pairing_survives_faults(built) -> None:
    truth = built["truth"]
    with h5py.File(built["out"] / "train" / "day_a.h5", "r") as f:
        pulses = f["pairs/pulse_index"][()]
        frame_index = f["pairs/frame_index"][()]
        t0 = f["pairs/exposure_t0_us"][()]
        report = json.loads(f["build/report"][()])
    # faults 4 (drop), 9 (missed trigger), 13 (missing edge) are gone; duplicates 6, 17 kept
    assert sorted(set(range(24)) - set(pulses.tolist())) == [4, 9, 13]
    assert np.array_equal(truth["frame_pulse"][frame_index], pulses)  # zero mis-paired frames
    assert np.array_equal(t0, truth["edge_t"][pulses])  # each pair on its own rising edge
    reasons = " | ".join(d["reason"] for d in report["sync"]["dropped"])
    assert "frame dropped" in reasons and "missed the trigger" in reasons
    assert "no trigger edge" in reasons and "duplicate edge" in reasons


def test_events_land_on_true_positions(built) -> None:
    """Each stored event sits within 1 px (mean) of where the true geometry puts it."""
    truth = built["truth"]
    calib = load_calibration(built["calib"])
    with h5py.File(built["out"] / "train" / "day_a.h5", "r") as f:
        off = int(f["t_offset"][()])
        t = f["events/t"][()].astype(np.int64) + off
        x, y = grid_positions(f["rectify_map"][()], f["events/x"][()], f["events/y"][()])
        h, w = f["images"].shape[1:3]
    assert (w, h) == tuple(calib.output_size)
    j = np.searchsorted(truth["t"], t)
    assert np.array_equal(truth["t"][j], t)  # unique times identify the events
    true_al = frame_to_aligned(calib, truth["frame_px"][j])
    err = np.hypot(x - true_al[:, 0], y - true_al[:, 1])
    assert err.mean() < 1.0 and np.percentile(err, 99) < 1.5
    assert t.size > 0.5 * truth["t"].size  # most events are inside the shared view


def test_dsec_style_read(built) -> None:
    """h5py + hdf5plugin and ms_to_idx slicing, as DSEC's EventSlicer does (root `ms_to_idx` and
    `t_offset`), give the pair's events."""
    with h5py.File(built["out"] / "train" / "day_a.h5", "r") as f:
        ev = f["events"]
        off = int(f["t_offset"][()])
        ms = np.asarray(f["ms_to_idx"], dtype="int64")
        i = 5
        t0, t1 = int(f["pairs/event_t0_us"][i]), int(f["pairs/event_t1_us"][i])
        a = int(ms[(t0 - off) // 1000])
        b = int(ms[(t1 - off) // 1000 + 1])
        t = ev["t"][a:b].astype(np.int64) + off
        sel = (t >= t0) & (t < t1)
        i0, i1 = int(f["pairs/event_idx0"][i]), int(f["pairs/event_idx1"][i])
        assert np.array_equal(ev["x"][a:b][sel], ev["x"][i0:i1])
        assert sel.sum() == i1 - i0 > 0


def test_windows_and_conditions(built) -> None:
    with h5py.File(built["out"] / "val" / "night_b.h5", "r") as f:
        assert f.attrs["time_of_day"] == "night" and f.attrs["split"] == "val"
        assert f["pairs/is_night"][()].all()
        e0, e1 = f["pairs/event_t0_us"][()], f["pairs/event_t1_us"][()]
        x0, x1 = f["pairs/exposure_t0_us"][()], f["pairs/exposure_t1_us"][()]
        assert np.all(e1 - e0 == 50_000) and np.all(x1 - x0 == EXPOSURE_US)
        assert np.all((e0 + e1) // 2 == (x0 + x1) // 2)
        assert not f["pairs/has_label"][()].any()  # no ground truth here: events/images only
        assert (f["labels"][0] == 255).all()
    a, b = event_windows(np.array([100]), np.array([300]), "exposure", 0)
    assert (a[0], b[0]) == (100, 300)


def test_index_and_resume(built, tmp_path) -> None:
    idx = json.loads((built["out"] / "train" / "index.json").read_text())
    assert [s["name"] for s in idx["sequences"]] == ["day_a"]
    assert idx["sequences"][0]["num_pairs"] == 21
    before = (built["out"] / "train" / "day_a.h5").stat().st_mtime_ns
    opts = BuildOptions(calib_path=built["calib"], out_dir=built["out"], resume=True,
                        splits_file=built["splits"], progress=False)
    logs: list[str] = []
    build("train", built["sessions"], opts, log=logs.append)
    assert (built["out"] / "train" / "day_a.h5").stat().st_mtime_ns == before
    assert any("up to date" in s for s in logs)
    assert (built["out"] / "splits.yaml").is_file()


def test_bad_session_is_a_clear_error(built, tmp_path) -> None:
    bad = tmp_path / "not_a_session"
    bad.mkdir()
    res = CliRunner().invoke(main, ["build", "--split", "train", "--sessions", str(bad), "--calib",
                                    str(built["calib"]), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "not_a_session" in res.output and "session.json" in res.output


def test_all_splits_in_parallel_with_annotations(built, tmp_path) -> None:
    """--split all --workers 2, seeded split assignment, annotation PNGs picked up by frame id."""
    import cv2

    calib = load_calibration(built["calib"])
    w, h = calib.output_size
    ann = tmp_path / "ann" / "day_a"
    ann.mkdir(parents=True)
    lab = np.full((h, w), 26, np.uint8)  # Cityscapes label id of car -> train id 13
    cv2.imwrite(str(ann / "frame_00000002_labelIds.png"), lab)
    out = tmp_path / "data"
    args = ["build", "--split", "all", "--calib", str(built["calib"]), "--out", str(out),
            "--workers", "2", "--labels", str(tmp_path / "ann"), "--quiet", "--seed", "5"]
    for s in built["sessions"]:
        args += ["--sessions", str(s)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    recorded = (out / "splits.yaml").read_text()
    files = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.h5"))
    assert len(files) == 2 and {f.split("/")[0] for f in files} == {"train", "val"}
    for f in files:
        assert f.split("/")[1].removesuffix(".h5") in recorded
    assert [str(p) for p in check_root(out, alignment=False) if p.level == "error"] == []
    path = next(out.glob("*/day_a.h5"))
    with h5py.File(path, "r") as f:
        has = f["pairs/has_label"][()]
        fids = f["pairs/frame_id"][()]
        assert has.tolist() == (fids == 2).astype(int).tolist()
        assert (f["labels"][int(np.flatnonzero(fids == 2)[0])] == 13).all()
    # a second run re-uses the recorded assignment even with another seed
    res = CliRunner().invoke(main, [a if a != "5" else "7" for a in args] + ["--resume"])
    assert res.exit_code == 0 and sorted(p.relative_to(out).as_posix()
                                         for p in out.glob("*/*.h5")) == files


def test_serial_and_parallel_builds_agree(built, tmp_path) -> None:
    """The image worker process (default) and the one-process path write the same content."""
    out = tmp_path / "serial"
    opts = BuildOptions(calib_path=built["calib"], out_dir=out, splits_file=built["splits"],
                        image_workers=0, threads=1, progress=False)
    build("train", built["sessions"], opts, log=lambda s: None)
    with h5py.File(out / "train" / "day_a.h5", "r") as a, \
            h5py.File(built["out"] / "train" / "day_a.h5", "r") as b:
        for name in ("images", "labels", "events/x", "events/t", "ms_to_idx", "rectify_map",
                     "pairs/event_idx0", "pairs/overexposed_frac", "pairs/has_label"):
            assert np.array_equal(a[name][()], b[name][()]), name
        assert json.loads(b["build/report"][()])["image_workers"] == 2
        assert json.loads(a["build/report"][()])["image_workers"] == 0


def test_tail_loss_is_dropped_unless_first_frame_is_trusted(built, tmp_path) -> None:
    """The last frame never arrived: strict pairing cannot place the frames (0 pairs, a valid
    empty sequence); --trust-first-frame pins frame id 0 to pulse 0 and pairs the rest."""
    g = small_rig()
    session = tmp_path / "rec" / "cut_c"
    truth = make_session(session, 12, Faults(drop_frames={11}), seed=4, geometry=g)
    splits = tmp_path / "splits.yaml"
    splits.write_text("train: [cut_c]\n")
    base = ["build", "--split", "train", "--sessions", str(session), "--calib",
            str(built["calib"]), "--quiet", "--splits", str(splits)]
    strict, trusted = tmp_path / "strict", tmp_path / "trusted"
    assert CliRunner().invoke(main, [*base, "--out", str(strict)]).exit_code == 0
    assert CliRunner().invoke(main, [*base, "--out", str(trusted), "--trust-first-frame"]
                              ).exit_code == 0
    with h5py.File(strict / "train" / "cut_c.h5", "r") as f:
        assert f["images"].shape[0] == 0
        assert "not anchored" in f["build/report"][()].decode()
    assert [str(p) for p in check_root(strict, alignment=False) if p.level == "error"] == []
    with h5py.File(trusted / "train" / "cut_c.h5", "r") as f:
        pulses = f["pairs/pulse_index"][()]
        assert pulses.tolist() == list(range(11))
        assert np.array_equal(truth["frame_pulse"][f["pairs/frame_index"][()]], pulses)
