"""Event toolkit: ms index, slicing, the DSEC HDF5 writer/reader, and `rpea events` CLI."""

from __future__ import annotations

import json

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter for h5py)
import numpy as np
import pytest
from click.testing import CliRunner

from dataset.cli_events import events as events_cli
from dataset.events import (
    DsecReader,
    DsecWriter,
    iter_time_windows,
    ms_to_idx,
    raw_to_dsec,
    slice_events,
    time_range_indices,
)
from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, decode_file, encode


def make_events(n=20000, t0=5_000_000, span=3_000_000, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0, t0 + span, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 64, n), rng.integers(0, 48, n), rng.integers(0, 2, n)
    return ev


def test_ms_index_definition():
    t = np.array([0, 999, 1000, 1000, 3500, 7000])
    idx = ms_to_idx(t)
    assert list(idx) == [0, 2, 4, 4, 5, 5, 5, 5]
    for m, i in enumerate(idx):  # first index with t >= 1000 m
        assert i == np.searchsorted(t, 1000 * m, side="left")
    assert list(ms_to_idx(t + 10, t_offset_us=10)) == list(idx)


def test_slicing_with_and_without_index_agree():
    ev = make_events()
    off = int(ev["t"][0])
    idx = ms_to_idx(ev["t"], off)
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = sorted(rng.integers(off - 5000, off + 3_100_000, 2))
        truth = ev[(ev["t"] >= a) & (ev["t"] < b)]
        np.testing.assert_array_equal(slice_events(ev, a, b), truth)
        np.testing.assert_array_equal(slice_events(ev, a, b, idx, off), truth)
    assert time_range_indices(ev["t"], 10, 5) == time_range_indices(ev["t"], 10, 10)
    windows = list(iter_time_windows(ev, 50_000))
    assert sum(len(w) for _, w in windows) == len(ev)
    assert all(np.all((w["t"] >= s) & (w["t"] < s + 50_000)) for s, w in windows)


def test_dsec_writer_streams_and_reader_slices(tmp_path):
    ev = make_events(50000)
    path = tmp_path / "ev.h5"
    with DsecWriter(path) as w:
        for part in np.array_split(ev, 7):
            w.append(part)
        assert not path.exists()  # atomic: only the temporary name exists before close
    assert path.exists()
    with h5py.File(path, "r") as f:
        g = f["events"]
        assert g["t"].dtype == np.uint32 and g["x"].dtype == np.uint16 and g["p"].dtype == np.uint8
        assert int(f["t_offset"][()]) == int(ev["t"][0]) and "t_offset" not in g
        np.testing.assert_array_equal(f["ms_to_idx"][:], ms_to_idx(ev["t"], int(ev["t"][0])))
        assert g["t"].compression is not None or "32001" in str(g["t"]._filters)
    with DsecReader(path) as r:
        assert len(r) == len(ev) and r.t_range_us == (int(ev["t"][0]), int(ev["t"][-1]))
        np.testing.assert_array_equal(r.read_index(0, len(ev)), ev)
        rng = np.random.default_rng(2)
        for _ in range(50):
            a, b = sorted(rng.integers(int(ev["t"][0]) - 10, int(ev["t"][-1]) + 10, 2))
            np.testing.assert_array_equal(r.read_time(a, b), ev[(ev["t"] >= a) & (ev["t"] < b)])


def test_dsec_writer_rejects_unsorted_and_overflow(tmp_path):
    ev = make_events(100)
    with pytest.raises(ValueError, match="sorted"), DsecWriter(tmp_path / "a.h5") as w:
        w.append(ev[::-1].copy())
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary file
    far = ev[:2].copy()
    far["t"] = [0, 1 << 33]
    with pytest.raises(ValueError, match="uint32"), DsecWriter(tmp_path / "b.h5") as w:
        w.append(far)


def test_raw_to_dsec_equals_decode(tmp_path):
    ev = make_events(30000, t0=0, span=20_000_000)
    tr = np.zeros(4, TRIGGER_DTYPE)
    tr["t"], tr["id"], tr["value"] = [10, 20, 30, 40], [0, 0, 1, 1], [1, 0, 1, 0]
    raw = tmp_path / "r.raw"
    raw.write_bytes(encode(ev, tr, 64, 48))
    stats = raw_to_dsec(raw, tmp_path / "r.h5", chunk_bytes=4096)
    assert stats.events == len(ev)
    with DsecReader(tmp_path / "r.h5") as r:
        np.testing.assert_array_equal(r.read_index(0, len(r)), decode_file(raw)[0])
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert list(f["triggers/t"][:]) == [10, 20, 30, 40]
        assert f.attrs["width"] == 64 and f.attrs["height"] == 48


def test_cli_info_and_convert(tmp_path):
    ev = make_events(5000, t0=0, span=2_000_000)
    tr = np.zeros(3, TRIGGER_DTYPE)
    tr["t"], tr["id"], tr["value"] = [5, 6, 7], [1, 1, 1], [1, 0, 1]
    raw = tmp_path / "c.raw"
    raw.write_bytes(encode(ev, tr, 64, 48))
    runner = CliRunner()
    res = runner.invoke(events_cli, ["info", str(raw), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["events"]["total"] == 5000 and info["events"]["on"] == int(ev["p"].sum())
    assert info["triggers"]["per_channel"] == {"1/falling": 1, "1/rising": 2}
    assert info["geometry"] == {"width": 64, "height": 48, "source": "header"}
    counts = np.bincount(ev["t"] // 1000)
    assert info["rate_ev_per_s"]["peak_1ms"] == counts.max() * 1000
    res = runner.invoke(events_cli, ["info", str(raw)])
    assert res.exit_code == 0 and "events      5000" in res.output
    out = tmp_path / "c.h5"
    res = runner.invoke(events_cli, ["convert", str(raw), str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(events_cli, ["convert", str(raw), str(out)])
    assert res.exit_code != 0 and "exists" in res.output
    with DsecReader(out) as r:
        assert len(r) == 5000
    bad = tmp_path / "bad.raw"
    bad.write_bytes(b"% evt 2.1\n% end\n")
    res = runner.invoke(events_cli, ["info", str(bad)])
    assert res.exit_code != 0 and "EVT21" in res.output
