"""Small synthetic hard-lighting RPEA datasets for tests, the demo and the ablation.

Not the physical rig simulator (that lives in `rig/sim`): a fast 2-D scene generator with the
property the paper's method relies on. Scenes are rendered in linear radiance with a high dynamic
range (glare-lit patches x`glare_gain`, deep shadows x`shadow_gain`, night x`night_gain` with
headlights). The frame camera is a linear sensor followed by an 8-bit gamma output, in this
order: photon shot noise (Poisson in electrons, `full_well_e` at saturation), read noise
(`read_noise_e`), black-level clip at 0, a linear `adc_bits` ADC that saturates at full well, then
gamma 1/2.2 and 8-bit quantisation. So over-exposed regions are 255 in every channel (nothing
left), and under-exposed regions hold a signal of about one ADC step under noise of about one
step: class colour and texture are mostly gone from the RGB there. Events come from the same
underlying log-radiance (an event camera's photoreceptor, floor `event_floor` for its dark
current, far below the frame's noise floor) while objects and the camera move during the pair's
window, so they keep edges and class-specific texture where the frame is clipped or crushed.
Deterministic for a seed. Writes files per docs/rpea-format.md (schema 1.0) with ground-truth
labels and instance masks, through the one RPEA writer (`dataset.rpea_format`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset.rpea_format import SequenceWriter, identity_rectify_map, write_index

# Cityscapes train ids used by the generator
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 5, 7, 8, 10, 11, 13
# class -> (albedo RGB, texture frequency cycles/px, texture orientation rad)
_LOOK = {
    ROAD: ((0.35, 0.35, 0.38), 0.0, 0.0),
    SIDEWALK: ((0.6, 0.55, 0.5), 0.25, 0.0),
    BUILDING: ((0.55, 0.4, 0.3), 0.12, 1.57),
    POLE: ((0.7, 0.7, 0.7), 0.0, 0.0),
    SIGN: ((0.9, 0.8, 0.1), 0.0, 0.0),
    VEGETATION: ((0.2, 0.6, 0.15), 0.33, 0.8),
    SKY: ((0.6, 0.75, 0.95), 0.0, 0.0),
    PERSON: ((0.8, 0.3, 0.5), 0.2, 0.0),
    CAR: ((0.15, 0.25, 0.8), 0.16, 1.57),
}
_OBJECTS = (POLE, SIGN, VEGETATION, PERSON, CAR)


@dataclass
class SynthConfig:
    """Sizes and sensor constants of the generator (documented defaults).

    Radiance is in units of the frame sensor's full well at exposure 1 (1.0 saturates). With
    the defaults a deep shadow on a mid-grey surface (0.35 x 0.002) yields ~4 electrons, ~0.7
    ADC steps (10 bit) against ~1 step of noise; a glare patch (x100) saturates even the
    darkest albedo (0.015) of the palette.
    """

    height: int = 96
    width: int = 128
    pairs_per_sequence: int = 8
    window_us: int = 20_000
    substeps: int = 6
    contrast_threshold: float = 0.25
    noise_events_per_px: float = 0.01
    extreme_fraction: float = 0.35  # share of the image covered by glare/shadow patches
    glare_gain: float = 100.0  # illumination of a glare-lit patch (day)
    shadow_gain: float = 0.002  # illumination of a deep shadow (day)
    night_gain: float = 0.001  # ambient illumination at night (as dark as a day shadow at x2)
    headlight_gain: float = 450.0  # headlight / street lamp patch on top of the night ambient
    night_exposure: float = 2.0  # exposure (time x gain) at night relative to day
    full_well_e: float = 6000.0  # electrons at saturation
    read_noise_e: float = 6.0  # rms, electrons
    adc_bits: int = 10  # linear ADC before the 8-bit gamma output
    gamma: float = 2.2
    event_floor: float = 1e-5  # event photoreceptor dark-current floor (radiance units)


def _shapes(rng: np.random.Generator, h: int, w: int) -> dict:
    horizon = int(h * rng.uniform(0.3, 0.45))
    curb = int(h * rng.uniform(0.62, 0.75))
    blocks = []
    x = 0
    while x < w + 16:
        bw = int(rng.integers(10, 30))
        blocks.append((x - 8, bw, int(horizon - rng.integers(h // 8, h // 3))))
        x += bw
    objs = []
    for _ in range(int(rng.integers(3, 7))):
        cls = int(rng.choice(_OBJECTS))
        cx = float(rng.uniform(0.05, 0.95) * w)
        if cls == CAR:
            size = (rng.uniform(0.12, 0.22) * h, rng.uniform(0.2, 0.35) * w)
            cy = rng.uniform(curb - 0.05 * h, h - size[0] / 2)
        elif cls == PERSON:
            size = (rng.uniform(0.2, 0.3) * h, rng.uniform(0.05, 0.08) * w)
            cy = rng.uniform(horizon + size[0] / 2, curb)
        elif cls == POLE:
            size = (rng.uniform(0.4, 0.6) * h, max(2.0, 0.025 * w))
            cy = curb - size[0] / 2
        elif cls == SIGN:
            size = (rng.uniform(0.08, 0.12) * h, rng.uniform(0.08, 0.12) * w)
            cy = rng.uniform(0.2 * h, horizon + 0.1 * h)
        else:
            size = (rng.uniform(0.15, 0.3) * h, rng.uniform(0.12, 0.25) * w)
            cy = rng.uniform(horizon - 0.1 * h, horizon + 0.15 * h)
        v = rng.uniform(-3, 3, 2) if cls in (CAR, PERSON) else np.zeros(2)
        objs.append((cls, cx, float(cy), size, v))
    return {"horizon": horizon, "curb": curb, "blocks": blocks, "objs": objs}


def _render(scene: dict, h: int, w: int, frac: float, ego_px: float):
    """Albedo (H, W, 3), class map, instance map at time fraction `frac` of the window."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xs = xx + ego_px * frac
    cls = np.full((h, w), ROAD, np.int32)
    inst = np.zeros((h, w), np.int32)
    cls[yy < scene["horizon"]] = SKY
    cls[(yy >= scene["horizon"]) & (yy < scene["curb"])] = SIDEWALK
    for k, (x0, bw, top) in enumerate(scene["blocks"]):
        m = (xs >= x0) & (xs < x0 + bw) & (yy >= top) & (yy < scene["horizon"])
        cls[m] = BUILDING
        inst[m] = 1 + k
    inst[cls == ROAD] = 100
    inst[cls == SIDEWALK] = 101
    inst[cls == SKY] = 102
    for k, (c, cx, cy, (sh, sw), v) in enumerate(scene["objs"]):
        ox, oy = cx + v[0] * frac, cy + v[1] * frac
        dx, dy = (xs - ox) / (sw / 2), (yy - oy) / (sh / 2)
        if c in (PERSON, VEGETATION):
            m = dx**2 + dy**2 <= 1
        elif c == SIGN:
            m = (np.abs(dx) + np.abs(dy) <= 1) | ((np.abs(dx) < 0.15) & (dy > 0) & (dy < 4))
        else:
            m = (np.abs(dx) <= 1) & (np.abs(dy) <= 1)
        cls[m] = c
        inst[m] = 200 + k
    albedo = np.zeros((h, w, 3), np.float32)
    for c, (rgb, freq, theta) in _LOOK.items():
        m = cls == c
        if not m.any():
            continue
        tex = 1.0
        if freq > 0:
            phase = 2 * np.pi * freq * (xs[m] * np.cos(theta) + yy[m] * np.sin(theta))
            tex = 0.55 + 0.45 * np.sin(phase)
        albedo[m] = np.asarray(rgb, np.float32) * np.asarray(tex, np.float32)[..., None]
    return albedo, cls, inst


