"""The simulation loop's numba bookkeeping equals the numpy expressions it replaced."""

from __future__ import annotations

import numpy as np

from rig.sim.bookkeeping import COUNTING_SPAN_US, raise_by_boxes, split_sort_events
from rig.sim.parallel import row_stride


def _reference_split(t, x, y, p, wm, offset, scale):
    sel = t < wm
    tdev = np.floor(offset + t[sel] * scale).astype(np.int64)
    order = np.argsort(tdev, kind="stable")
    return (tdev[order], x[sel][order], y[sel][order], p[sel][order],
            t[~sel], x[~sel], y[~sel], p[~sel])


def test_split_sort_matches_numpy_stable_sort():
    rng = np.random.default_rng(3)
    for span in (20_000.0, 3.0, 2.0 * COUNTING_SPAN_US):  # counting sort, ties, merge sort
        t = rng.uniform(1e6, 1e6 + span, 5000)
        x = rng.integers(0, 640, t.size).astype(np.uint16)
        y = rng.integers(0, 360, t.size).astype(np.uint16)
        p = rng.integers(0, 2, t.size).astype(np.uint8)
        wm = float(np.quantile(t, 0.7))
        got = split_sort_events(t, x, y, p, wm, 12345.6, 1.0 + 37e-6)
        want = _reference_split(t, x, y, p, wm, 12345.6, 1.0 + 37e-6)
        assert len(got[0]) == int((t < wm).sum()) > 0
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    empty = split_sort_events(np.empty(0), np.empty(0, np.uint16), np.empty(0, np.uint16),
                              np.empty(0, np.uint8), 1.0, 0.0, 1.0)
    assert all(len(a) == 0 for a in empty)


def test_raise_by_boxes_matches_broadcast():
    rng = np.random.default_rng(4)
    def rects(n, half):  # (x0, x1, y0, y1)
        c = rng.uniform(-0.5, 0.5, (n, 2))
        return np.stack([c[:, 0] - half, c[:, 0] + half, c[:, 1] - half, c[:, 1] + half], 1)

    tb, box = rects(300, 0.02), rects(40, 0.06)
    speed = rng.uniform(0, 500, 40)
    v = rng.uniform(0, 300, 300)
    v0 = v.copy()
    over = ((box[:, None, 1] >= tb[None, :, 0]) & (box[:, None, 0] <= tb[None, :, 1])
            & (box[:, None, 3] >= tb[None, :, 2]) & (box[:, None, 2] <= tb[None, :, 3]))
    want = np.maximum(v, (over * speed[:, None]).max(axis=0))
    raise_by_boxes(v, box, speed, tb)
    np.testing.assert_array_equal(v, want)
    assert (want > v0).any() and (want == v0).any()  # some tiles raised, some not


def test_row_stride_visits_every_row_once():
    for h in (23, 360, 768, 97 * 4, 97 * 99 * 2):
        s = row_stride(h)
        rows = (np.arange(h) * s) % h
        assert np.array_equal(np.sort(rows), np.arange(h)), h
