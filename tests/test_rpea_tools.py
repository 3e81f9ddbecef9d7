"""`rpea check / stats / show / export-annotation / import-labels` and the format writer, on a small
synthetic dataset written with the real `SequenceWriter` (no simulator needed).

Images show random rectangles; each pair's events sit on the rectangle edges (where a moving edge
would fire), so the alignment check has something to measure.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from click.testing import CliRunner

from dataset.cli import main
from dataset.labels import LabelError, lookup_table
from dataset.rpea_check import check_root
from dataset.rpea_format import SequenceWriter, identity_rectify_map, update_index
from dataset.splits import SessionKey, SplitError, assign_splits, load_splits_file

# --- a small synthetic dataset: rectangles, events on their edges (shift_px misaligns them)

H, W = 64, 96


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = np.full((H, W, 3), 60, np.uint8)
    label = np.full((H, W), 0, np.uint8)  # road
    for _ in range(4):
        x0, y0 = int(rng.integers(0, W - 20)), int(rng.integers(0, H - 16))
        w, h = int(rng.integers(8, 20)), int(rng.integers(6, 16))
        img[y0:y0 + h, x0:x0 + w] = rng.integers(120, 255, 3)
        label[y0:y0 + h, x0:x0 + w] = int(rng.choice([2, 8, 13, 11]))
    img[:6] = 255  # an over-exposed band
    gy, gx = np.gradient(img.astype(np.float32).mean(-1))
    edges = np.argwhere(np.hypot(gx, gy) > 10)
    return img, label, edges


def write_sequence(path: Path, n_pairs: int = 6, seed: int = 0, shift_px: int = 0,
                   split: str = "train", labelled: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    t_base = 5_000_000
    period = 50_000
    exp = 4_000
    with SequenceWriter(path, H, W) as wr:
        scenes = [_scene(rng) for _ in range(n_pairs)]
        for k, (_, _, edges) in enumerate(scenes):
            mid = t_base + k * period + exp // 2
            m = edges.shape[0] * 3
            pick = edges[rng.integers(0, edges.shape[0], m)]
            t = np.sort(rng.integers(mid - period // 2, mid + period // 2, m))
            x = np.clip(pick[:, 1] + shift_px, 0, W - 1)
            y = np.clip(pick[:, 0] + shift_px, 0, H - 1)
            wr.append_events(x.astype(np.uint16), y.astype(np.uint16), t, rng.integers(0, 2, m))
        wr.finish_events()
        t0 = t_base + np.arange(n_pairs) * period
        ev0 = t0 + exp // 2 - period // 2
        ev1 = ev0 + period
        wr.create_pairs(n_pairs, with_masks=True)
        over = np.zeros(n_pairs, np.float32)
        for i, (img, lab, _) in enumerate(scenes):
            wr.write_image(i, img)
            if labelled:
                wr.write_label(i, lab)
            wr.write_mask(i, (lab == 13).astype(np.uint16))
            over[i] = float((img.max(-1) > 0.9 * 255).mean())
        wr.write_pairs({
            "frame_id": np.arange(n_pairs) + 10, "frame_t_us": t0, "exposure_t0_us": t0,
            "exposure_t1_us": t0 + exp, "event_t0_us": ev0, "event_t1_us": ev1,
            "event_idx0": wr.event_index(ev0), "event_idx1": wr.event_index(ev1),
            "has_label": np.full(n_pairs, int(labelled), np.uint8), "overexposed_frac": over,
            "underexposed_frac": np.zeros(n_pairs, np.float32),
            "is_night": np.zeros(n_pairs, np.uint8)})
        wr.write_calib("%YAML:1.0\n---\nmodel: homography\n")
        wr.write_rectify_map(identity_rectify_map(H, W))
        sha = wr.commit({"sequence": path.stem, "scene": "urban", "time_of_day": "day",
                         "split": split, "source_session": path.stem})
    entry = {"name": path.stem, "file": path.name, "num_pairs": n_pairs,
             "num_labelled": n_pairs if labelled else 0, "sha256": sha, "time_of_day": "day",
             "scene": "urban", "session": path.stem}
    update_index(path.parent, entry)
    return entry


def write_dataset(root: Path, **kw) -> Path:
    write_sequence(root / "train" / "seq_a.h5", seed=1, split="train", **kw)
    write_sequence(root / "val" / "seq_b.h5", seed=2, split="val", **kw)
    return root


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


def errors(root: Path, **kw) -> list[str]:
    return [p.message for p in check_root(root, **kw) if p.level == "error"]


def test_clean_dataset_passes_check(dataset: Path) -> None:
    assert errors(dataset) == []
    res = CliRunner().invoke(main, ["check", str(dataset)])
    assert res.exit_code == 0, res.output


def test_check_catches_misaligned_events(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", shift_px=4)
    errs = errors(root)
    assert any("misaligned" in e for e in errs)
    assert CliRunner().invoke(main, ["check", str(root)]).exit_code == 1


def test_check_catches_checksum_and_count_mismatch(dataset: Path) -> None:
    idx_path = dataset / "train" / "index.json"
    idx = json.loads(idx_path.read_text())
    idx["sequences"][0]["num_pairs"] += 1
    idx["sequences"][0]["sha256"] = "0" * 64
    idx_path.write_text(json.dumps(idx))
    errs = errors(dataset, alignment=False)
    assert any("sha256" in e for e in errs) and any("index says 7 pairs" in e for e in errs)


def test_check_catches_bad_event_slice_and_ms_to_idx(dataset: Path) -> None:
    path = dataset / "train" / "seq_a.h5"
    with h5py.File(path, "r+") as f:
        f["pairs/event_idx1"][2] += 5
        f["ms_to_idx"][3] += 1
    errs = errors(dataset, alignment=False, checksums=False)
    assert any("event slice" in e for e in errs)
    assert any("ms_to_idx" in e for e in errs)


def test_check_catches_labels_and_schema(dataset: Path) -> None:
    path = dataset / "val" / "seq_b.h5"
    with h5py.File(path, "r+") as f:
        lab = f["labels"][0]
        lab[0, 0] = 40
        f["labels"][0] = lab
        del f["pairs/is_night"]
    errs = errors(dataset, alignment=False, checksums=False)
    assert any("pairs/is_night missing" in e for e in errs)


def test_check_catches_window_outside_exposure(dataset: Path) -> None:
    path = dataset / "train" / "seq_a.h5"
    with h5py.File(path, "r+") as f:
        f["pairs/exposure_t0_us"][1] += 10_000_000
        f["pairs/exposure_t1_us"][1] += 10_000_000
    assert any("exposure mid-time" in e for e in errors(dataset, alignment=False, checksums=False))


def test_writer_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "s" / "x.h5"
    with pytest.raises(RuntimeError), SequenceWriter(target, H, W) as wr:
        wr.append_events(np.zeros(3, np.uint16), np.zeros(3, np.uint16), np.arange(3), np.ones(3))
        raise RuntimeError("crash")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_ms_to_idx_is_dsec_convention(dataset: Path) -> None:
    with h5py.File(dataset / "train" / "seq_a.h5", "r") as f:
        t = f["events/t"][()].astype(np.int64)
        ms = f["ms_to_idx"][()]
    for m in (0, 1, 17, 100, len(ms) - 1):
        assert ms[m] == np.searchsorted(t, 1000 * m, side="left")


def test_stats_writes_figures_and_tables(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats"
    res = CliRunner().invoke(main, ["stats", str(dataset), "--out", str(out)])
    assert res.exit_code == 0, res.output
    st = json.loads((out / "stats.json").read_text())
    assert st["pairs"] == 12 and st["labelled_pairs"] == 12
    with h5py.File(dataset / "train" / "seq_a.h5", "r") as f:
        road = sum(int((f["labels"][i] == 0).sum()) for i in range(6))
    with h5py.File(dataset / "val" / "seq_b.h5", "r") as f:
        road += sum(int((f["labels"][i] == 0).sum()) for i in range(6))
    assert st["class_pixels"]["road"] == road
    for name in ("class_pixels.png", "scene_time.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 100
    assert "| road |" in (out / "stats.md").read_text()


@pytest.mark.parametrize("args", [["stats"], ["show", "--index", "0"],
                                  ["export-annotation", "--out", "{tmp}/annot"], ["check"]])
def test_tools_on_a_folder_without_a_dataset_say_so_once(tmp_path: Path, args: list[str]) -> None:
    """One error line naming the folder once (no traceback, no path printed twice), and nothing
    left behind in it (`rpea stats` made <root>/stats before finding out)."""
    empty = tmp_path / "emptydir"
    empty.mkdir()
    res = CliRunner().invoke(main, [args[0], str(empty), *(a.format(tmp=tmp_path) for a in args[1:])])
    assert res.exit_code != 0
    assert not isinstance(res.exception, FileNotFoundError), res.exception
    assert "no index.json" in res.output
    assert res.output.count(str(empty)) == 1, res.output
    assert list(empty.iterdir()) == []


def test_show_and_export_annotation(dataset: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    res = CliRunner().invoke(main, ["show", str(dataset), "--index", "7", "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert "seq_b" in res.output  # index 7 = second sequence, pair 1
    img = cv2.imread(str(png))
    assert img.shape[1] > 3 * W
    out = tmp_path / "annot"
    res = CliRunner().invoke(main, ["export-annotation", str(dataset), "--out", str(out),
                                    "--split", "train"])
    assert res.exit_code == 0, res.output
    files = sorted((out / "seq_a").glob("*_annot.png"))
    assert len(files) == 6 and files[0].name == "frame_00000010_annot.png"
    assert cv2.imread(str(files[0])).shape[1] >= 3 * W


def test_import_labels_roundtrip(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_sequence(root / "train" / "seq_a.h5", labelled=False)
    ann = tmp_path / "ann" / "seq_a"
    ann.mkdir(parents=True)
    lab = np.full((H, W), 7, np.uint8)  # Cityscapes label id 7 = road = train id 0
    lab[:10] = 26  # car -> 13
    lab[10:12] = 4  # static -> ignore
    cv2.imwrite(str(ann / "frame_00000012_labelIds.png"), lab)
    res = CliRunner().invoke(main, ["import-labels", str(root), "--labels", str(tmp_path / "ann")])
    assert res.exit_code == 0, res.output
    with h5py.File(root / "train" / "seq_a.h5", "r") as f:
        got = f["labels"][2]
        assert f["pairs/has_label"][()].tolist() == [0, 0, 1, 0, 0, 0]
    assert (got[:10] == 13).all() and (got[10:12] == 255).all() and (got[12:] == 0).all()
    assert errors(root, alignment=False) == []  # index sha/num_labelled updated


def test_import_labels_rejects_bad_files(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_sequence(root / "train" / "seq_a.h5", labelled=False)
    before = (root / "train" / "seq_a.h5").read_bytes()
    ann = tmp_path / "ann" / "seq_a"
    ann.mkdir(parents=True)
    cv2.imwrite(str(ann / "frame_00000010.png"), np.zeros((H + 1, W), np.uint8))
    res = CliRunner().invoke(main, ["import-labels", str(root), "--labels", str(tmp_path / "ann")])
    assert res.exit_code != 0 and "frame_00000010.png" in res.output and "size" in res.output
    (ann / "frame_00000010.png").unlink()
    cv2.imwrite(str(ann / "frame_00000011.png"), np.full((H, W), 30, np.uint8))
    res = CliRunner().invoke(main, ["import-labels", str(root), "--labels", str(tmp_path / "ann"),
                                    "--ids", "train"])
    assert res.exit_code != 0 and "frame_00000011.png" in res.output and "[30]" in res.output
    assert (root / "train" / "seq_a.h5").read_bytes() == before


def test_label_tables() -> None:
    lut = lookup_table("label")
    assert lut[7] == 0 and lut[33] == 18 and lut[0] == 255 and lut[40] == -1
    with pytest.raises(LabelError):
        lookup_table("label", {3: 40})


def test_split_assignment_is_deterministic_and_balanced() -> None:
    keys = [SessionKey(f"{tod}_{i:02d}", tod, scene) for tod in ("day", "night")
            for scene in ("urban", "highway") for i in range(5)]
    a = assign_splits(keys, seed=3)
    assert a == assign_splits(list(reversed(keys)), seed=3)
    assert a != assign_splits(keys, seed=4)
    val = [k for k in keys if a[k.name] == "val"]
    assert len(val) == 4
    assert {(k.time_of_day, k.scene) for k in val} == {("day", "urban"), ("day", "highway"),
                                                        ("night", "urban"), ("night", "highway")}
    two = assign_splits([SessionKey("a", "day", "urban"), SessionKey("b", "night", "urban")])
    assert sorted(two.values()) == ["train", "val"]


def test_sessions_recorded_later_fill_the_held_out_split() -> None:
    """One session built first goes to train; a second one recorded later must fill val (the
    quota counts the sessions assigned before), and earlier assignments never move."""
    first = assign_splits([SessionKey("a", "day", "urban")])
    assert first == {"a": "train"}
    later = assign_splits([SessionKey("b", "day", "urban")], existing=first)
    assert later == {"b": "val"}
    keys = [SessionKey(f"s{i:02d}", "day", "urban") for i in range(20)]
    old = assign_splits(keys[:10], seed=1)
    new = assign_splits(keys[10:], seed=1, existing=old)
    assert set(new) == {k.name for k in keys[10:]}
    assert sum(v == "val" for v in (*old.values(), *new.values())) == 4  # 20 % of 20


def test_splits_file_validation(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("train: [a, b]\nval: [c]\n")
    assert load_splits_file(p) == {"a": "train", "b": "train", "c": "val"}
    p.write_text("train: [a]\nval: [a]\n")
    with pytest.raises(SplitError, match="both"):
        load_splits_file(p)
    p.write_text("training: [a]\n")
    with pytest.raises(SplitError, match="unknown split"):
        load_splits_file(p)
