"""The figures of `rpea stats` (class pixels per condition, scene / time, exposure per condition)
and of `cacd eval` (per-class IoU table, confusion matrix PNG): written, PNGs of a sensible size,
and their numbers right.

The dataset here has known brightness: every image is one or two flat grey levels, so each
pair's mean HSV V, its over- / under-exposed share and the V histogram are known exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dataset.conditions import exposure_fractions
from dataset.rpea_format import SequenceWriter, identity_rectify_map, update_index
from dataset.stats import EXTREME_PAIR_FRAC, collect

H, W = 16, 24
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(top: int, bottom: int) -> np.ndarray:
    """Grey image: the top half at level `top`, the bottom half at `bottom`."""
    img = np.empty((H, W, 3), np.uint8)
    img[: H // 2] = top
    img[H // 2:] = bottom
    return img


#: sequence name -> (is night, [(top level, bottom level) per pair])
PAIRS = {
    "day_a": (False, [(200, 200), (255, 100)]),  # plain day; half over-exposed
    "night_a": (True, [(10, 10), (30, 30)]),  # fully under-exposed; dark but not under-exposed
}
ROAD_ROWS = 4  # the top rows of every label map are road (0), the rest sky (10)


def _write_sequence(path: Path, night: bool, levels: list[tuple[int, int]]) -> None:
    n = len(levels)
    with SequenceWriter(path, H, W) as wr:
        wr.append_events(np.zeros(1, np.uint16), np.zeros(1, np.uint16), np.zeros(1, np.int64),
                         np.ones(1, np.uint8))
        wr.finish_events()
        wr.create_pairs(n, with_masks=False)
        over, under = np.zeros(n, np.float32), np.zeros(n, np.float32)
        label = np.full((H, W), 10, np.uint8)
        label[:ROAD_ROWS] = 0
        for i, (top, bottom) in enumerate(levels):
            img = _image(top, bottom)
            wr.write_image(i, img)
            wr.write_label(i, label)
            over[i], under[i] = exposure_fractions(img)
        t = np.arange(n, dtype=np.int64) * 50_000
        wr.write_pairs({
            "frame_id": np.arange(n), "frame_t_us": t, "exposure_t0_us": t,
            "exposure_t1_us": t + 1000, "event_t0_us": t, "event_t1_us": t + 1000,
            "event_idx0": wr.event_index(t), "event_idx1": wr.event_index(t + 1000),
            "has_label": np.ones(n, np.uint8), "overexposed_frac": over,
            "underexposed_frac": under, "is_night": np.full(n, int(night), np.uint8)})
        wr.write_calib("%YAML:1.0\n---\nmodel: homography\n")
        wr.write_rectify_map(identity_rectify_map(H, W))
        tod = "night" if night else "day"
        sha = wr.commit({"sequence": path.stem, "scene": "urban", "time_of_day": tod,
                         "split": "train", "source_session": path.stem})
    update_index(path.parent, {"name": path.stem, "file": path.name, "num_pairs": n,
                               "num_labelled": n, "sha256": sha, "time_of_day": tod,
                               "scene": "urban", "session": path.stem})


@pytest.fixture()
def grey_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name, (night, levels) in PAIRS.items():
        _write_sequence(root / "train" / f"{name}.h5", night, levels)
    return root


def test_exposure_statistics_of_known_brightness(grey_data: Path) -> None:
    ex = collect(grey_data, progress=False).to_dict()["exposure"]
    cond = ex["conditions"]
    assert {c: cond[c]["pairs"] for c in cond} == {
        "all": 4, "day": 2, "night": 2, "over-exposed": 1, "under-exposed": 1}
    assert cond["day"]["frame_mean_v"]["mean"] == pytest.approx((200 / 255 + 177.5 / 255) / 2)
    assert cond["night"]["frame_mean_v"]["mean"] == pytest.approx((10 + 30) / 2 / 255)
    assert cond["over-exposed"]["frame_mean_v"]["mean"] == pytest.approx(177.5 / 255)
    # half of the (255 | 100) pair's pixels are over-exposed; the level-10 frame is all under
    assert cond["day"]["mean_overexposed_frac"] == pytest.approx(0.25)
    assert cond["over-exposed"]["mean_overexposed_frac"] == pytest.approx(0.5)
    assert cond["under-exposed"]["mean_underexposed_frac"] == pytest.approx(1.0)
    assert cond["night"]["mean_underexposed_frac"] == pytest.approx(0.5)
    # V histogram in 8-level bins: day = levels 200 (half), 255 (quarter), 100 (quarter)
    day = np.asarray(cond["day"]["pixel_v_hist"])
    assert day.sum() == pytest.approx(1.0)
    assert day[200 // 8] == pytest.approx(0.5) and day[255 // 8] == pytest.approx(0.25)
    assert day[100 // 8] == pytest.approx(0.25)
    night_hist = np.asarray(cond["night"]["frame_mean_v_hist"])  # 0.05-wide bins over [0, 1]
    assert night_hist[0] == 1 and night_hist[2] == 1 and night_hist.sum() == 2  # V 0.04, 0.12
    assert ex["alpha"] == 0.1 and ex["beta"] == 0.9 and ex["extreme_pair_frac"] == EXTREME_PAIR_FRAC


def test_class_pixels_per_condition(grey_data: Path) -> None:
    d = collect(grey_data, progress=False).to_dict()
    road_per_pair = ROAD_ROWS * W
    assert d["class_pixels"]["road"] == 4 * road_per_pair
    for c in ("day", "night"):
        by = d["class_pixels_by_condition"][c]
        assert by["labelled_pairs"] == 2
        assert by["class_pixels"]["road"] == 2 * road_per_pair
        assert by["class_pixels"]["sky"] == 2 * (H - ROAD_ROWS) * W


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    img = cv2.imread(str(path))
    assert img is not None, path
    return img.shape[1], img.shape[0]


def test_rpea_stats_writes_the_figures_and_the_numbers(grey_data: Path, tmp_path: Path) -> None:
    from dataset.cli import main

    out = tmp_path / "stats"
    res = CliRunner().invoke(main, ["stats", str(grey_data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("class_pixels", "scene_time", "exposure"):
        w, h = _png_size(out / f"{name}.png")
        assert 600 <= w <= 3000 and 200 <= h <= 2000, (name, w, h)
    assert sorted(p.name for p in out.iterdir()) == [  # no temporary file left
        "class_pixels.png", "exposure.png", "scene_time.png", "stats.json", "stats.md"]
    st = json.loads((out / "stats.json").read_text())
    assert st["exposure"]["conditions"]["night"]["pairs"] == 2
    md = (out / "stats.md").read_text()
    assert re.search(r"\| over-exposed \| 1 \| 0\.696 \|", md), md  # 177.5 / 255
    assert "| class | pixels | fraction | day | night |" in md
    assert "exposure.png" in res.output


def test_rpea_stats_that_fails_leaves_no_folder(grey_data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import dataset.figures
    from dataset.cli import main

    def broken(st: object) -> None:
        raise OSError("disk full")

    monkeypatch.setitem(dataset.figures.FIGURES, "exposure", broken)
    out = tmp_path / "stats"
    res = CliRunner().invoke(main, ["stats", str(grey_data), "--out", str(out)])
    assert res.exit_code != 0
    assert not out.exists()


# --- cacd eval ------------------------------------------------------------------------------------

def test_row_normalised_rows_sum_to_one_for_present_classes() -> None:
    from model.figures import row_normalised

    m = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    r = row_normalised(m)
    assert np.allclose(r[[0, 2]].sum(1), 1.0)
    assert np.isnan(r[1]).all()
    assert r[0, 1] == pytest.approx(0.2)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`cacd eval` of an untrained network on a tiny synthetic dataset (day and night)."""
    from dataset.synthetic import SynthConfig, write_dataset
    from model.cacd import CACDNet, NetConfig
    from model.checkpoint import save_model
    from model.cli import main

    root = tmp_path_factory.mktemp("eval")
    data = write_dataset(root / "data", {"train": 1, "val": 2},
                         SynthConfig(height=32, width=48, pairs_per_sequence=2, substeps=2))
    run = root / "run"
    run.mkdir()
    save_model(CACDNet(NetConfig(proj_dim=16)), run / "best.safetensors")
    out = root / "metrics" / "E.json"
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(run), "--data", str(data),
                                    "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return {"output": res.output, "json": out, "png": out.with_name("E_confusion.png"),
            "run": run, "data": data}


