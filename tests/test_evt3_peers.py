"""Independent decoders agree with ours: PyPI `evt3` (Rust) and `faery` (Rust).

On the encoder's files (events and trigger edges, across 24-bit wraps) and on the real
Prophesee recordings in ../shared/data/evt/.
"""

from __future__ import annotations

import numpy as np
import pytest

from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, decode_file, encode

W, H = 1280, 720


def evt3_decode(path):
    evt3 = pytest.importorskip("evt3", reason="PyPI package evt3 not installed (pip install evt3)")
    ev, tr = evt3.decode_file_with_triggers(str(path))
    events = np.zeros(len(ev), EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = ev.timestamp, ev.x, ev.y, ev.polarity
    triggers = np.zeros(len(tr), TRIGGER_DTYPE)
    triggers["t"], triggers["id"], triggers["value"] = tr.timestamp, tr.id, tr.value
    return events, triggers


def faery_decode(path, size=None):
    faery = pytest.importorskip("faery", reason="PyPI package faery not installed (pip install faery)")
    evs, trs = [], []
    with faery.evt.Decoder(str(path), size, None) as dec:
        for packet in dec:
            if "events" in packet:
                evs.append(packet["events"])
            if "triggers" in packet:
                trs.append(packet["triggers"])
    ev = np.concatenate(evs) if evs else np.zeros(0, faery.EVENTS_DTYPE)
    events = np.zeros(len(ev), EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = ev["t"], ev["x"], ev["y"], ev["on"]
    tr = np.concatenate(trs) if trs else None
    triggers = np.zeros(0 if tr is None else len(tr), TRIGGER_DTYPE)
    if tr is not None:
        triggers["t"], triggers["id"], triggers["value"] = tr["t"], tr["source"], tr["rising"]
    return events, triggers


def synthetic(seed: int, n: int, t_max: int):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = rng.integers(0, t_max, n)
    ev["t"][: n // 2] = np.repeat(rng.integers(0, t_max, n // 64), 32)[: n // 2]  # bursts
    ev["y"] = rng.integers(0, H, n)
    ev["y"][: n // 2] = np.repeat(rng.integers(0, H, n // 64), 32)[: n // 2]
    ev["x"] = rng.integers(0, W, n)
    ev["p"] = rng.integers(0, 2, n)
    ev = np.unique(ev)  # sorted by (t, x, y, p); re-sort rows for vector runs
    ev = ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]
    tr = np.zeros(300, TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(0, t_max, 300))
    tr["id"] = rng.integers(0, 2, 300)
    tr["value"] = np.arange(300) % 2
    return ev, tr


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    ev, tr = synthetic(0, 64_000, 45_000_000)  # three 24-bit wraps
    path = tmp_path_factory.mktemp("peers") / "enc.raw"
    path.write_bytes(encode(ev, tr, W, H))
    return path, ev, tr


def test_encoder_output_decodes_identically_with_evt3(encoded):
    path, ev, tr = encoded
    e3, t3 = evt3_decode(path)
    np.testing.assert_array_equal(e3, ev)
    np.testing.assert_array_equal(t3, tr)
    ours = decode_file(path)
    np.testing.assert_array_equal(ours[0], e3)
    np.testing.assert_array_equal(ours[1], t3)


def test_encoder_output_decodes_identically_with_faery(encoded):
    path, ev, tr = encoded
    ef, tf = faery_decode(path)
    np.testing.assert_array_equal(ef, ev)
    np.testing.assert_array_equal(tf, tr)


def test_real_evt3_file_bit_exact_with_evt3(shared_data_dir):
    path = shared_data_dir / "evt" / "evt3_sample.raw"
    ours, _ = decode_file(path)
    theirs, _ = evt3_decode(path)
    assert len(ours) == 219_596
    np.testing.assert_array_equal(ours, theirs)


def test_real_evt3_file_matches_faery_except_its_time_clamp(shared_data_dir):
    """faery never lets time go back (it ignores a smaller TIME_LOW); OpenEB and we keep it."""
    path = shared_data_dir / "evt" / "evt3_sample.raw"
    ours, _ = decode_file(path)
    theirs, _ = faery_decode(path, (W, H))
    assert len(ours) == len(theirs)
    for f in ("x", "y", "p"):
        np.testing.assert_array_equal(ours[f], theirs[f])
    diff = ours["t"] != theirs["t"]
    # where they differ, faery kept the larger earlier time: the backward TIME_LOW steps (11 us)
    assert np.all(theirs["t"][diff] > ours["t"][diff])
    assert np.all(theirs["t"][diff] - ours["t"][diff] <= 11)


def test_real_evt2_file_bit_exact_with_faery(shared_data_dir):
    path = shared_data_dir / "evt" / "evt2_sample.raw"
    ours, triggers = decode_file(path)
    theirs, _ = faery_decode(path, (640, 480))
    assert len(ours) == 539_481 and len(triggers) == 0
    np.testing.assert_array_equal(ours, theirs)
