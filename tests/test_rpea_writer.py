"""One writer per contract: the RPEA schema/writer (`dataset.rpea_format`), the DSEC event writer it
is built on (`dataset.events.DsecWriter`), the one millisecond-index search, and the mode of every
published file (0o666 less the umask, never mkstemp's 0o600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter)
import numpy as np
import pytest

from dataset.events import DsecReader, DsecWriter, first_index_at, ms_to_idx, raw_to_dsec, time_range_indices
from dataset.reader import RPEASequence
from dataset.rpea_check import check_root
from dataset.rpea_format import (
    BLOSC_FILTER_ID,
    EVENT_CHUNK,
    SequenceWriter,
    identity_rectify_map,
    read_index,
    replace_masks,
    set_index_checksums,
    sha256_file,
    update_index,
)
from dataset.synthetic import SynthConfig, write_dataset
from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, encode

H, W, N = 32, 48, 4
PERIOD_US = 50_000
T_BASE_US = 3_000_000


def _write_sequence(path: Path, seed: int = 0) -> str:
    """A small valid sequence through `SequenceWriter`; returns its sha256 (index entry added)."""
    rng = np.random.default_rng(seed)
    with SequenceWriter(path, H, W) as wr:
        for k in range(N):
            m = 400
            t = np.sort(rng.integers(T_BASE_US + k * PERIOD_US, T_BASE_US + (k + 1) * PERIOD_US, m))
            wr.append_events(rng.integers(0, W, m), rng.integers(0, H, m), t, rng.integers(0, 2, m))
        wr.finish_events()
        t0 = T_BASE_US + np.arange(N) * PERIOD_US
        wr.create_pairs(N, with_masks=True)
        for i in range(N):
            wr.write_image(i, rng.integers(0, 256, (H, W, 3)).astype(np.uint8))
            wr.write_label(i, rng.integers(0, 19, (H, W)).astype(np.uint8))
            wr.write_mask(i, rng.integers(0, 9, (H, W)).astype(np.uint16))
        wr.write_pairs({
            "frame_id": np.arange(N), "frame_t_us": t0, "exposure_t0_us": t0,
            "exposure_t1_us": t0 + 4000, "event_t0_us": t0, "event_t1_us": t0 + PERIOD_US,
            "event_idx0": wr.event_index(t0), "event_idx1": wr.event_index(t0 + PERIOD_US),
            "has_label": np.ones(N, np.uint8), "overexposed_frac": np.zeros(N, np.float32),
            "underexposed_frac": np.zeros(N, np.float32), "is_night": np.zeros(N, np.uint8)})
        wr.write_calib("%YAML:1.0\n# test\n")
        wr.write_rectify_map(identity_rectify_map(H, W))
        sha = wr.commit({"sequence": path.stem, "scene": "test", "time_of_day": "day",
                         "split": path.parent.name, "source_session": path.stem})
    update_index(path.parent, {"name": path.stem, "file": path.name, "num_pairs": N,
                               "num_labelled": N, "sha256": sha, "time_of_day": "day",
                               "scene": "test", "session": path.stem})
    return sha


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- (a) both writers produce files the checker and the reader accept -------------------------


def test_sequence_writer_file_passes_check_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "train" / "seq.h5"
    _write_sequence(path)
    problems = check_root(tmp_path, alignment=False)
    assert [str(p) for p in problems if p.level == "error"] == []
    seq = RPEASequence(path)
    assert (seq.num_pairs, seq.height, seq.width) == (N, H, W) and seq.has_masks
    ev = seq.events(2)
    assert ev.x.size > 0 and ev.t0_us <= ev.t_us.min() and ev.t_us.max() < ev.t1_us


def test_synthetic_file_passes_check_and_reads(tmp_path: Path) -> None:
    cfg = SynthConfig(height=H, width=W, pairs_per_sequence=3, substeps=3)
    write_dataset(tmp_path, {"train": 2}, cfg, seed=4)
    problems = check_root(tmp_path, alignment=False)
    assert [str(p) for p in problems if p.level == "error"] == []
    index = read_index(tmp_path / "train")
    assert [s["name"] for s in index["sequences"]] == ["night_0000", "day_0001"]  # generation order
    for s in index["sequences"]:
        path = tmp_path / "train" / s["file"]
        seq = RPEASequence(path)
        assert (seq.num_pairs, seq.height, seq.width) == (3, H, W) and seq.has_masks
        assert seq.t_offset_us == 0 and seq.events(1).t0_us == PERIOD_US
        with h5py.File(path, "r") as f:  # the writer's layout: Blosc everywhere, RPEA chunks
            for name in ("images", "labels", "masks", "events/t", "ms_to_idx"):
                assert str(BLOSC_FILTER_ID) in f[name]._filters, name
            assert f["events/t"].chunks == (EVENT_CHUNK,)


def test_replace_masks_keeps_index_order_and_updates_checksums(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"val": 2}, SynthConfig(height=H, width=W, pairs_per_sequence=2),
                  with_masks=False)
    split = tmp_path / "val"
    before = read_index(split)
    name = before["sequences"][1]["file"]
    masks = np.arange(2 * H * W, dtype=np.uint16).reshape(2, H, W)
    sha = replace_masks(split / name, masks)
    set_index_checksums(split, {name: sha})
    after = read_index(split)
    assert [s["name"] for s in after["sequences"]] == [s["name"] for s in before["sequences"]]
    assert after["sequences"][1]["sha256"] == sha == sha256_file(split / name)
    assert after["sequences"][0] == before["sequences"][0]
    with h5py.File(split / name, "r") as f:
        assert np.array_equal(f["masks"][()], masks) and f["masks"].chunks == (1, H, W)
    with pytest.raises(ValueError, match="do not match"):
        replace_masks(split / name, masks[:1])
    assert sorted(p.name for p in split.iterdir()) == ["day_0001.h5", "index.json", "night_0000.h5"]


# --- (b) published files have the mode a plain open() gives -----------------------------------


def test_published_files_are_0644_under_umask_022(tmp_path: Path, umask_022) -> None:
    import torch

    from model.checkpoint import save_model, save_training_state
    from model.config import resolve
    from model.predict import predict_to_folder
    from model.train import build_net

    seq = tmp_path / "seqs" / "train" / "seq.h5"
    _write_sequence(seq)
    synth = tmp_path / "synth"
    write_dataset(synth, {"val": 1}, SynthConfig(height=H, width=W, pairs_per_sequence=1))
    sha = replace_masks(synth / "val" / "day_0000.h5", np.ones((1, H, W), np.uint16))
    set_index_checksums(synth / "val", {"day_0000.h5": sha})

    cfg = resolve(None, ["model.proj_dim=16"])
    net = build_net(cfg, 3)
    save_model(net, tmp_path / "run" / "best.safetensors")
    save_training_state(tmp_path / "run", torch.optim.SGD(net.parameters(), lr=0.1), {"step": 1})
    pngs = predict_to_folder(net, cfg, synth, "val", tmp_path / "figs", limit=1)

    ev = np.zeros(1000, EVENT_DTYPE)
    ev["t"] = np.arange(1000) * 7
    raw = tmp_path / "r.raw"
    raw.write_bytes(encode(ev, np.zeros(0, TRIGGER_DTYPE), 64, 48))
    raw_to_dsec(raw, tmp_path / "r.h5")

    published = [seq, seq.parent / "index.json", synth / "val" / "day_0000.h5",
                 synth / "val" / "index.json", tmp_path / "run" / "best.safetensors",
                 tmp_path / "run" / "last.optim.safetensors", tmp_path / "run" / "state.json",
                 *pngs, tmp_path / "r.h5"]
    assert len(pngs) == 1
    assert {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in published} == \
        {str(p.relative_to(tmp_path)): "0o644" for p in published}
    leftovers = [p for p in tmp_path.rglob(".*") if p.is_file()]
    assert leftovers == []


# --- (c) the one millisecond-index search equals a plain searchsorted -------------------------


def _queries(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lo, hi = (int(t[0]), int(t[-1])) if t.size else (0, 5000)
    boundaries = (np.arange(lo // 1000 - 2, hi // 1000 + 3) * 1000)
    return np.concatenate([boundaries, t[:50], t[-50:], t[:50] + 1, [lo - 1, lo - 10_000, hi, hi + 1,
                                                                      hi + 10_000],
                           rng.integers(lo - 3000, hi + 3000, 300)]).astype(np.int64)


@pytest.mark.parametrize("case", ["dense", "sparse", "ties", "single", "empty"])
def test_first_index_at_equals_searchsorted(case: str) -> None:
    rng = np.random.default_rng(["dense", "sparse", "ties", "single", "empty"].index(case))
    n = {"dense": 5000, "sparse": 40, "ties": 3000, "single": 1, "empty": 0}[case]
    span = {"dense": 2_000_000, "sparse": 9_000_000, "ties": 5_000, "single": 10, "empty": 1}[case]
    t = np.sort(rng.integers(7_000_000, 7_000_000 + span, n)).astype(np.int64)
    if case == "ties":  # many events exactly on millisecond boundaries
        t = np.sort(np.concatenate([t, np.repeat(np.arange(7_000_000, 7_005_000, 1000), 20)]))
    off = int(t[0]) if t.size else 7_000_000
    ms = ms_to_idx(t, off)
    ms_end = np.append(ms, t.size).astype(np.uint64)  # the RPEA convention (one entry more)
    t_rel = (t - off).astype(np.uint32)
    for q in _queries(t, rng):
        want = int(np.searchsorted(t, q, side="left"))
        assert first_index_at(t, q, ms, off) == want, q
        assert first_index_at(t, q, ms_end, off) == want, q
        assert first_index_at(t_rel, q - off, ms, 0) == want, q
        assert first_index_at(t, q) == want, q
        assert time_range_indices(t, q, q + 1500, ms, off) == \
            (want, int(np.searchsorted(t, q + 1500, side="left")))


def test_first_index_at_with_events_before_the_origin() -> None:
    t = np.array([100, 400, 999, 1000, 1000, 2500, 7000], np.int64)
    origin = 1000
    ms = ms_to_idx(t, origin)
    for q in range(0, 8000, 50):
        assert first_index_at(t, q, ms, origin) == np.searchsorted(t, q, side="left"), q


def test_readers_and_writer_use_the_same_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(5_000_000, 5_400_000, 20_000))
    ev = np.zeros(t.size, EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"] = t, rng.integers(0, W, t.size), rng.integers(0, H, t.size)
    with DsecWriter(tmp_path / "d.h5") as w:
        for part in np.array_split(ev, 5):
            w.append(part)
    with SequenceWriter(tmp_path / "s.h5", H, W) as sw:
        for part in np.array_split(ev, 5):
            sw.append_events(part["x"], part["y"], part["t"], part["p"])
        sw.finish_events()
        queries = _queries(t, rng)
        got = sw.event_index(queries)
    want = np.searchsorted(t, queries, side="left")
    assert np.array_equal(got, want)
    with DsecReader(tmp_path / "d.h5") as r:
        for q in queries[::7]:
            i = int(np.searchsorted(t, q, side="left"))
            assert r.index_range(q, q + 2000) == (i, int(np.searchsorted(t, q + 2000, side="left")))


def test_empty_files(tmp_path: Path) -> None:
    with DsecWriter(tmp_path / "e.h5") as w:
        w.append(np.zeros(0, EVENT_DTYPE))
    with DsecReader(tmp_path / "e.h5") as r:
        assert len(r) == 0 and r.index_range(0, 10**9) == (0, 0) and r.read_time(0, 10).size == 0
    with SequenceWriter(tmp_path / "s.h5", H, W) as sw:
        sw.finish_events()
        assert list(sw.event_index(np.array([-5, 0, 10**9]))) == [0, 0, 0]
        assert list(sw.h5["ms_to_idx"][()]) == [0]


# --- (d) out-of-order events: clamped and counted for RPEA, rejected by `rpea events convert` ---


def test_rpea_mode_sorts_within_and_clamps_across_chunks(tmp_path: Path) -> None:
    with SequenceWriter(tmp_path / "s.h5", H, W) as sw:
        z = np.zeros(3, np.uint16)
        sw.append_events(np.array([1, 2, 3]), z, np.array([1000, 3000, 2000]), np.ones(3))
        assert sw.events_reordered == 0  # sorted within the chunk, nothing clamped
        sw.append_events(np.array([4, 5, 6]), z, np.array([2500, 2999, 4000]), np.ones(3))
        assert sw.events_reordered == 2 and sw.num_events == 6
        sw.finish_events()
        t = sw.h5["events/t"][()]
        x = sw.h5["events/x"][()]
        ms = sw.h5["ms_to_idx"][()]
        sw.abort()
    assert list(t) == [0, 1000, 2000, 2000, 2000, 3000]  # relative to the first event (1000 us)
    assert list(x) == [1, 3, 2, 4, 5, 6]
    assert list(ms) == [0, 1, 2, 5, 6] and not (tmp_path / "s.h5").exists()


def test_convert_mode_rejects_unsorted(tmp_path: Path) -> None:
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"] = [1000, 3000, 5000]
    back = ev.copy()
    back["t"] = [2500, 6000, 7000]
    with pytest.raises(ValueError, match="sorted"), DsecWriter(tmp_path / "a.h5") as w:
        w.append(ev)
        w.append(back)
    within = ev.copy()
    within["t"] = [3000, 1000, 5000]
    with pytest.raises(ValueError, match="sorted"), DsecWriter(tmp_path / "b.h5") as w:
        w.append(within)
    assert list(tmp_path.iterdir()) == []


def test_dsec_file_has_no_end_entry_and_convert_chunking(tmp_path: Path) -> None:
    ev = np.zeros(5, EVENT_DTYPE)
    ev["t"] = [10, 20, 1500, 1500, 2999]
    with DsecWriter(tmp_path / "d.h5", attrs={"width": 4}) as w:
        w.append(ev)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        assert list(f["ms_to_idx"][()]) == [0, 2, 4]
        assert f["events/t"].chunks == (1 << 18,) and f.attrs["width"] == 4
        assert int(f["t_offset"][()]) == 10
