"""Robustness: chunked == whole decoding for any chunk size, and fuzzing (random bytes, mutated
real files, encode -> decode round trips) never crashes, hangs or reads out of bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.evt.errors import EventFileError
from rig.evt3 import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    RawReader,
    decode_file,
    decode_file_with_stats,
    encode,
    iter_chunks,
    make_header,
    read_header,
)

W, H = 1280, 720
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def concat_chunks(path, chunk_bytes, **kw):
    reader = RawReader(path, chunk_bytes=chunk_bytes, **kw)
    parts = list(reader)
    ev = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, EVENT_DTYPE)
    tr = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, TRIGGER_DTYPE)
    return ev, tr, reader.stats


def word_histogram(path) -> dict[str, int]:
    """Counts per EVT3 word type of the whole words of `path`: what the statistics must say."""
    from rig.evt.common import EVT3_WORD_NAMES

    data = path.read_bytes()[read_header(path).size_bytes :]
    words = np.frombuffer(data[: len(data) // 2 * 2], "<u2")
    hist = np.bincount(words >> 12, minlength=16)
    return {n: int(c) for n, c in zip(EVT3_WORD_NAMES, hist, strict=True) if c}


def check_valid_output(ev, tr, width, height):
    assert ev.dtype == EVENT_DTYPE and tr.dtype == TRIGGER_DTYPE
    if ev.size:
        assert ev["x"].max() < width and ev["y"].max() < height
        assert ev["p"].max() <= 1 and ev["t"].min() >= 0
    if tr.size:
        assert tr["value"].max() <= 1 and tr["id"].max() <= 15


@pytest.mark.parametrize("chunk", [2, 6, 1000, 4096 + 2, 1 << 20])
def test_chunked_equals_whole_on_real_file(shared_data_dir, chunk):
    path = shared_data_dir / "evt" / "evt3_sample.raw"
    if chunk < 100:  # tiny chunks on a prefix only (keeps the test fast)
        data = path.read_bytes()
        head = RawReader(path).header.size_bytes
        path = _tmp_copy(data[: head + 20_000])
    whole, wtr, wst = decode_file_with_stats(path)
    ev, tr, cst = concat_chunks(path, chunk)
    np.testing.assert_array_equal(ev, whole)
    np.testing.assert_array_equal(tr, wtr)
    assert cst.word_counts == wst.word_counts and cst.anomalies == wst.anomalies
    assert cst.anomaly_samples == wst.anomaly_samples


def _tmp_copy(data: bytes):
    import tempfile
    from pathlib import Path

    f = tempfile.NamedTemporaryFile(suffix=".raw", delete=False)  # noqa: SIM115
    f.write(data)
    f.close()
    return Path(f.name)


def test_chunks_split_erc_counters_and_keep_them(tmp_path):
    head = make_header(W, H)
    words = [0x8000, 0x6001] + [0xE016, 0xF001, 0xF002, 0x7003] * 5 + [0x0001, 0x2002]
    path = tmp_path / "erc.raw"
    path.write_bytes(head + np.array(words, "<u2").tobytes())
    whole = decode_file_with_stats(path)[2]
    for chunk in (2, 4, 6, 8):
        _, _, st_ = concat_chunks(path, chunk)
        assert st_.erc_output_records == whole.erc_output_records == 5
        assert st_.erc_output_events == whole.erc_output_events == 5 * (1 | 2 << 12 | 3 << 24)
        assert st_.anomalies == {}


def test_truncated_and_odd_files(tmp_path, shared_data_dir):
    data = (shared_data_dir / "evt" / "evt3_sample.raw").read_bytes()
    head = RawReader(shared_data_dir / "evt" / "evt3_sample.raw").header.size_bytes
    full = decode_file(shared_data_dir / "evt" / "evt3_sample.raw")[0]
    for cut in (head, head + 1, head + 5001, len(data) - 1):
        path = tmp_path / f"cut{cut}.raw"
        path.write_bytes(data[:cut])
        ev, tr, st_ = decode_file_with_stats(path)
        # a prefix of the file decodes to a prefix of its events
        np.testing.assert_array_equal(ev, full[: len(ev)])
        assert (st_.anomalies.get("truncated", 0) == 1) == ((cut - head) % 2 == 1)


def test_geometry_wider_than_the_x_field_keeps_exactly_the_events(tmp_path, shared_data_dir):
    """x has 11 bits, so any width >= 2048 keeps every X word; address rows stay rows."""
    src = shared_data_dir / "evt" / "evt3_sample.raw"
    ref, ref_tr = decode_file(src)
    words = src.read_bytes()[RawReader(src).header.size_bytes :]
    path = tmp_path / "wide.raw"
    path.write_bytes(b"% evt 3.0\n% format EVT3;height=720;width=9000\n% end\n" + words)
    ev, tr, st_ = decode_file_with_stats(path)
    assert st_.width == 9000
    np.testing.assert_array_equal(ev, ref)
    np.testing.assert_array_equal(tr, ref_tr)


def test_headerless_file_is_refused_unless_format_and_geometry_are_given(tmp_path):
    """No header: nothing says the words are EVT3 or how large the sensor is, so the file is
    refused until the caller states both (the CLI's --format and --width/--height)."""
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = [1, 2, 3], [10, 700, 20], [5, 6, 600], [1, 0, 1]
    data = encode(ev, None, W, H)
    body = data[len(make_header(W, H)) :]
    path = tmp_path / "nohdr.raw"
    path.write_bytes(body)
    with pytest.raises(EventFileError, match=r"nohdr\.raw: the header names no event format.*--format evt3"):
        decode_file(path)
    with pytest.raises(EventFileError, match="--width and --height"):
        decode_file(path)  # the message asks for the geometry too
    with pytest.raises(EventFileError, match="names no event format"):
        decode_file(path, width=640, height=480)  # the geometry alone is not enough
    with pytest.raises(EventFileError, match="no sensor geometry in the header; give --width and --height"):
        decode_file(path, evt_format="evt3")  # nor is the format alone
    got, _, st_ = decode_file_with_stats(path, width=640, height=480, evt_format="evt3")
    assert (st_.format, st_.format_source) == ("EVT3", "argument")
    assert st_.geometry_source == "argument" and (st_.width, st_.height) == (640, 480)
    assert list(got["x"]) == [10] and st_.anomalies == {"out_of_geometry": 2}
    ev2, _, cst = concat_chunks(path, 4, width=640, height=480, evt_format="EVT 3.0")
    np.testing.assert_array_equal(ev2, got)
    assert cst.anomalies == st_.anomalies


@pytest.mark.parametrize(
    "name, data",
    [
        ("notes.raw", b"just some text\nthat is not an event file\n" * 20),
        ("empty.raw", b""),
        ("h5.raw", b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8),
        ("dat.raw", b"% Data file containing CD events.\n% Version 2\n% Date 2020-01-01 00:00:00\n"
                    b"% Height 480\n% Width 640\n\x0c\x08" + bytes(range(256)) * 8),
        ("comment.raw", b"% some tool wrote this\n% end\n" + bytes(64)),
    ],
)  # fmt: skip
def test_files_that_are_not_raw_recordings_are_refused(tmp_path, name, data):
    """What used to "decode" as EVT3 at a 2048x2048 format maximum, exit code 0: a text file, an
    empty file, an HDF5 file or a Prophesee .dat given as .raw. Now: an error naming the file."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(EventFileError, match=rf"{name}: the header names no event format"):
        decode_file(path)
    with pytest.raises(EventFileError, match="names no event format"):
        list(iter_chunks(path))
    with pytest.raises(EventFileError):
        RawReader(path, width=640, height=480)


def test_geometry_comes_from_header_then_arguments_then_plugin_name(tmp_path):
    body = encode(np.zeros(1, EVENT_DTYPE), None, W, H)[len(make_header(W, H)) :]
    path = tmp_path / "geo.raw"
    path.write_bytes(b"% evt 3.0\n% end\n" + body)
    with pytest.raises(EventFileError, match=r"geo\.raw: no sensor geometry in the header; give --width"):
        decode_file(path)
    assert RawReader(path, width=320, height=240).stats.geometry_source == "argument"
    path.write_bytes(b"% evt 3.0\n% plugin_name hal_plugin_gen31_fx3\n% end\n" + body)
    r = RawReader(path)
    assert (r.width, r.height, r.stats.geometry_source) == (640, 480, "plugin_name")
    assert RawReader(path, width=320, height=240).stats.geometry_source == "argument"
    path.write_bytes(b"% evt 3.0\n% geometry 100x50\n% plugin_name hal_plugin_gen31_fx3\n% end\n" + body)
    r = RawReader(path, width=320, height=240)
    assert (r.width, r.height, r.stats.geometry_source) == (100, 50, "header")


def test_stated_format_must_agree_with_the_header(tmp_path):
    path = tmp_path / "a.raw"
    path.write_bytes(encode(np.zeros(1, EVENT_DTYPE), None, W, H))
    assert RawReader(path, evt_format="evt3").stats.format_source == "header"
    with pytest.raises(EventFileError, match="header names format EVT3 but EVT2 was stated"):
        decode_file(path, evt_format="evt2")
    with pytest.raises(EventFileError, match="unknown event format 'evt9'"):
        decode_file(path, evt_format="evt9")


def test_missing_file_and_unsupported_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.raw"):
        decode_file(tmp_path / "nope.raw")
    path = tmp_path / "histo.raw"
    path.write_bytes(b"% format HISTO3D;height=720;width=1280\n% end\n" + bytes(16))
    with pytest.raises(EventFileError, match="HISTO3D"):
        decode_file(path)
    with pytest.raises(EventFileError, match="HISTO3D"):
        decode_file(path, evt_format="evt3")  # the header's word is not overridden


@FUZZ
@given(st.binary(min_size=0, max_size=3000), st.sampled_from([b"", b"% evt 3.0\n% end\n",
                                                             b"% geometry 64x32\n"]))  # fmt: skip
def test_fuzz_random_bytes(tmp_path, body, head):
    path = tmp_path / "rand.raw"
    path.write_bytes(head + body)
    ev, tr, st_ = decode_file_with_stats(path, width=64, height=32, evt_format="evt3")
    check_valid_output(ev, tr, st_.width, st_.height)
    # the address words are counted by difference in the kernel: garbage must not skew that
    assert st_.word_counts == word_histogram(path)
    ev2, tr2, st2 = concat_chunks(path, 6, width=64, height=32, evt_format="evt3")
    np.testing.assert_array_equal(ev2, ev)
    np.testing.assert_array_equal(tr2, tr)
    assert (st2.word_counts, st2.anomalies, st2.anomaly_samples) == (
        st_.word_counts, st_.anomalies, st_.anomaly_samples)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 29_999), st.integers(0, 255)), min_size=1, max_size=40),
       st.integers(0, 30_000))  # fmt: skip
def test_fuzz_mutated_real_file(tmp_path, shared_data_dir, flips, cut):
    src = shared_data_dir / "evt" / "evt3_sample.raw"
    head = RawReader(src).header.size_bytes
    data = bytearray(src.read_bytes()[: head + 30_000])
    for pos, val in flips:
        data[head + pos] = val
    path = tmp_path / "mut.raw"
    path.write_bytes(bytes(data[: head + cut]))
    ev, tr, st_ = decode_file_with_stats(path)
    check_valid_output(ev, tr, st_.width, st_.height)
    assert st_.word_counts == word_histogram(path)
    ev2, tr2, st2 = concat_chunks(path, 4098)
    np.testing.assert_array_equal(ev2, ev)
    assert (st2.word_counts, st2.anomalies) == (st_.word_counts, st_.anomalies)


@st.composite
def event_streams(draw):
    n = draw(st.integers(0, 300))
    dt = draw(st.lists(st.integers(0, 40_000_000), min_size=n, max_size=n))
    t = np.cumsum(np.array(dt, np.int64) // draw(st.sampled_from([1, 1000, 100_000])))
    t += draw(st.integers(0, 50_000_000))
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = draw(st.lists(st.integers(0, W - 1), min_size=n, max_size=n)) if n else []
    ev["y"] = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)) if n else []
    ev["p"] = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)) if n else []
    ev = ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]
    m = draw(st.integers(0, 20))
    tr = np.zeros(m, TRIGGER_DTYPE)
    if m:
        lo, hi = (int(t[0]), int(t[-1])) if n else (0, 100_000_000)
        tr["t"] = np.sort(draw(st.lists(st.integers(lo, hi + 1), min_size=m, max_size=m)))
        tr["id"] = draw(st.lists(st.integers(0, 15), min_size=m, max_size=m))
        tr["value"] = draw(st.lists(st.integers(0, 1), min_size=m, max_size=m))
    return ev, tr


@FUZZ
@given(event_streams())
def test_fuzz_encode_decode_roundtrip(tmp_path, stream):
    ev, tr = stream
    path = tmp_path / "rt.raw"
    path.write_bytes(encode(ev, tr, W, H))
    got, gtr, st_ = decode_file_with_stats(path)
    np.testing.assert_array_equal(got, ev)
    np.testing.assert_array_equal(gtr, tr)
    assert st_.anomalies == {}
    chunks = list(iter_chunks(path, chunk_bytes=8))
    if chunks:
        np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), ev)


@pytest.mark.parametrize("name", ["evt3_sample.raw", "evt2_sample.raw"])
def test_read_in_small_pieces_equals_one_piece(shared_data_dir, monkeypatch, name):
    """`read_all` reads the file in pieces into one buffer and decodes them into one output:
    many tiny pieces (the output sized from the first one, so it grows) give the same result."""
    import rig.evt.reader as raw_reader

    path = shared_data_dir / "evt" / name
    ev, tr, stats = decode_file_with_stats(path)
    monkeypatch.setattr(raw_reader, "READ_PIECE_BYTES", 4096 + 8)
    ev2, tr2, stats2 = decode_file_with_stats(path)
    np.testing.assert_array_equal(ev2, ev)
    np.testing.assert_array_equal(tr2, tr)
    assert stats2 == stats and stats.events == ev.size > 100_000


def test_decode_table_rows_and_columns():
    """The EVT3 kernel's lookup: a row's y and in-geometry bit, an x column's x, polarity and
    in-geometry bit (x has 11 bits: a geometry wider than 2048 keeps every x)."""
    from rig.evt import evt3_kernels as k

    tab = k.decode_table(100, 50)
    ok = 1 << 48
    assert tab[49] == (49 << 16) | ok and tab[50] == 50 << 16  # rows 0..49 are in
    assert tab[0x800 | 3] == (0x803 << 16)  # bit 11 (system type) is never a CD row
    assert tab[k.ROW_NOT_CD] == 0
    assert tab[k.X_TABLE + 99] == 99 | ok and tab[k.X_TABLE + 100] == 100
    assert tab[k.X_TABLE + (1 << 11 | 7)] == 7 | (1 << 32) | ok  # polarity bit 11 -> p
    wide = k.decode_table(9000, 720)
    assert all(wide[k.X_TABLE + x] & ok for x in (0, 2047))


def test_word_counts_match_a_histogram_of_the_words(shared_data_dir):
    path = shared_data_dir / "evt" / "evt3_sample.raw"
    _, _, stats = decode_file_with_stats(path)
    assert stats.word_counts == word_histogram(path)
    assert stats.words == (path.stat().st_size - RawReader(path).header.size_bytes) // 2
    for chunk in (4098, 1 << 16):
        _, _, cst = concat_chunks(path, chunk)
        assert cst.word_counts == stats.word_counts


def test_output_grows_when_the_sampled_size_falls_short(tmp_path):
    """The first output size is extrapolated from the first words; a sparse start followed by
    dense vector rows and a trigger burst must still decode every event and trigger exactly."""
    rng = np.random.default_rng(7)
    n_lone, n_rows = 40_000, 30_000  # ~40 K lone-event words first, then ~120 K vector words
    lone = np.zeros(n_lone, EVENT_DTYPE)
    lone["t"] = np.arange(n_lone) * 3
    lone["x"], lone["y"], lone["p"] = rng.integers(0, W, n_lone), rng.integers(0, H, n_lone), 1
    t_rows = n_lone * 3 + np.arange(n_rows)
    x0 = rng.integers(0, W - 32, n_rows)
    dense = np.zeros(n_rows * 32, EVENT_DTYPE)  # full 32-pixel rows: 32 events per 4 words
    dense["t"] = np.repeat(t_rows, 32)
    dense["x"] = np.repeat(x0, 32) + np.tile(np.arange(32), n_rows)
    dense["y"] = np.repeat(rng.integers(0, H, n_rows), 32)
    ev = np.concatenate([lone, dense])
    tr = np.zeros(5000, TRIGGER_DTYPE)
    tr["t"] = t_rows[-1] - 5000 + np.arange(5000)
    tr["value"] = np.arange(5000) % 2
    path = tmp_path / "late_dense.raw"
    path.write_bytes(encode(ev, tr, W, H))
    got, gtr, st_ = decode_file_with_stats(path)
    np.testing.assert_array_equal(got, ev)
    np.testing.assert_array_equal(gtr, tr)
    assert st_.anomalies == {} and st_.events == ev.size