def _illumination(rng: np.random.Generator, cfg: SynthConfig, night: bool) -> np.ndarray:
    """Smooth HDR illumination field (H, W): 1-3 flat-topped patches covering about
    `extreme_fraction` of the image; day patches are glare (x`glare_gain`) or deep shadow
    (x`shadow_gain`), night is x`night_gain` everywhere with x`headlight_gain` lamp patches."""
    h, w = cfg.height, cfg.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    log_gain = np.zeros((h, w), np.float32)
    n_patch = int(rng.integers(1, 4))
    for _ in range(n_patch):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = np.sqrt(cfg.extreme_fraction * h * w / n_patch / np.pi)
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        blob = np.exp(-(d2**8))  # flat top, sharp rim: hard light and hard shadows
        if night:
            log_gain += np.log(cfg.headlight_gain) * blob
        else:
            gain = cfg.glare_gain if rng.random() < 0.5 else cfg.shadow_gain
            log_gain += np.log(gain) * blob
    base = np.log(cfg.night_gain) if night else 0.0
    return np.exp(base + log_gain)


def expose(radiance: np.ndarray, exposure: float, rng: np.random.Generator,
           cfg: SynthConfig) -> np.ndarray:
    """Frame camera: linear radiance (full well = 1) -> 8-bit gamma-encoded image.

    Shot noise and read noise act on electrons before the ADC, so a dark region keeps only a
    noisy count of a few electrons; clipping at full well erases everything above it.
    """
    signal = np.clip(radiance * exposure, 0.0, 2.0)  # > 1 saturates anyway; cap for Poisson
    electrons = rng.poisson(signal * cfg.full_well_e).astype(np.float64)
    electrons += rng.normal(0.0, cfg.read_noise_e, electrons.shape)
    adc_max = 2**cfg.adc_bits - 1
    dn = np.clip(np.round(electrons / cfg.full_well_e * adc_max), 0, adc_max)
    v = (dn / adc_max) ** (1.0 / cfg.gamma) * 255.0
    return np.round(v).astype(np.uint8)


