"""`rpea export --format cityscapes`: the layout and suffixes mmsegmentation's CityscapesDataset
reads, pixels that decode to exactly what the RPEA files hold, and re-runs that finish the work."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from dataset.cli import main as rpea_main
from dataset.export import ExportError, export_cityscapes
from dataset.reader import RPEASequence
from dataset.rpea_format import edit_sequence
from dataset.synthetic import SynthConfig, write_dataset

CFG = SynthConfig(height=24, width=32, pairs_per_sequence=3, substeps=2)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data", {"train": 2, "val": 1}, CFG, seed=3)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_layout_suffixes_and_pixels(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cs"
    summary = export_cityscapes(data, out, progress=False)
    assert {s: c.pairs for s, c in summary.splits.items()} == {"train": 6, "val": 3}
    assert summary.splits["train"].written == 12 and summary.splits["train"].kept == 0
    files = _files(out)
    assert "leftImg8bit/train/night_0000/night_0000_000002_leftImg8bit.png" in files
    assert "gtFine/val/day_0000/day_0000_000000_gtFine_labelTrainIds.png" in files
    assert {"train.txt", "val.txt"} <= set(files)
    assert not [f for f in files if Path(f).name.startswith(".")]  # no temp file left behind
    for split in ("train", "val"):
        for h5 in sorted((data / split).glob("*.h5")):
            seq = RPEASequence(h5)
            city = seq.attrs["sequence"]
            for i in range(seq.num_pairs):
                stem = f"{city}_{int(seq.pairs['frame_id'][i]):06d}"
                label = cv2.imread(str(out / "gtFine" / split / city /
                                       f"{stem}_gtFine_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
                assert label.dtype == np.uint8 and label.ndim == 2
                np.testing.assert_array_equal(label, seq.label(i))
                bgr = cv2.imread(str(out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"),
                                 cv2.IMREAD_UNCHANGED)
                np.testing.assert_array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), seq.image(i))
            seq.close()
    # every image has its label map under the same relative name (how mmseg pairs them), and the
    # split lists name them as mmseg's converter does: <city>/<name> without suffix
    imgs = {f.split("/", 1)[1][:-len("_leftImg8bit.png")] for f in files if f.startswith("leftImg8bit/")}
    maps = {f.split("/", 1)[1][:-len("_gtFine_labelTrainIds.png")] for f in files if f.startswith("gtFine/")}
    assert imgs == maps and len(imgs) == 9
    listed = {f"{s}/{n}" for s in ("train", "val") for n in (out / f"{s}.txt").read_text().split()}
    assert listed == imgs
    assert any((l := cv2.imread(str(p), cv2.IMREAD_UNCHANGED)).max() > 0 and len(np.unique(l)) > 2
               for p in (out / "gtFine").rglob("*.png"))  # real label content, not a blank map


def test_rerun_keeps_good_files_and_repairs_the_rest(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cs"
    export_cityscapes(data, out, progress=False)
    again = export_cityscapes(data, out, progress=False)
    assert again.splits["train"].written == 0 and again.splits["train"].kept == 12
    img = next((out / "leftImg8bit" / "train").rglob("*.png"))
    lab = next((out / "gtFine" / "val").rglob("*.png"))
    img.write_bytes(img.read_bytes()[:40])  # an interrupted foreign write
    lab.unlink()
    fixed = export_cityscapes(data, out, progress=False)
    assert fixed.splits["train"].written == 1 and fixed.splits["val"].written == 1
    assert cv2.imread(str(img)) is not None and lab.is_file()
    assert not fixed.notes
    (img.parent / "old_000099_leftImg8bit.png").write_bytes(img.read_bytes())
    assert "earlier export" in export_cityscapes(data, out, progress=False).notes[0]


def test_unlabelled_pairs_and_bad_labels(data: Path, tmp_path: Path) -> None:
    seq_file = data / "val" / "day_0000.h5"
    with edit_sequence(seq_file) as f:
        f["pairs/has_label"][1] = 0
    summary = export_cityscapes(data, tmp_path / "a", splits=["val"], progress=False)
    assert set(summary.splits) == {"val"}
    assert summary.splits["val"].pairs == 2 and summary.splits["val"].unlabelled == 1
    summary = export_cityscapes(data, tmp_path / "b", splits=["val"], include_unlabelled=True,
                                progress=False)
    assert summary.splits["val"].pairs == 3 and summary.splits["val"].unlabelled == 0
    with edit_sequence(seq_file) as f:
        f["labels"][0, 0, 0] = 40  # not a train id
    with pytest.raises(ExportError, match=r"day_0000\.h5 pair 0: label values \[40\]"):
        export_cityscapes(data, tmp_path / "c", progress=False)


def test_a_folder_without_rpea_data_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ExportError, match="no RPEA data here"):
        export_cityscapes(tmp_path / "empty", tmp_path / "out", progress=False)
    res = CliRunner().invoke(rpea_main, ["export", "--format", "cityscapes", str(tmp_path / "empty"),
                                         "-o", str(tmp_path / "out")])
    assert res.exit_code == 1 and "no RPEA data here" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_cli_workspace_default_and_one_split_folder(data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # tmp_path/data is the workspace's data/
    res = CliRunner().invoke(rpea_main, ["export", "--format", "cityscapes", "-o", "cs", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "dataset: data/ (workspace default)" in res.stderr
    assert "train: 6 pairs (12 files written, 0 already there)" in res.stdout
    res = CliRunner().invoke(rpea_main, ["export", "--format", "cityscapes", "data/val", "-o", "v",
                                         "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "v" / "leftImg8bit").iterdir()) == ["val"]
    with h5py.File(data / "val" / "day_0000.h5") as f:
        n = f["images"].shape[0]
    assert len(list((tmp_path / "v" / "gtFine" / "val").rglob("*.png"))) == n
