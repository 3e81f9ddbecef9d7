"""The synthetic hard-lighting generator (`dataset/synthetic.py`) is physically honest: clipped
glare holds nothing, crushed shadows hold little class information in RGB, events keep edges."""

from __future__ import annotations

import numpy as np

from dataset.synthetic import SynthConfig, expose, make_pair

CFG = SynthConfig(height=48, width=64)


def _box3(img: np.ndarray) -> np.ndarray:
    """3x3 mean (edge-padded) of an (H, W, C) array."""
    p = np.pad(img.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


def _regions(image: np.ndarray) -> np.ndarray:
    v = image.max(-1) / 255.0
    return np.where(v < 0.1, 1, np.where(v > 0.9, 2, 0))


def _colour_skill(pairs: list, region: int) -> float:
    """Balanced accuracy of a nearest-class-mean classifier on 3x3-mean RGB (fit on half the
    pairs, tested on the other half) rescaled so chance = 0 and perfect = 1."""
    feats, labels, idx = [], [], []
    for i, (image, label, _, _) in enumerate(pairs):
        sel = _regions(image) == region
        feats.append(_box3(image)[sel])
        labels.append(label[sel])
        idx.append(np.full(int(sel.sum()), i))
    f, lab, ix = (np.concatenate(a) for a in (feats, labels, idx))
    fit, test = ix % 2 == 0, ix % 2 == 1
    classes = [c for c in np.unique(lab) if (lab[fit] == c).sum() > 30
               and (lab[test] == c).sum() > 30]
    assert len(classes) >= 3, f"region {region}: too few classes to judge"
    mu = np.stack([f[fit & (lab == c)].mean(0) for c in classes])
    sd = np.stack([f[fit & (lab == c)].std(0) + 1.0 for c in classes])
    sel = test & np.isin(lab, classes)
    dist = (((f[sel][:, None] - mu[None]) / sd[None]) ** 2).sum(-1)
    pred = np.asarray(classes)[dist.argmin(1)]
    recall = np.mean([np.mean(pred[lab[sel] == c] == c) for c in classes])
    chance = 1.0 / len(classes)
    return float((recall - chance) / (1 - chance))


def _boundary_coverage(pairs: list, region: int) -> tuple[float, float]:
    """Share of instance-boundary pixels in `region` that (a) saw at least one event,
    (b) show an RGB grey-level gradient above 8 DN/px."""
    hit_ev = hit_rgb = total = 0
    for image, _, masks, (x, y, _, _) in pairs:
        h, w = masks.shape
        edge = np.zeros((h, w), bool)
        edge[:, 1:] |= masks[:, 1:] != masks[:, :-1]
        edge[1:, :] |= masks[1:, :] != masks[:-1, :]
        edge[:, :-1] |= edge[:, 1:].copy()
        edge[:-1, :] |= edge[1:, :].copy()
        edge &= _regions(image) == region
        ev = np.zeros((h, w), bool)
        ev[y.astype(int), x.astype(int)] = True
        gy, gx = np.gradient(image.astype(np.float64).mean(-1))
        hit_ev += int((ev & edge).sum())
        hit_rgb += int(((np.hypot(gx, gy) > 8) & edge).sum())
        total += int(edge.sum())
    assert total > 200
    return hit_ev / total, hit_rgb / total


def _pairs(seed: int, night: bool, n: int = 24) -> list:
    rng = np.random.default_rng(seed)
    return [make_pair(rng, CFG, night) for _ in range(n)]


def test_expose_clips_and_crushes() -> None:
    rng = np.random.default_rng(0)
    albedo = np.array([0.015, 0.15, 0.35, 0.6, 0.95])
    glare = expose(np.tile(albedo * CFG.glare_gain, (64, 1))[..., None].repeat(3, -1), 1.0, rng,
                   CFG)
    assert (glare == 255).all()  # every albedo of the palette saturates: nothing left
    shadow = expose(np.tile(albedo * CFG.shadow_gain, (4000, 1))[..., None], 1.0, rng, CFG)
    mean = shadow[..., 0].astype(float).mean(0)
    assert mean.max() < 25  # < V 0.1: the whole palette is under-exposed in a deep shadow
    assert len(np.unique(shadow)) <= 8  # a few quantised levels of a few electrons
    # noise dominates: neighbouring albedos overlap far more than in normal light
    spread = shadow[..., 0].astype(float).std(0)
    assert spread.min() > 0.5 * np.diff(mean).max()
    lit = expose(np.tile(albedo, (4000, 1))[..., None], 1.0, rng, CFG)[..., 0].astype(float)
    assert (np.diff(lit.mean(0)) > 5 * lit.std(0)[1:]).all()


def test_make_pair_is_deterministic() -> None:
    a, b = _pairs(3, False, 2), _pairs(3, False, 2)
    for pa, pb in zip(a, b, strict=True):
        for xa, xb in zip(pa[:3], pb[:3], strict=True):
            np.testing.assert_array_equal(xa, xb)
        for ea, eb in zip(pa[3], pb[3], strict=True):
            np.testing.assert_array_equal(ea, eb)


def test_rgb_loses_class_information_where_events_keep_edges() -> None:
    day = _pairs(11, False)
    normal, under = _colour_skill(day, 0), _colour_skill(day, 1)
    assert normal > 0.45
    assert under < 0.5 * normal, (normal, under)
    ev_normal, rgb_normal = _boundary_coverage(day, 0)
    ev_under, rgb_under = _boundary_coverage(day, 1)
    ev_over, rgb_over = _boundary_coverage(day, 2)
    assert rgb_under < 0.25 * rgb_normal, (rgb_normal, rgb_under)
    assert ev_under > 0.7 * ev_normal, (ev_normal, ev_under)
    assert ev_over > 0.7 * ev_normal, (ev_normal, ev_over)
    assert rgb_over < 0.6 * rgb_normal, (rgb_normal, rgb_over)


def test_night_is_mostly_under_exposed_with_events() -> None:
    night = _pairs(12, True, 8)
    under = np.mean([(_regions(p[0]) == 1).mean() for p in night])
    assert under > 0.5
    ev_under, rgb_under = _boundary_coverage(night, 1)
    assert ev_under > 2 * rgb_under and ev_under > 0.3