def _log_luminance(albedo: np.ndarray, illum: np.ndarray, floor: float) -> np.ndarray:
    return np.log(albedo.mean(-1) * illum + floor)


def make_pair(rng: np.random.Generator, cfg: SynthConfig, night: bool):
    """One pair: image (H, W, 3) u8, label (H, W) u8, masks (H, W) u16, events (x, y, t, p)."""
    h, w = cfg.height, cfg.width
    scene = _shapes(rng, h, w)
    ego = float(rng.uniform(-2, 2))
    illum = _illumination(rng, cfg, night)
    exposure = cfg.night_exposure if night else 1.0
    albedo, cls, inst = _render(scene, h, w, 0.5, ego)
    image = expose(albedo * illum[..., None], exposure, rng, cfg)
    label = cls.astype(np.uint8)
    _, masks = np.unique(inst, return_inverse=True)
    masks = (masks.reshape(h, w) + 1).astype(np.uint16)
    # events: log-radiance changes between sub-steps (contrast threshold, per-pixel mismatch);
    # the illumination only scales radiance, so the log changes are the same in glare, shadow
    # and normal light (down to the photoreceptor floor)
    thr = cfg.contrast_threshold * (1 + 0.05 * rng.standard_normal((h, w)))
    dt_us = cfg.window_us / cfg.substeps
    alb0, _, _ = _render(scene, h, w, 0.0, ego)
    ref = _log_luminance(alb0, illum, cfg.event_floor)
    xs, ys, ts, ps = [], [], [], []
    for k in range(1, cfg.substeps + 1):
        alb, _, _ = _render(scene, h, w, k / cfg.substeps, ego)
        d = _log_luminance(alb, illum, cfg.event_floor) - ref
        n = np.floor(np.abs(d) / thr).astype(np.int64)
        yy, xx = np.nonzero(n)
        cnt = np.minimum(n[yy, xx], 4)
        xs.append(np.repeat(xx, cnt))
        ys.append(np.repeat(yy, cnt))
        ts.append(rng.uniform((k - 1) * dt_us, k * dt_us, int(cnt.sum())))
        ps.append(np.repeat(d[yy, xx] > 0, cnt))
        ref = np.where(n > 0, ref + np.sign(d) * n * thr, ref)
    n_noise = rng.poisson(cfg.noise_events_per_px * h * w * (3 if night else 1))
    xs.append(rng.integers(0, w, n_noise))
    ys.append(rng.integers(0, h, n_noise))
    ts.append(rng.uniform(0, cfg.window_us, n_noise))
    ps.append(rng.integers(0, 2, n_noise).astype(bool))
    t_all = np.concatenate(ts)
    order = np.argsort(t_all, kind="stable")
    ev = (np.concatenate(xs).astype(np.uint16)[order], np.concatenate(ys).astype(np.uint16)[order],
          t_all[order].astype(np.int64), np.concatenate(ps).astype(np.uint8)[order])
    return image, label, masks, ev


