"""Event frame and voxel grid against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from dataset.representations import (
    event_frame,
    normalize_event_frame,
    normalize_voxel_grid,
    voxel_grid,
)


def _events():
    x = np.array([1, 1, 1, 3, 7, -1, 2], np.int64)
    y = np.array([0, 0, 0, 2, 1, 0, 9], np.int64)  # (-1, 0) and (2, 9) are off the 4x8 grid
    t = np.array([100, 500, 900, 250, 1000, 300, 300], np.int64)
    p = np.array([1, 0, 1, 0, 1, 1, 1], np.uint8)
    return x, y, t, p


def test_event_frame_counts_and_latest_time():
    x, y, t, p = _events()
    f = event_frame(x, y, t, p, (4, 8), t0_us=0, t1_us=1000)
    assert f.shape == (3, 4, 8) and f.dtype == np.float32
    assert f[0, 0, 1] == 2 and f[1, 0, 1] == 1  # two ON, one OFF at (x=1, y=0)
    assert f[1, 2, 3] == 1 and f[0, 2, 3] == 0
    assert f[2, 0, 1] == pytest.approx(0.9)  # latest of 100/500/900 in [0, 1000)
    assert f[2, 2, 3] == pytest.approx(0.25)
    assert f[2, 1, 7] == pytest.approx(1.0)  # t == t1 clips to 1
    assert f[:2].sum() == 5  # off-grid events dropped
    assert f[2][f[:2].sum(0) == 0].max() == 0  # no events -> time 0


def test_event_frame_empty_and_bad_input():
    e = np.zeros(0, np.int64)
    assert event_frame(e, e, e, e, (3, 5), 0, 10).sum() == 0
    with pytest.raises(ValueError, match="equally long"):
        event_frame(np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2), (3, 5))
    with pytest.raises(ValueError, match="empty time window"):
        event_frame(e, e, e, e, (3, 5), 10, 10)


def test_voxel_grid_bilinear_in_time():
    x = np.array([0, 1, 2, 3])
    y = np.zeros(4, np.int64)
    t = np.array([0, 500, 250, 1000])  # bins=3 over [0, 1000): tn = 0, 1, 0.5, 2
    p = np.array([1, 0, 1, 1])
    v = voxel_grid(x, y, t, p, (1, 4), bins=3, t0_us=0, t1_us=1000)
    assert v.shape == (3, 1, 4)
    np.testing.assert_allclose(v[:, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(v[:, 0, 1], [0, -1, 0])
    np.testing.assert_allclose(v[:, 0, 2], [0.5, 0.5, 0])
    np.testing.assert_allclose(v[:, 0, 3], [0, 0, 1])


def test_voxel_grid_conserves_polarity_sum():
    rng = np.random.default_rng(0)
    n = 2000
    x, y = rng.integers(0, 16, n), rng.integers(0, 12, n)
    t, p = np.sort(rng.integers(0, 50_000, n)), rng.integers(0, 2, n)
    for bins in (1, 2, 5, 9):
        v = voxel_grid(x, y, t, p, (12, 16), bins=bins)
        assert v.sum() == pytest.approx(int(p.sum()) - int((1 - p).sum()), abs=1e-2)
        per_px = np.zeros((12, 16))
        np.add.at(per_px, (y, x), np.where(p > 0, 1.0, -1.0))
        np.testing.assert_allclose(v.sum(0), per_px, atol=1e-4)


def test_normalisers():
    f = np.zeros((3, 2, 2), np.float32)
    f[0, 0, 0], f[1, 1, 1], f[2, 0, 0] = 10, 3, 0.5
    n = normalize_event_frame(f)
    assert n[:2].max() <= 1.0 and n[0, 0, 0] == pytest.approx(1.0) and n[2, 0, 0] == 0.5
    v = np.zeros((2, 3, 3), np.float32)
    v[0, 0, 0], v[1, 2, 2], v[0, 1, 1] = 4, -2, 1
    nv = normalize_voxel_grid(v)
    nz = nv[v != 0]
    assert abs(nz.mean()) < 1e-5 and nz.std() == pytest.approx(1.0, rel=1e-4)
    assert (nv[v == 0] == 0).all()


def test_subpixel_positions_are_splatted_bilinearly():
    """Float positions spread each event over its four neighbours: the weights sum to one per
    event and their centroid is the event's position; the voxel grid keeps ON - OFF."""
    x = np.array([2.25, 5.5, 7.0])
    y = np.array([3.75, 1.0, 6.5])
    t = np.array([10, 20, 30])
    p = np.array([1, 1, 0])
    frame = event_frame(x, y, t, p, (9, 10), 0, 40)
    on = frame[0]
    assert on.sum() == pytest.approx(2.0)
    rows, cols = np.mgrid[0:9, 0:10]
    assert (on * cols).sum() / 2 == pytest.approx((2.25 + 5.5) / 2)
    assert (on * rows).sum() / 2 == pytest.approx((3.75 + 1.0) / 2)
    assert on[3, 2] == pytest.approx(0.75 * 0.25) and on[4, 3] == pytest.approx(0.25 * 0.75)
    assert frame[1].sum() == pytest.approx(1.0) and frame[1][6, 7] == pytest.approx(0.5)
    assert frame[2][4, 2] == pytest.approx(10 / 40)  # the time reaches every touched pixel
    grid = voxel_grid(x, y, t, p, (9, 10), 4, 0, 40)
    assert grid.sum() == pytest.approx(1.0)  # 2 ON - 1 OFF
    ints = event_frame(np.rint(x).astype(int), np.rint(y).astype(int), t, p, (9, 10), 0, 40)
    assert ints[0].sum() == 2 and np.count_nonzero(ints[0]) == 2  # integer input: nearest, as before
