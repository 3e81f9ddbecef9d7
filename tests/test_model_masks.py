"""Training-time helpers: graph masks, enhancement, gradient map, exposure regions."""

from __future__ import annotations

import numpy as np
import pytest

from model.enhance import clahe_v, exposure_map, get_enhancer, gradient_intensity_map
from model.masks import get_provider, graph_masks


def _two_regions():
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = (200, 40, 40)
    img[:, 30:] = (30, 60, 200)
    return img


def test_graph_masks_follow_regions():
    ids = graph_masks(_two_regions())
    assert ids.shape == (40, 60) and ids.min() >= 1
    left, right = np.unique(ids[:, :25]), np.unique(ids[:, 35:])  # blur edge may split off
    assert len(left) == 1 and len(right) == 1 and left[0] != right[0]


def test_providers():
    assert get_provider("masks") is None
    assert get_provider("auto") is graph_masks
    with pytest.raises(ValueError, match="sam_checkpoint"):
        get_provider("sam")
    with pytest.raises(ValueError, match="unknown mask provider"):
        get_provider("magic")


def test_enhancement_brightens_dark_regions():
    rng = np.random.default_rng(0)
    dark = (rng.random((64, 64, 3)) * 20).astype(np.uint8)
    out = clahe_v(dark)
    assert out.shape == dark.shape and out.max(-1).mean() > dark.max(-1).mean() + 5
    assert get_enhancer("none")(dark, None) is dark
    assert get_enhancer("model.enhance:clahe_v") is clahe_v
    with pytest.raises(ValueError, match="cannot be imported"):
        get_enhancer("nope.module:fn")


def test_gradient_map_marks_edges_and_events():
    img = _two_regions()
    ev = np.zeros((3, 40, 60), np.float32)
    ev[0, 10, 5] = 3  # an event far from the image edge
    gim = gradient_intensity_map(img, ev)
    assert gim.dtype == np.float32 and 0 <= gim.min() and gim.max() <= 1
    assert gim[20, 29:31].min() > 0.5 and gim[20, 10] == 0  # image edge vs flat area
    assert gim[10, 5] > 0.5  # event edge


def test_exposure_map_thresholds():
    img = np.zeros((1, 3, 3), np.uint8)
    img[0, 0] = (10, 5, 0)  # V = 10/255 < 0.1
    img[0, 1] = (120, 100, 90)
    img[0, 2] = (250, 0, 0)  # V > 0.9
    np.testing.assert_array_equal(exposure_map(img, 0.1, 0.9), [[1, 0, 2]])
