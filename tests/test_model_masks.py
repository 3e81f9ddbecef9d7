"""Training-time helpers: HFCA mask sources (computed vs oracle), enhancement, gradient map,
exposure regions."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from benchmark_module import load_benchmark

from dataset.reader import RPEASequence
from dataset.rpea_format import mask_source_of, replace_masks
from dataset.synthetic import SynthConfig, write_dataset
from model.config import ConfigDeprecationWarning, ConfigError, resolve
from model.data import hfca_masks_label, make_dataset
from model.enhance import clahe_v, exposure_map, get_enhancer, gradient_intensity_map
from model.masks import (
    check_stored_masks,
    get_provider,
    graph_masks,
    mask_source_label,
    write_masks,
)


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
    assert get_provider("precomputed") is None and get_provider("oracle") is None
    assert get_provider("graph") is graph_masks
    with pytest.raises(ValueError, match="sam_checkpoint"):
        get_provider("sam")
    for gone in ("magic", "masks", "auto"):  # the config maps the old names; nothing else does
        with pytest.raises(ValueError, match="unknown mask provider"):
            get_provider(gone)


def test_mask_source_labels_name_oracle_masks():
    assert mask_source_label("graph") == "graph masks"
    assert mask_source_label("sam") == "SAM masks"
    assert mask_source_label("oracle", ("oracle",)) == "oracle masks"
    assert mask_source_label("precomputed", ("graph", "sam")) == "precomputed graph+SAM masks"
    with pytest.raises(ValueError, match="unknown mask provider"):
        mask_source_label("auto")


@pytest.fixture()
def synth(tmp_path: Path) -> Path:
    """One tiny synthetic train sequence (2 pairs, 32x48) with its ground-truth masks."""
    root = tmp_path / "synth"
    write_dataset(root, {"train": 1}, SynthConfig(height=32, width=48, pairs_per_sequence=2,
                                                  substeps=2), seed=3)
    return root


def _file(root: Path) -> Path:
    return next((root / "train").glob("*.h5"))


def test_stored_masks_are_told_apart_by_their_source(synth):
    # what the synthetic generator (like the builder) stores is ground truth
    with h5py.File(_file(synth), "r") as f:
        assert mask_source_of(f) == "oracle"
        oracle = f["masks"][()]
    assert check_stored_masks(synth, "train", "oracle") == ("oracle",)
    with pytest.raises(ValueError, match="ground truth .oracle.*cacd masks DIR"):
        check_stored_masks(synth, "train", "precomputed")
    # `cacd masks` replaces them with computed ones, saying so
    write_masks(synth, "graph", splits=("train",), progress=False)
    with h5py.File(_file(synth), "r") as f:
        assert mask_source_of(f) == "graph" and f["masks"].attrs["enhance"] == "clahe"
        assert not np.array_equal(f["masks"][()], oracle)
    assert check_stored_masks(synth, "train", "precomputed") == ("graph",)
    with pytest.raises(ValueError, match="data.masks=oracle but its masks were computed"):
        check_stored_masks(synth, "train", "oracle")
    # masks of unknown origin (written before sources were recorded) pass for neither
    with h5py.File(_file(synth), "r+") as f:
        del f["masks"].attrs["source"]
        assert mask_source_of(f) == ""
    for kind in ("oracle", "precomputed"):
        with pytest.raises(ValueError, match="record no source"):
            check_stored_masks(synth, "train", kind)
    with h5py.File(_file(synth), "r+") as f:
        del f["masks"]
        assert mask_source_of(f) is None
    with pytest.raises(ValueError, match="has no masks"):
        check_stored_masks(synth, "train", "oracle")
    with pytest.raises(ValueError, match="mask source"):
        replace_masks(_file(synth), np.zeros((2, 32, 48), np.uint16), source="truth")


def test_training_computes_masks_unless_oracle_is_asked_for(synth):
    base = ["data.crop=null", "data.hflip=false", "model.proj_dim=8"]
    cfg = resolve(None, base)
    assert cfg["data"]["masks"] == "graph" and cfg["loss"]["distill_direction"] == "event_to_image"
    ds = make_dataset(cfg, synth, "train", train=True)
    assert not ds.with_masks  # the file's ground-truth masks are never read
    with h5py.File(_file(synth), "r") as f:
        oracle = f["masks"][0]
    sample = ds[0]
    enhanced = clahe_v(RPEASequence(_file(synth)).image(0))
    np.testing.assert_array_equal(np.asarray(sample["masks"]), graph_masks(enhanced))
    assert not np.array_equal(np.asarray(sample["masks"]), oracle)
    assert hfca_masks_label(cfg, synth) == "graph masks"
    # oracle only on request, and named so
    cfg_o = resolve(None, [*base, "data.masks=oracle"])
    ds_o = make_dataset(cfg_o, synth, "train", train=True)
    np.testing.assert_array_equal(np.asarray(ds_o[0]["masks"]), oracle)
    assert hfca_masks_label(cfg_o, synth) == "oracle masks"
    with pytest.raises(ValueError, match="ground truth"):
        make_dataset(resolve(None, [*base, "data.masks=precomputed"]), synth, "train", True)
    assert hfca_masks_label(resolve(None, [*base, "model.hfca=false"]), synth) is None


def test_config_names_mask_sources_honestly():
    # the old values still read (run folders written before the rename), said so
    with pytest.warns(ConfigDeprecationWarning, match="auto is deprecated and read as "
                      "data.masks=graph.*oracle"):
        assert resolve(None, ["data.masks=auto"])["data"]["masks"] == "graph"
    with pytest.warns(ConfigDeprecationWarning, match="data.masks=oracle"):
        assert resolve(None, ["data.masks=masks"])["data"]["masks"] == "oracle"
    with pytest.raises(ConfigError, match="did you mean 'oracle'"):
        resolve(None, ["data.masks=orcale"])
    with pytest.raises(ConfigError, match="did you mean 'mutual'"):
        resolve(None, ["loss.distill_direction=mutal"])
    assert resolve(None, ["loss.distill_direction=mutual"])["loss"]["distill_direction"] == "mutual"


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


def test_ablation_table_names_masks_and_direction():
    ablation = load_benchmark("ablation")
    row = {"image": True, "event": True, "params_M": 8.8, "mIoU": 50.0, "under": 1.0,
           "over": 2.0, "day": 3.0, "night": 4.0}
    rows = [{**row, "config": "concat", "hfca": False, "jbcd": False},
            {**row, "config": "full", "hfca": True, "jbcd": True, "hfca_masks": "oracle masks",
             "distill_direction": "event_to_image"},
            {**row, "config": "jbcd", "hfca": False, "jbcd": True, "hfca_masks": None,
             "distill_direction": "mutual"}]
    lines = ablation.format_table(rows).splitlines()
    assert lines[3].startswith("✓ | ✓ | ✓ (oracle masks) | ✓ (event→image) | 8.80")
    assert lines[4].startswith("✓ | ✓ | ✗ | ✓ (mutual) | 8.80")


def test_a_run_records_what_its_auxiliary_terms_trained_on(synth, tmp_path):
    from model.train import train

    sets = ["model.proj_dim=8", "data.crop=[32,32]", "train.batch_size=2", "train.max_steps=1",
            "train.max_minutes=null", "train.threads=1", "data.masks=oracle",
            "loss.distill_direction=mutual"]
    summary = train(resolve(None, sets), synth, tmp_path / "run", progress=False)
    assert summary["global_step"] == 1
    assert (summary["hfca_masks"], summary["distill_direction"]) == ("oracle masks", "mutual")
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["hfca_masks"] == "oracle masks"
