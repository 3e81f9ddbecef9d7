"""`cacd predict --pre-annotations`: a model's predictions of the unlabelled pairs as label PNGs
that `rpea import-labels` takes back pixel for pixel (label ids or train ids; unsure pixels left
unannotated), named as `rpea export-annotation` names the pairs; a session's pre-annotations equal
those of its `rpea build` output and import into it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dataset.annotate import (
    PRE_ANNOTATION_IDS,
    PRE_ANNOTATION_MANIFEST,
    PreAnnotationWriter,
    export_annotation,
    import_labels,
    train_to_ids,
)
from dataset.cli import main as rpea
from dataset.labels import lookup_table
from dataset.reader import RPEADataset
from dataset.rpea_format import IGNORE, NUM_CLASSES, edit_sequence, sha256_file, update_index
from dataset.synthetic import SynthConfig, write_dataset
from model.cli import main as cacd
from model.predict import predict_ids, predict_ids_confidence

UNLABELLED = (0, 2)  # the pairs of the test sequence whose labels are removed (pair 1 keeps its)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: fast on a loaded 2-core machine, and the same float sums as the CLI's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unlabel(data: Path, split: str, pairs: tuple[int, ...]) -> None:
    """Make `pairs` of the split's first sequence unlabelled, as a lab's recordings are."""
    index = json.loads((data / split / "index.json").read_text())
    s = index["sequences"][0]
    path = data / split / s["file"]
    with edit_sequence(path) as f:
        has = f["pairs/has_label"][()]
        for i in pairs:
            has[i] = 0
            f["labels"][i] = IGNORE
        f["pairs/has_label"][...] = has
        labelled = int(has.sum())
    update_index(data / split, {**s, "num_labelled": labelled, "sha256": sha256_file(path)})


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A tiny dataset (one val sequence of 3 pairs, pairs 0 and 2 unlabelled) and an untrained
    checkpoint."""
    from model.cacd import CACDNet, NetConfig
    from model.checkpoint import save_model

    tmp = tmp_path_factory.mktemp("pre_annotations")
    data = write_dataset(tmp / "data", {"val": 1},
                         SynthConfig(height=32, width=48, pairs_per_sequence=3, substeps=2))
    _unlabel(data, "val", UNLABELLED)
    torch.manual_seed(0)
    (tmp / "run").mkdir()
    save_model(CACDNet(NetConfig(proj_dim=16)), tmp / "run" / "best.safetensors")
    return {"data": data, "run": tmp / "run"}


def _predictions(run: Path, data: Path, split: str) -> dict[tuple[str, int], tuple]:
    """(sequence name, frame id) -> (train ids, confidence, pair index) of every unlabelled pair,
    computed directly (not through the CLI)."""
    from model.checkpoint import load_model

    net = load_model(run / "best.safetensors", "cpu").eval()
    names = {s["file"]: s["name"] for s in
             json.loads((data / split / "index.json").read_text())["sequences"]}
    ds = RPEADataset(data, split, labelled_only=False)
    out = {}
    for idx, (s, i) in enumerate(ds.items):
        seq = ds.sequences[s]
        if seq.pairs["has_label"][i]:
            continue
        sample = ds[idx]
        ids, conf = predict_ids_confidence(net, sample["image"], sample["events"],
                                           torch.device("cpu"))
        assert np.array_equal(ids, predict_ids(net, sample["image"], sample["events"],
                                               torch.device("cpu")))  # the panels' prediction
        out[(names[seq.path.name], int(seq.pairs["frame_id"][i]))] = (ids, conf, i)
    return out