def test_eval_table_holds_the_json_numbers(eval_run: dict) -> None:
    doc = json.loads(eval_run["json"].read_text())
    lines = eval_run["output"].splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("class "))
    columns = lines[head].split()[1:]
    assert columns == ["overall", "day", "night", "under", "over"][:len(columns)]
    assert {"overall", "day", "night"} <= set(columns)  # the tiny set has day and night pairs
    names = doc["confusion"]["classes"]
    assert len(names) == 19
    rows = {}
    for line in lines[head + 2: head + 2 + len(names)]:
        cells = line.rsplit(maxsplit=len(columns))
        rows[cells[0]] = cells[1:]
    assert list(rows) == names
    for name, cells in rows.items():
        for c, cell in zip(columns, cells, strict=True):
            value = doc[c]["per_class"].get(name)
            assert cell == ("-" if value is None else f"{value:.1f}"), (name, c)
    miou = next(line for line in lines[head:] if line.startswith("mIoU ") and len(line.split())
                == len(columns) + 1)
    assert miou.split()[1] == f"{doc['overall']['mIoU']:.1f}"


def test_eval_writes_the_confusion_png_and_matrix(eval_run: dict) -> None:
    from model.figures import row_normalised

    doc = json.loads(eval_run["json"].read_text())
    w, h = _png_size(eval_run["png"])
    assert 800 <= w <= 3000 and 800 <= h <= 3000, (w, h)
    pixels = np.asarray(doc["confusion"]["pixels"])
    assert pixels.shape == (19, 19) and pixels.sum() == doc["overall"]["pixels"]
    present = pixels.sum(1) > 0
    assert present.any()
    assert np.allclose(row_normalised(pixels)[present].sum(1), 1.0)
    assert str(eval_run["png"]) in eval_run["output"]
    assert sorted(p.name for p in eval_run["json"].parent.iterdir()) == ["E.json",
                                                                         "E_confusion.png"]


def test_eval_that_fails_writing_leaves_neither_file(eval_run: dict, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import model.evaluate
    from model.cli import main

    def broken(doc: dict, path: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model.evaluate, "write_json", broken)
    out = tmp_path / "m" / "E.json"
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(eval_run["run"]), "--data",
                                    str(eval_run["data"]), "--out", str(out), "--device", "cpu",
                                    "--limit", "1"])
    assert res.exit_code == 1, res.output
    assert not (tmp_path / "m").exists()


def test_eval_json_keeps_number_rows_on_one_line_and_strings_as_they_are(tmp_path: Path) -> None:
    from model.evaluate import write_json

    doc = {"confusion": {"pixels": [[1, 2], [3, 4]]}, "checkpoint": "runs/x [1 ,2]",
           "per_class": {"road": 1.5}, "empty": []}
    write_json(doc, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text) == doc
    assert "[1, 2]" in text and "[3, 4]" in text
