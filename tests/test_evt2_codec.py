"""EVT2 (32-bit words): round trip with our EVT2 encoder, faery agreement, fuzzing."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig import evt2
from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, RawReader, decode_file_with_stats

W, H = 640, 480


def sample(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 3_000_000_000, n))  # ~50 min: TIME_HIGH far past 2^24
    ev["x"], ev["y"], ev["p"] = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
    tr = np.zeros(40, TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(0, 3_000_000_000, 40))
    tr["id"], tr["value"] = rng.integers(0, 32, 40), np.arange(40) % 2
    return ev, tr


def test_evt2_roundtrip_and_header(tmp_path):
    ev, tr = sample()
    path = tmp_path / "a.raw"
    path.write_bytes(evt2.encode(ev, tr, W, H))
    reader = RawReader(path)
    assert reader.format == "EVT2" and (reader.width, reader.height) == (W, H)
    got, gtr, stats = decode_file_with_stats(path)
    np.testing.assert_array_equal(got, ev)
    np.testing.assert_array_equal(gtr, tr)
    assert stats.word_counts["EXT_TRIGGER"] == 40 and stats.anomalies == {}


def test_evt2_faery_agrees_on_encoded_file(tmp_path):
    import pytest

    faery = pytest.importorskip("faery", reason="PyPI package faery not installed")
    ev, tr = sample(seed=2)
    path = tmp_path / "b.raw"
    path.write_bytes(evt2.encode(ev, tr, W, H))
    evs, trs = [], []
    with faery.evt.Decoder(str(path), None, None) as dec:
        for packet in dec:
            evs += [packet["events"]] if "events" in packet else []
            trs += [packet["triggers"]] if "triggers" in packet else []
    f = np.concatenate(evs)
    ft = np.concatenate(trs)
    np.testing.assert_array_equal(f["t"].astype(np.int64), ev["t"])
    np.testing.assert_array_equal(f["x"], ev["x"])
    np.testing.assert_array_equal(f["on"].astype(np.uint8), ev["p"])
    np.testing.assert_array_equal(ft["t"].astype(np.int64), tr["t"])
    np.testing.assert_array_equal(ft["source"], tr["id"])


def test_evt2_out_of_geometry_and_backwards_time(tmp_path):
    words = [0x8000_0001,  # TIME_HIGH 1 -> base 64 us
             (1 << 28) | (5 << 22) | (700 << 11) | 3,  # x 700 >= 640: dropped
             (0 << 28) | (9 << 22) | (10 << 11) | 4,  # t 73
             (1 << 28) | (2 << 22) | (11 << 11) | 4]  # t 66: backwards, kept  # fmt: skip
    path = tmp_path / "c.raw"
    path.write_bytes(evt2.make_header(W, H) + np.array(words, "<u4").tobytes() + b"\x01")
    ev, _, stats = decode_file_with_stats(path)
    assert list(ev["t"]) == [73, 66] and list(ev["p"]) == [0, 1]
    assert stats.anomalies == {"out_of_geometry": 1, "time_low_backwards": 1, "truncated": 1}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_evt2_fuzz_random_bytes(tmp_path, body):
    path = tmp_path / "r.raw"
    path.write_bytes(b"% evt 2.0\n% geometry 64x32\n% end\n" + body)
    ev, tr, stats = decode_file_with_stats(path)
    if ev.size:
        assert ev["x"].max() < 64 and ev["y"].max() < 32
    reader = RawReader(path, chunk_bytes=12)
    parts = [p[0] for p in reader]
    got = np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)
    np.testing.assert_array_equal(got, ev)
    assert reader.stats.word_counts == stats.word_counts == evt2_word_histogram(path)


def evt2_word_histogram(path) -> dict[str, int]:
    """Counts per EVT2 word type of the whole words of `path` (the kernel counts CD words by
    difference, so this is what its statistics must equal)."""
    from rig.evt.common import EVT2_WORD_NAMES

    data = path.read_bytes()[RawReader(path).header.size_bytes :]
    words = np.frombuffer(data[: len(data) // 4 * 4], "<u4")
    hist = np.bincount(words >> 28, minlength=16)
    return {n: int(c) for n, c in zip(EVT2_WORD_NAMES, hist, strict=True) if c}


def test_evt2_word_counts_match_a_histogram_of_the_words(shared_data_dir, tmp_path):
    path = shared_data_dir / "evt" / "evt2_sample.raw"
    _, _, stats = decode_file_with_stats(path)
    assert stats.word_counts == evt2_word_histogram(path)
    assert stats.word_counts["CD_ON"] > 0 and stats.word_counts["CD_OFF"] > 0
    reader = RawReader(path, chunk_bytes=4096 + 4)
    for _ in reader:
        pass
    assert reader.stats.word_counts == stats.word_counts


def test_evt2_trigger_output_grows_when_the_sample_has_none(tmp_path):
    """The trigger output is sized from the first words; triggers only after them must make the
    kernel stop at a full output and resume, losing nothing (also in small read pieces)."""
    import rig.evt.reader as raw_reader

    rng = np.random.default_rng(3)
    n = 120_000  # CD words, well past the sampled first words
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.arange(n) * 2
    ev["x"], ev["y"], ev["p"] = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
    tr = np.zeros(3000, TRIGGER_DTYPE)
    tr["t"] = 2 * n + np.arange(3000)
    tr["value"] = np.arange(3000) % 2
    path = tmp_path / "late_triggers.raw"
    path.write_bytes(evt2.encode(ev, tr, W, H))
    for piece in (raw_reader.READ_PIECE_BYTES, 4096):
        raw_reader.READ_PIECE_BYTES, saved = piece, raw_reader.READ_PIECE_BYTES
        try:
            got, gtr, stats = decode_file_with_stats(path)
        finally:
            raw_reader.READ_PIECE_BYTES = saved
        np.testing.assert_array_equal(got, ev)
        np.testing.assert_array_equal(gtr, tr)
        assert stats.anomalies == {} and stats.word_counts == evt2_word_histogram(path)


def test_evt2_words_without_header_need_format_and_geometry(tmp_path):
    """No header: refused (never read as EVT3), and read as EVT2 once format and geometry are
    stated."""
    import pytest

    from rig.evt.errors import EventFileError

    ev, tr = sample(300, seed=4)
    data = evt2.encode(ev, tr, W, H)
    path = tmp_path / "bare.raw"
    path.write_bytes(data[len(evt2.make_header(W, H)) :])
    with pytest.raises(EventFileError, match="header names no event format"):
        decode_file_with_stats(path, width=W, height=H)
    got, gtr, stats = decode_file_with_stats(path, evt_format="evt2", width=W, height=H)
    assert (stats.format, stats.format_source, stats.geometry_source) == ("EVT2", "argument", "argument")
    np.testing.assert_array_equal(got, ev)
    np.testing.assert_array_equal(gtr, tr)