def _predict(args: list[str]) -> dict:
    res = CliRunner().invoke(cacd, ["predict", *args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _imported(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and has_label of the split's first sequence."""
    ds = RPEADataset(data, split, labelled_only=False)
    seq = ds.sequences[0]
    return np.stack([seq.label(i) for i in range(seq.num_pairs)]), seq.pairs["has_label"].copy()


def test_ids_invert_the_import_tables() -> None:
    """Every train id and ignore, written in either id kind, reads back as itself."""
    train = np.array([*range(NUM_CLASSES), IGNORE], np.uint8)
    for ids, (_suffix, unannotated) in PRE_ANNOTATION_IDS.items():
        values = train_to_ids(train, ids)
        assert np.array_equal(lookup_table(ids)[values], train), ids
        assert values[-1] == unannotated
    assert train_to_ids(np.array([13]), "label").tolist() == [26]  # car: Cityscapes label id 26
    with pytest.raises(ValueError, match="not train ids"):
        train_to_ids(np.array([19, 0]), "train")


def test_predict_pre_annotations_import_back_pixel_for_pixel(made: dict[str, Path],
                                                              tmp_path: Path) -> None:
    want = _predictions(made["run"], made["data"], "val")
    assert sorted(i for _, _, i in want.values()) == list(UNLABELLED)
    assert len(np.unique(np.concatenate([w[0].ravel() for w in want.values()]))) > 2  # not trivial
    pre = tmp_path / "pre"
    doc = _predict(["--checkpoint", str(made["run"]), "--data", str(made["data"]), "--split",
                    "val", "--pre-annotations", str(pre)])
    assert doc == {"written": 0, "pre_annotations": str(pre), "labels": len(want)}
    assert not (made["run"] / "predictions").exists()  # no panels unless --out

    # the layout: <pre>/<sequence>/frame_<id>_labelIds.png, one per unlabelled pair, + manifest
    files = sorted(p.relative_to(pre).as_posix() for p in pre.rglob("*") if p.is_file())
    assert files == sorted([f"{seq}/frame_{fid:08d}_labelIds.png" for seq, fid in want]
                           + [PRE_ANNOTATION_MANIFEST])
    manifest = json.loads((pre / PRE_ANNOTATION_MANIFEST).read_text())
    assert "not ground truth" in manifest["what"] and manifest["ids"] == "label"
    assert manifest["checkpoint"] == str(made["run"] / "best.safetensors")
    assert manifest["checkpoint_sha256"] == sha256_file(made["run"] / "best.safetensors")
    assert manifest["source"] == {"data": str(made["data"]), "split": "val"}
    assert manifest["import"] == f"rpea import-labels {made['data']} --labels {pre} --ids label"
    (seq,) = {s for s, _ in want}
    assert manifest["sequences"][seq]["frame_ids"] == sorted(f for _, f in want)
    assert manifest["sequences"][seq]["grid_wh"] == [48, 32]

    # the names are those of rpea export-annotation: the same folders and frame_<id> stems
    export_annotation(made["data"], tmp_path / "annot", progress=False)
    exported = {p.relative_to(tmp_path / "annot").as_posix().removesuffix("_rgb.png")
                for p in (tmp_path / "annot").rglob("*_rgb.png")}
    assert {f.removesuffix("_labelIds.png") for f in files[:-1]} <= exported

    # rpea import-labels (its defaults) into a copy: the predictions, pixel for pixel
    copy = tmp_path / "data"
    shutil.copytree(made["data"], copy)
    before, _ = _imported(copy, "val")
    res = CliRunner().invoke(rpea, ["import-labels", str(copy), "--labels", str(pre)])
    assert res.exit_code == 0, res.output
    assert f"{seq}: {len(want)} labels imported" in res.output
    labels, has = _imported(copy, "val")
    assert has.tolist() == [1, 1, 1]
    for ids, _conf, i in want.values():
        assert np.array_equal(labels[i], ids), i
    assert np.array_equal(labels[1], before[1])  # the labelled pair is untouched


def test_min_confidence_leaves_unsure_pixels_to_the_annotator(made: dict[str, Path],
                                                              tmp_path: Path) -> None:
    want = _predictions(made["run"], made["data"], "val")
    conf = np.sort(np.unique(np.concatenate([w[1].ravel() for w in want.values()])))
    k = len(conf) // 2
    threshold = float((conf[k - 1] + conf[k]) / 2)  # between two values: no tie with any pixel
    pre = tmp_path / "pre"
    _predict(["--checkpoint", str(made["run"]), "--data", str(made["data"]), "--split", "val",
              "--pre-annotations", str(pre), "--label-ids", "train", "--min-confidence",
              repr(threshold), "--out", str(tmp_path / "figs")])
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == \
        [f"day_0000_{i:05d}.png" for i in UNLABELLED]  # panels of the same pairs with --out
    unsure = 0
    for (seq, fid), (ids, c, _i) in want.items():
        png = cv2.imread(str(pre / seq / f"frame_{fid:08d}_trainIds.png"), cv2.IMREAD_UNCHANGED)
        expect = np.where(c < threshold, IGNORE, ids)
        assert png is not None and png.dtype == np.uint8 and np.array_equal(png, expect), fid
        unsure += int((c < threshold).sum())
    assert 0 < unsure < sum(w[0].size for w in want.values())
    manifest = json.loads((pre / PRE_ANNOTATION_MANIFEST).read_text())
    assert manifest["min_confidence"] == threshold and manifest["not_annotated_value"] == IGNORE
    assert manifest["sequences"]["day_0000"]["unsure_pixels"] == unsure

    # through the import function (train ids): predictions where sure, ignore where not
    copy = tmp_path / "data"
    shutil.copytree(made["data"], copy)
    assert import_labels(copy, pre, ids="train", progress=False) == {"day_0000": len(want)}
    labels, _ = _imported(copy, "val")
    for ids, c, i in want.values():
        assert np.array_equal(labels[i], np.where(c < threshold, IGNORE, ids)), i


def test_writer_refuses_a_folder_with_files_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "frame_00000001_labelIds.png").write_bytes(b"corrected by hand")
    with pytest.raises(FileExistsError, match="not empty"), PreAnnotationWriter(busy):
        pass
    assert [p.name for p in busy.iterdir()] == ["frame_00000001_labelIds.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="boom"), PreAnnotationWriter(empty) as w:
        w.add("seq", 7, np.zeros((4, 6), np.uint8))
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]  # no staging left
    assert list(empty.iterdir()) == []
    with PreAnnotationWriter(empty, ids="train") as w:  # an empty folder is replaced
        w.add("seq", 7, np.full((4, 6), 18, np.uint8))
    assert sorted(p.relative_to(empty).as_posix() for p in empty.rglob("*.png")) == \
        ["seq/frame_00000007_trainIds.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]


# --- a recorded session (no ground truth, as a lab's) ----------------------------------------------

@pytest.fixture(scope="module")
def lab_session(tmp_path_factory, made) -> dict[str, Path]:
    """A short simulated session copied without its ground truth (a real recording's state),
    its true calibration, and the copy built by `rpea build` with that calibration."""
    pytest.importorskip("rig.sim.world", reason="simulated rig (rig.sim.world) not available")
    from dataset.demo import ground_truth_calibration
    from rig import recorder
    from rig.ground_truth import GROUND_TRUTH_DIR
    from rig.session import SessionReader
    from rig.sim.world import SimConfig, SimRig

    def open_small(opts: recorder.RecordOptions) -> recorder.RigDevices:  # both sensors x0.25
        rig = SimRig(SimConfig(scenario=opts.scenario, seed=opts.seed, scale=0.25))
        return recorder.RigDevices(rig.event_camera, rig.frame_camera, rig.trigger, sim_rig=rig)

    tmp = tmp_path_factory.mktemp("pre_annotations_session")
    sim = tmp / "sim" / "lab_day"
    with pytest.MonkeyPatch.context() as mp:  # `rig record` on the simulated rig, 6 pulses
        mp.setattr(recorder, "open_devices", open_small)
        summary = recorder.record_session(recorder.RecordOptions(
            out_dir=sim, duration_s=0.3, rate_hz=20.0, scenario="day", seed=5, show_status=False))
    assert summary.status == "complete", summary.detail
    calib = ground_truth_calibration(SessionReader(sim).ground_truth_geometry(),
                                     tmp / "calib.yaml")
    session = tmp / "rec" / "lab_day"
    shutil.copytree(sim, session, ignore=shutil.ignore_patterns(GROUND_TRUTH_DIR))
    assert SessionReader(session).ground_truth is None
    res = CliRunner().invoke(rpea, ["build", "--split", "all", "--sessions", str(session),
                                    "--calib", str(calib), "--out", str(tmp / "data"), "--quiet",
                                    "--serial"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    (split,) = [d.name for d in (tmp / "data").iterdir() if (d / "index.json").is_file()]
    return {"session": session, "calib": calib, "data": tmp / "data", "split": Path(split)}


def test_session_pre_annotations_are_the_built_sessions_and_import(
        made: dict[str, Path], lab_session: dict[str, Path], tmp_path: Path) -> None:
    s = lab_session
    a = _predict(["--checkpoint", str(made["run"]), "--session", str(s["session"]), "--calib",
                  str(s["calib"]), "--pre-annotations", str(tmp_path / "A")])
    b = _predict(["--checkpoint", str(made["run"]), "--data", str(s["data"]), "--split",
                  str(s["split"]), "--pre-annotations", str(tmp_path / "B")])
    names = sorted(p.relative_to(tmp_path / "A").as_posix() for p in (tmp_path / "A").rglob("*.png"))
    assert a["labels"] == b["labels"] == len(names) >= 5
    assert names == sorted(p.relative_to(tmp_path / "B").as_posix()
                           for p in (tmp_path / "B").rglob("*.png"))
    assert all(n.startswith("lab_day/frame_") for n in names)  # the sequence rpea build names
    for n in names:  # the same frame ids, grid and predictions: byte-equal PNGs
        assert (tmp_path / "A" / n).read_bytes() == (tmp_path / "B" / n).read_bytes(), n
    manifest = json.loads((tmp_path / "A" / PRE_ANNOTATION_MANIFEST).read_text())
    assert manifest["source"]["session"] == str(s["session"])
    assert manifest["source"]["calibration_sha256"] == sha256_file(s["calib"])
    assert "rpea build" in manifest["before_import"]

    res = CliRunner().invoke(rpea, ["import-labels", str(s["data"]), "--labels", str(tmp_path / "A")])
    assert res.exit_code == 0, res.output
    labels, has = _imported(s["data"], str(s["split"]))
    assert has.all()
    frame_ids = RPEADataset(s["data"], str(s["split"]), labelled_only=False).sequences[0] \
        .pairs["frame_id"].tolist()
    for n in names:  # each file went to the pair of its frame id, as the predicted train ids
        png = cv2.imread(str(tmp_path / "A" / n), cv2.IMREAD_UNCHANGED)
        i = frame_ids.index(int(n.split("frame_")[1][:8]))
        assert np.array_equal(lookup_table("label")[png], labels[i]), n
