"""The crop-first loader path equals the straightforward one: representation on the full frame,
normalised there, padded, cropped and flipped afterwards (issue #6)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dataset.reader import RPEADataset, crop_window, widen_batch
from dataset.representations import (
    event_frame,
    event_frame_scale,
    normalize_event_frame,
    normalize_voxel_grid,
    voxel_grid,
    voxel_grid_stats,
)
from dataset.synthetic import write_rpea_file

H, W, N = 20, 36, 4


@pytest.fixture(scope="module")
def random_root(tmp_path_factory):
    """Random images/labels/masks and clustered events (several per pixel, so the count
    percentile and the voxel statistics are not trivial)."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("rpea_fast")
    images = rng.integers(1, 256, (N, H, W, 3)).astype(np.uint8)
    labels = rng.integers(0, 19, (N, H, W)).astype(np.uint8)
    labels[:, 0, :5] = 255
    masks = rng.integers(0, 60_000, (N, H, W)).astype(np.uint16)
    events = []
    for _ in range(N):
        n = 3000
        x = np.clip(rng.normal(W / 2, W / 4, n), 0, W - 1).astype(np.int64)
        y = np.clip(rng.normal(H / 2, H / 4, n), 0, H - 1).astype(np.int64)
        events.append((x, y, rng.integers(0, 10_000, n), rng.integers(0, 2, n)))
    entry = write_rpea_file(root / "train" / "seq_r.h5", images, labels, events, 10_000, masks)
    (root / "train" / "index.json").write_text(json.dumps(
        {"schema_version": "1.0", "split": "train", "sequences": [entry]}))
    return root


def _reference_normalize(rep: np.ndarray, kind: str) -> np.ndarray:
    """The normalisations written out plainly (np.percentile, boolean-mask mean/std)."""
    out = rep.astype(np.float32, copy=True)
    if kind == "frame":
        counts = out[:2]
        active = counts[counts > 0]
        scale = max(float(np.percentile(active, 99.0)), 1.0) if active.size else 1.0
        np.clip(counts / scale, 0.0, 1.0, out=counts)
        return out
    nz = out != 0
    if nz.sum() > 1:
        vals = out[nz]
        std = float(vals.std())
        out[nz] = (vals - float(vals.mean())) / (std if std > 1e-6 else 1.0)
    return out


def _reference_sample(ds: RPEADataset, idx: int) -> dict[str, np.ndarray]:
    """Full-frame arrays -> pad -> same random window -> flip, as the loader was first written."""
    s, i = ds.items[idx]
    seq = ds.sequences[s]
    rng = np.random.default_rng([ds.seed, ds.epoch, idx])
    e = seq.events(i)
    dx, dy = ds.shift_for(idx)
    x, y = e.x.astype(np.int64) + dx, e.y.astype(np.int64) + dy
    if ds.representation == "frame":
        rep = event_frame(x, y, e.t_us, e.p, (H, W), e.t0_us, e.t1_us)
    else:
        rep = voxel_grid(x, y, e.t_us, e.p, (H, W), ds.bins, e.t0_us, e.t1_us)
    rep = _reference_normalize(rep, ds.representation)
    arrays = {"image": seq.image(i), "label": seq.label(i).astype(np.int64),
              "events": np.moveaxis(rep, 0, -1), "masks": seq.masks(i).astype(np.int64)}
    pad = {"image": 0, "label": 255, "events": 0, "masks": 0}
    if ds.crop_hw is not None:
        ch, cw = ds.crop_hw
        ph, pw = max(ch - H, 0), max(cw - W, 0)
        arrays = {k: np.pad(v, [(0, ph), (0, pw)] + [(0, 0)] * (v.ndim - 2),
                            constant_values=pad[k]) for k, v in arrays.items()}
        y0 = int(rng.integers(0, H + ph - ch + 1))
        x0 = int(rng.integers(0, W + pw - cw + 1))
        arrays = {k: v[y0:y0 + ch, x0:x0 + cw] for k, v in arrays.items()}
    if ds.hflip and rng.random() < 0.5:
        arrays = {k: v[:, ::-1] for k, v in arrays.items()}
    arrays["events"] = np.moveaxis(arrays["events"], -1, 0)
    return arrays