def write_rpea_file(path: Path, images: np.ndarray, labels: np.ndarray,
                    events: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                    window_us: int, masks: np.ndarray | None = None, night: bool = False,
                    name: str | None = None, split: str = "train",
                    period_us: int = 50_000) -> dict:
    """Write one RPEA sequence file (atomically); return its index.json entry.

    events[i] = (x, y, t_us, p) of pair i with t_us relative to the pair's window start; pair i
    gets the window [i * period_us, i * period_us + window_us). Times are stored from 0 (t_offset
    0), so a file's times are the pair times above.
    """
    n, h, w = labels.shape
    name = name or path.stem
    pairs = {k: np.zeros(n, np.int64) for k in (
        "frame_id", "frame_t_us", "exposure_t0_us", "exposure_t1_us", "event_t0_us",
        "event_t1_us", "event_idx0", "event_idx1")}
    v = images.max(-1).astype(np.float32) / 255.0
    tod = "night" if night else "day"
    with SequenceWriter(path, h, w, t_offset_us=0) as wr:
        count = 0
        for i, (x, y, t, p) in enumerate(events):
            t0 = i * period_us
            order = np.argsort(t, kind="stable")
            wr.append_events(np.asarray(x, np.uint16)[order], np.asarray(y, np.uint16)[order],
                             np.asarray(t, np.int64)[order] + t0, np.asarray(p, np.uint8)[order])
            pairs["frame_id"][i] = i
            pairs["frame_t_us"][i] = pairs["exposure_t0_us"][i] = pairs["event_t0_us"][i] = t0
            pairs["exposure_t1_us"][i] = pairs["event_t1_us"][i] = t0 + window_us
            pairs["event_idx0"][i], pairs["event_idx1"][i] = count, count + len(x)
            count += len(x)
        wr.finish_events()
        images_ds, labels_ds, masks_ds = wr.create_pairs(n, with_masks=masks is not None)
        images_ds[...] = images
        labels_ds[...] = labels
        if masks is not None and masks_ds is not None:
            masks_ds[...] = masks
        wr.write_pairs({**pairs, "has_label": np.ones(n, np.uint8),
                        "overexposed_frac": (v > 0.9).mean((1, 2)),
                        "underexposed_frac": (v < 0.1).mean((1, 2)),
                        "is_night": np.full(n, int(night), np.uint8)})
        wr.write_calib("%YAML:1.0\n# synthetic: identity alignment\n")
        wr.write_rectify_map(identity_rectify_map(h, w))
        digest = wr.commit({"tool_version": "synthetic", "sequence": name, "scene": "synthetic",
                            "time_of_day": tod, "split": split, "source_session": "synthetic"})
    return {"name": name, "file": path.name, "num_pairs": n, "num_labelled": n, "sha256": digest,
            "time_of_day": tod, "scene": "synthetic", "session": "synthetic"}


def write_sequence(path: Path, name: str, split: str, night: bool, seed: int,
                   cfg: SynthConfig, with_masks: bool = True) -> dict:
    """Generate and write one synthetic sequence; return its index.json entry."""
    rng = np.random.default_rng(seed)
    h, w, n = cfg.height, cfg.width, cfg.pairs_per_sequence
    images = np.zeros((n, h, w, 3), np.uint8)
    labels = np.zeros((n, h, w), np.uint8)
    masks = np.zeros((n, h, w), np.uint16)
    events = []
    for i in range(n):
        images[i], labels[i], masks[i], ev = make_pair(rng, cfg, night)
        events.append(ev)
    return write_rpea_file(path, images, labels, events, cfg.window_us,
                           masks if with_masks else None, night, name, split)


def write_dataset(root: str | Path, splits: dict[str, int], cfg: SynthConfig | None = None,
                  seed: int = 0, night_fraction: float = 0.5, with_masks: bool = True,
                  progress: bool = False) -> Path:
    """Write `<root>/<split>/*.h5` + index.json; `splits` maps split name -> sequence count.
    `progress`: a bar over the sequences (on a terminal only)."""
    from common.progress import progress_bar

    cfg = cfg or SynthConfig()
    root = Path(root)
    bar = progress_bar(desc="synth", total=sum(splits.values()), unit="seq", enabled=progress)
    for s_idx, (split, n_seq) in enumerate(splits.items()):
        entries = []
        for j in range(n_seq):
            night = j < round(n_seq * night_fraction)
            name = f"{'night' if night else 'day'}_{j:04d}"
            entries.append(write_sequence(root / split / f"{name}.h5", name, split, night,
                                          seed * 1000 + s_idx * 100 + j, cfg, with_masks))
            bar.update()
        write_index(root / split, entries)
    bar.close()
    return root
