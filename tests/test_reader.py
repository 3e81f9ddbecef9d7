"""RPEA reader and torch Dataset on tiny files written per docs/rpea-format.md."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from dataset.reader import RPEADataset, RPEAFormatError, RPEASequence, split_files
from dataset.representations import event_frame
from dataset.synthetic import write_rpea_file

H, W, N = 24, 40, 3


def _coded_pair(i: int):
    """Arrays whose content encodes the pixel position, to check crops and flips."""
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([xx * 5, yy * 9, np.full_like(xx, 17 * i)], -1).astype(np.uint8)
    label = ((xx + 2 * yy) % 19).astype(np.uint8)
    label[0, 0] = 255
    masks = (1 + xx // 8 + 10 * (yy // 8)).astype(np.uint16)
    # one ON event per pixel with x even, one OFF event where y % 3 == 0
    on_y, on_x = np.nonzero(xx % 2 == 0)
    off_y, off_x = np.nonzero(yy % 3 == 0)
    x = np.concatenate([on_x, off_x])
    y = np.concatenate([on_y, off_y])
    t = np.linspace(0, 9_999, x.size).astype(np.int64)
    p = np.concatenate([np.ones(on_x.size), np.zeros(off_x.size)]).astype(np.uint8)
    return image, label, masks, (x, y, t, p)


@pytest.fixture(scope="module")
def coded_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rpea")
    pairs = [_coded_pair(i) for i in range(N)]
    images = np.stack([p[0] for p in pairs])
    labels = np.stack([p[1] for p in pairs])
    masks = np.stack([p[2] for p in pairs])
    entry = write_rpea_file(root / "train" / "seq_a.h5", images, labels, [p[3] for p in pairs],
                            10_000, masks, night=True)
    (root / "train" / "index.json").write_text(json.dumps(
        {"schema_version": "1.0", "split": "train", "sequences": [entry]}))
    return root


def test_sequence_reads_layout(coded_root):
    seq = RPEASequence(coded_root / "train" / "seq_a.h5")
    assert (seq.num_pairs, seq.height, seq.width) == (N, H, W)
    assert seq.has_masks and seq.is_night(0)
    img, _, _, (x, y, t, p) = _coded_pair(1)
    np.testing.assert_array_equal(seq.image(1), img)
    ev = seq.events(1)
    assert ev.x.size == x.size
    assert ev.t0_us <= ev.t_us.min() and ev.t_us.max() < ev.t1_us
    expect = event_frame(x, y, t + ev.t0_us, p, (H, W), ev.t0_us, ev.t1_us)
    np.testing.assert_allclose(seq.representation(1, normalize=False), expect)
    vox = seq.representation(1, "voxel", bins=4, normalize=False)
    assert vox.shape == (4, H, W)
    assert vox.sum() == pytest.approx(float(p.sum()) - float((1 - p).sum()), abs=1e-2)


def test_split_files_order_from_index(coded_root):
    assert [f.name for f in split_files(coded_root, "train")] == ["seq_a.h5"]
    with pytest.raises(FileNotFoundError, match="split folder"):
        split_files(coded_root, "nope")


def _check_consistent(s):
    """Every array of a sample must come from the same crop/flip of the coded pair."""
    img = s["image"].numpy().astype(np.int64)  # (3, h, w)
    xx, yy = img[0] // 5, img[1] // 9
    label = s["label"].numpy()
    expect = (xx + 2 * yy) % 19
    expect[(xx == 0) & (yy == 0)] = 255
    np.testing.assert_array_equal(label, expect)
    pad = img[2] == 0 if img[2].max() > 0 else np.zeros_like(xx, bool)
    ok = ~pad
    np.testing.assert_array_equal(s["masks"].numpy()[ok], (1 + xx // 8 + 10 * (yy // 8))[ok])
    ev = s["events"].numpy()
    assert ((ev[0] > 0) == ((xx % 2 == 0) & ok)).all()  # ON channel where x even
    assert ((ev[1] > 0) == ((yy % 3 == 0) & ok)).all()


def test_dataset_crop_and_flip_are_shared(coded_root):
    ds = RPEADataset(coded_root, "train", crop_hw=(16, 24), hflip=True, seed=3)
    flips = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            assert s["image"].shape == (3, 16, 24) and s["events"].shape == (3, 16, 24)
            assert s["label"].dtype == torch.int64 and s["masks"].shape == (16, 24)
            _check_consistent(s)
            xs = s["image"][0, 0].numpy().astype(int)
            flips += int(xs[0] > xs[-1])
    assert 0 < flips < 4 * N  # both flipped and unflipped samples occurred
    a = ds[1]["image"]
    ds2 = RPEADataset(coded_root, "train", crop_hw=(16, 24), hflip=True, seed=3)
    ds2.set_epoch(3)
    assert torch.equal(a, ds2[1]["image"])  # deterministic per (seed, epoch, index)


def test_crop_larger_than_image_pads_with_ignore(coded_root):
    ds = RPEADataset(coded_root, "train", crop_hw=(H + 8, W + 4))
    s = ds[1]  # pair 1: blue = 17 everywhere, so padding (all 0) is recognisable
    assert s["label"].shape == (H + 8, W + 4)
    assert (s["label"][H:] == 255).all() and (s["label"][:, W:] == 255).all()
    _check_consistent(s)


def test_misalignment_moves_events(coded_root):
    base = RPEADataset(coded_root, "train", representation="frame")
    moved = RPEADataset(coded_root, "train", misalign_px=4, seed=1)
    dx, dy = moved.shift_for(0)
    assert 3 <= np.hypot(dx, dy) <= 5
    a, b = base[0]["events"][0].numpy(), moved[0]["events"][0].numpy()
    ys, xs = np.nonzero(b > 0)
    assert (a[ys - dy, xs - dx] > 0).all()
    assert moved[0]["events"].sum() != base[0]["events"].sum() or (dx, dy) == (0, 0)


def test_voxel_representation_channels(coded_root):
    ds = RPEADataset(coded_root, "train", representation="voxel", bins=6)
    assert ds.event_channels == 6 and ds[0]["events"].shape == (6, H, W)


def test_workers_reopen_handles(coded_root):
    ds = RPEADataset(coded_root, "train")
    _ = ds[0]  # opens the handle in the parent before forking
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = {int(s["index"]): s["image"] for s in loader}
    assert sorted(got) == list(range(N))
    for i in range(N):
        assert torch.equal(got[i], ds[i]["image"])


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("images", data=np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(RPEAFormatError, match="bad.h5.*missing"):
        RPEASequence(bad)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(RPEAFormatError, match="junk.h5"):
        RPEASequence(junk)


def test_short_side_shrinks_every_array_alike(coded_root):
    """A working resolution of half the grid: image and events by area, labels by nearest, the
    same window of the scene as a full-resolution crop twice the size (issue 18)."""
    half = RPEADataset(coded_root, "train", short_side=H // 2)
    full = RPEADataset(coded_root, "train")
    assert half.scale_of(0) == 0.5 and half.working_size(0) == (H // 2, W // 2)
    a, b = half[1], full[1]
    assert a["image"].shape == (3, H // 2, W // 2) and a["events"].shape == (3, H // 2, W // 2)
    img = b["image"].numpy().astype(np.float64)
    area = img.reshape(3, H // 2, 2, W // 2, 2).mean((2, 4))
    assert np.abs(a["image"].numpy() - area).max() <= 1.0
    ev = b["events"].numpy().reshape(3, H // 2, 2, W // 2, 2).mean((2, 4))
    np.testing.assert_allclose(a["events"].numpy(), ev, atol=1e-5)
    np.testing.assert_array_equal(a["label"].numpy(), b["label"].numpy()[::2, ::2][:, :])
    # never enlarged; full_label keeps the label on the grid (evaluation)
    assert RPEADataset(coded_root, "train", short_side=4 * H).scale_of(0) == 1.0
    ev_ds = RPEADataset(coded_root, "train", short_side=H // 2, full_label=True)
    s = ev_ds[1]
    assert s["image"].shape == (3, H // 2, W // 2) and s["label"].shape == (H, W)
    np.testing.assert_array_equal(s["label"].numpy(), b["label"].numpy())


def test_short_side_crop_covers_the_scaled_window(coded_root):
    ds = RPEADataset(coded_root, "train", short_side=H // 2, crop_hw=(8, 12), seed=1)
    s = ds[2]
    assert s["image"].shape == (3, 8, 12) and s["label"].shape == (8, 12)
    img = s["image"].numpy().astype(np.int64)
    # the coded x (red / 5) grows by about 2 grid pixels per working pixel
    step = np.diff(img[0, 0] // 5)
    assert 1.5 <= step.mean() <= 2.5