@pytest.mark.parametrize("representation", ["frame", "voxel"])
@pytest.mark.parametrize("crop_hw", [(12, 20), (H, W), (H + 6, W - 4), (H + 5, W + 7), None])
def test_fast_path_equals_full_frame_reference(random_root, representation, crop_hw):
    ds = RPEADataset(random_root, "train", representation=representation, bins=5,
                     crop_hw=crop_hw, hflip=True, misalign_px=3.0, seed=11)
    flips = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for idx in range(len(ds)):
            got, ref = ds.sample_numpy(idx), _reference_sample(ds, idx)
            for k in ("image", "label", "events", "masks"):
                assert got[k].dtype == ref[k].dtype, k
                np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{k} idx {idx}")
                assert got[k].flags.c_contiguous
            flips += int(ds.crop_and_flip(idx)[1])
    assert 0 < flips < 3 * N  # both orientations were compared


def test_compact_and_without_masks(random_root):
    wide = RPEADataset(random_root, "train", crop_hw=(12, 20), hflip=True, seed=2)
    compact = RPEADataset(random_root, "train", crop_hw=(12, 20), hflip=True, seed=2,
                          compact=True)
    a, b = wide[1], compact[1]
    assert b["label"].dtype == torch.uint8 and b["masks"].dtype == torch.uint16
    batch = widen_batch({k: (v.unsqueeze(0) if isinstance(v, torch.Tensor) else v)
                         for k, v in b.items()})
    for k in ("image", "label", "events", "masks"):
        assert torch.equal(batch[k][0], a[k]), k
    assert batch["label"].dtype == torch.int64 and batch["masks"].dtype == torch.int64
    bare = RPEADataset(random_root, "train", crop_hw=(12, 20), hflip=True, seed=2,
                       with_masks=False)[1]
    assert "masks" not in bare and torch.equal(bare["events"], a["events"])


@pytest.mark.parametrize("axis,shape,dtype", [(0, (9, 13, 3), np.uint8), (0, (9, 13), np.uint16),
                                             (0, (9, 13), np.int64), (1, (4, 9, 13), np.float32)])
def test_crop_window_equals_pad_crop_flip(axis, shape, dtype):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, shape).astype(dtype)
    h, w = shape[axis], shape[axis + 1]
    for ch, cw in [(4, 5), (h, w), (h + 3, w), (h, w + 2), (h + 2, w + 5), (1, 1)]:
        for y0 in range(0, max(h, ch) - ch + 1, 2):
            for x0 in range(0, max(w, cw) - cw + 1, 3):
                for flip in (False, True):
                    pads = [(0, 0)] * a.ndim
                    pads[axis], pads[axis + 1] = (0, max(ch - h, 0)), (0, max(cw - w, 0))
                    ref = np.pad(a, pads, constant_values=7)
                    lead = (slice(None),) * axis
                    ref = ref[lead + (slice(y0, y0 + ch), slice(x0, x0 + cw))]
                    if flip:
                        ref = ref[lead + (slice(None), slice(None, None, -1))]
                    got = crop_window(a, axis, y0, x0, ch, cw, 7, flip)
                    np.testing.assert_array_equal(got, ref)
                    assert got.flags.c_contiguous and got.dtype == a.dtype
                    assert got is a or not np.shares_memory(got, a)
    with pytest.raises(ValueError, match="bad crop window"):
        crop_window(a, axis, -1, 0, 2, 2, 0, False)


def test_scale_and_stats_equal_numpy_reference():
    rng = np.random.default_rng(3)
    for _trial in range(20):
        frame = np.zeros((3, 17, 23), np.float32)
        frame[:2] = rng.poisson(rng.uniform(0.05, 4.0), (2, 17, 23))
        frame[2] = rng.random((17, 23))
        assert normalize_event_frame(frame).tobytes() == \
            _reference_normalize(frame, "frame").tobytes()
        pct = float(rng.uniform(0, 100))
        active = frame[:2][frame[:2] > 0]
        expect = max(float(np.percentile(active, pct)), 1.0) if active.size else 1.0
        assert event_frame_scale(frame, pct) == expect
        grid = (rng.normal(size=(5, 17, 23)) * (rng.random((5, 17, 23)) < 0.3)).astype(
            np.float32)
        assert normalize_voxel_grid(grid).tobytes() == \
            _reference_normalize(grid, "voxel").tobytes()
    frac = np.zeros((3, 4, 4), np.float32)
    frac[0] = 0.25 + np.arange(16).reshape(4, 4)  # non-integer counts: the np.percentile path
    assert event_frame_scale(frac) == max(float(np.percentile(frac[:2][frac[:2] > 0], 99)), 1)
    assert voxel_grid_stats(np.zeros((2, 3, 3), np.float32)) is None
    assert event_frame_scale(np.zeros((3, 2, 2), np.float32)) == 1.0
