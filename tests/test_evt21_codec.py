"""EVT 2.1 (64-bit vectorised words): round trips with our encoder, words written by hand from the
documented layout (Prophesee docs, OpenEB `evt21_event_types.h`), both byte orders, time, triggers,
geometry, truncation, chunking and fuzzing.

Order of the decoded events: word order, and by increasing x within a word. Our encoder writes
the events of one time sorted by (y, p, x), so a decoded file equals its input sorted by
(t, y, p, x); tests that compare with other orders sort both sides by (t, y, x, p).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rig.evt.reader as raw_reader
from rig.evt import evt21
from rig.evt.common import EVENT_DTYPE, EVT21_WORD_NAMES, TRIGGER_DTYPE
from rig.evt.errors import EventFileError
from rig.evt.header import parse_header, read_header
from rig.evt.reader import RawReader, decode_file, decode_file_with_stats, iter_chunks

W, H = 1280, 720
FIXED = {"date": "2024-01-01 00:00:00"}
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
# the word types (bits 63..60)
NEG, POS, TIME_HIGH, TRIGGER, OTHERS, CONTINUED = 0x0, 0x1, 0x8, 0xA, 0xE, 0xF
HEAD_LITTLE = b"% evt 2.1\n% format EVT21;height=720;width=1280\n% endianness little\n% end\n"


def cd(typ: int, ts: int, x: int, y: int, mask: int) -> int:
    """A CD word from the documented fields: type 63..60, ts 59..54, x 53..43, y 42..32, mask."""
    return typ << 60 | ts << 54 | x << 43 | y << 32 | mask


def th(high: int) -> int:
    return TIME_HIGH << 60 | high << 32


def trig(ts: int, channel: int, value: int) -> int:
    return TRIGGER << 60 | ts << 54 | channel << 40 | value << 32


def little(words: list[int]) -> bytes:
    """Words as current OpenEB stores them: one little-endian uint64 each."""
    return b"".join(struct.pack("<Q", w) for w in words)


def legacy(words: list[int]) -> bytes:
    """Words in the legacy layout: bits 63..32 first, then 31..0, each half little-endian."""
    return b"".join(struct.pack("<II", w >> 32, w & 0xFFFFFFFF) for w in words)


def write(tmp_path, words: list[int], head: bytes = HEAD_LITTLE, name: str = "w.raw", tail: bytes = b""):
    path = tmp_path / name
    path.write_bytes(head + little(words) + tail)
    return path


def by_tyxp(ev: np.ndarray) -> np.ndarray:
    return ev[np.lexsort((ev["p"], ev["x"], ev["y"], ev["t"]))]


def by_typx(ev: np.ndarray) -> np.ndarray:
    return ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]


def sample(n=5000, seed=0, t_max=3_000_000_000, rows=8):
    """Random events, sorted by time, half of them in bursts (8 events of one time, row and
    polarity in one 32-pixel block: vector material), and triggers on all 32 channels."""
    rng = np.random.default_rng(seed)
    n_b = n // 16
    ev = np.zeros(n_b * 8 + (n - n_b * 8), EVENT_DTYPE)
    ev["t"] = rng.integers(0, t_max, ev.size)
    ev["x"], ev["y"] = rng.integers(0, W, ev.size), rng.integers(0, rows, ev.size)
    ev["p"] = rng.integers(0, 2, ev.size)
    burst = ev[: n_b * 8].reshape(n_b, 8)
    for f in ("t", "y", "p"):
        burst[f] = burst[f][:, :1]
    burst["x"] = burst["x"][:, :1] // 32 * 32 + rng.integers(0, 32, (n_b, 8))
    burst["x"] = np.minimum(burst["x"], W - 1)
    ev = ev[np.argsort(ev["t"], kind="stable")]
    tr = np.zeros(40, TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(0, t_max, 40))
    tr["id"], tr["value"] = rng.integers(0, 32, 40), np.arange(40) % 2
    return ev, tr


def concat_chunks(path, chunk_bytes, **kw):
    reader = RawReader(path, chunk_bytes=chunk_bytes, **kw)
    parts = list(reader)
    ev = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, EVENT_DTYPE)
    tr = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, TRIGGER_DTYPE)
    return ev, tr, reader.stats


def word_histogram(path, endianness="little") -> dict[str, int]:
    """Counts per word type of the whole words of `path`: what the statistics must say."""
    data = path.read_bytes()[read_header(path).size_bytes :]
    words = np.frombuffer(data[: len(data) // 8 * 8], "<u8")
    types = (words >> np.uint64(28 if endianness == "legacy" else 60)) & np.uint64(0xF)
    hist = np.bincount(types.astype(np.int64), minlength=16)
    return {n: int(c) for n, c in zip(EVT21_WORD_NAMES, hist, strict=True) if c}


# -- the documented layout, written by hand -------------------------------------------------------
def test_documented_byte_order_example(tmp_path):
    """The docs' example: the 64-bit word 0x0102030405060708 is sent as 08 07 06 05 04 03 02 01
    (GenX320: one little-endian uint64, OpenEB "little") or as 04 03 02 01 08 07 06 05 (IMX636:
    two little-endian 32-bit halves, high half first, OpenEB "legacy"). As an EVT 2.1 word it is
    EVT_NEG, ts 4, x 64, y 772, mask 0x05060708 (bits 3, 8-10, 17, 18, 24, 26)."""
    word = 0x0102030405060708
    assert word == cd(NEG, 4, 64, 772, 0x05060708)
    assert little([word]) == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert legacy([word]) == bytes([4, 3, 2, 1, 8, 7, 6, 5])
    expected_x = [64 + b for b in (3, 8, 9, 10, 17, 18, 24, 26)]
    for endian, data in (("little", little([th(0), word])), ("legacy", legacy([th(0), word]))):
        path = tmp_path / f"doc_{endian}.raw"
        head = f"% evt 2.1\n% format EVT21;height=2048;width=2048;endianness={endian}\n% end\n".encode()
        path.write_bytes(head + data)
        ev, _, stats = decode_file_with_stats(path)
        assert stats.endianness == endian
        assert list(ev["x"]) == expected_x
        assert set(ev["y"]) == {772} and set(ev["p"]) == {0} and set(ev["t"]) == {4}
        assert stats.word_counts == {"EVT_TIME_HIGH": 1, "EVT_NEG": 1} and stats.anomalies == {}
        # our encoder writes exactly these bytes for these events
        enc = evt21.encode(ev, None, 2048, 2048, endianness=endian)
        assert enc[parse_header(enc).size_bytes :] == data


def test_hand_written_words(tmp_path):
    """OpenEB's decoder test stream: a mask is relative to any x (not only multiples of 32),
    polarity is the type, the 6 time bits add to TIME_HIGH << 6; words before the first
    TIME_HIGH are dropped."""
    words = [
        cd(POS, 1, 2, 3, 0b1),  # before any TIME_HIGH: skipped
        th(0),
        cd(NEG, 5, 5, 4, 1 << 7 | 1 << 3 | 1),
        cd(POS, 20, 10, 6, 1 << 14 | 1 << 10 | 1 << 4),
        th(15),
        cd(NEG, 5, 5, 4, 1),
        trig(63, 17, 1),
        cd(POS, 63, 1247, 719, 1 << 31 | 1),  # last pixel of the sensor
        CONTINUED << 60 | 0x123,
    ]
    ev, tr, stats = decode_file_with_stats(write(tmp_path, words))
    assert list(ev["x"]) == [5, 8, 12, 14, 20, 24, 5, 1247, 1278]
    assert list(ev["y"]) == [4, 4, 4, 6, 6, 6, 4, 719, 719]
    assert list(ev["p"]) == [0, 0, 0, 1, 1, 1, 0, 1, 1]
    assert list(ev["t"]) == [5, 5, 5, 20, 20, 20, (15 << 6) + 5, (15 << 6) + 63, (15 << 6) + 63]
    assert tr.tolist() == [((15 << 6) + 63, 17, 1)]
    assert stats.skipped_words == 1
    assert stats.word_counts == {"EVT_NEG": 2, "EVT_POS": 3, "EVT_TIME_HIGH": 2, "EXT_TRIGGER": 1,
                                 "CONTINUED": 1}  # fmt: skip
    assert stats.anomalies == {} and stats.words == len(words)


def test_time_high_loop_and_backwards(tmp_path):
    """OpenEB: a loop (+2^34 us) only when TIME_HIGH falls back by the whole 28-bit range; a
    smaller fall is kept as is (and counted); time going back under one TIME_HIGH is kept."""
    top = (1 << 28) - 1
    words = [th(0), cd(NEG, 5, 5, 4, 1),
             th(top), th(0), cd(NEG, 5, 5, 4, 1),  # loop
             th(top), th(0), cd(NEG, 5, 5, 4, 1),  # second loop
             th(100), th(40), cd(POS, 7, 1, 1, 1),  # backwards, not a loop
             cd(POS, 3, 2, 1, 1)]  # fmt: skip
    ev, _, stats = decode_file_with_stats(write(tmp_path, words))
    loop = 1 << 34
    assert list(ev["t"]) == [5, loop + 5, 2 * loop + 5, 2 * loop + (40 << 6) + 7, 2 * loop + (40 << 6) + 3]
    assert stats.anomalies == {"time_high_backwards": 1, "time_low_backwards": 1}
    head = len(HEAD_LITTLE)
    assert stats.anomaly_samples == [(head + 9 * 8, "time_high_backwards"),
                                     (head + 11 * 8, "time_low_backwards")]  # fmt: skip
    for chunk in (8, 16, 24):
        cev, _, cst = concat_chunks(write(tmp_path, words), chunk)
        np.testing.assert_array_equal(cev, ev)
        assert cst.anomaly_samples == stats.anomaly_samples


def test_out_of_geometry_pixels_are_dropped_and_counted(tmp_path):
    head = b"% evt 2.1\n% format EVT21;height=50;width=100\n% endianness little\n% end\n"
    words = [th(1), cd(POS, 0, 96, 3, 0xFF),  # x 96..99 kept, 100..103 dropped
             cd(NEG, 1, 0, 50, 0b11),  # row 50 >= height: both dropped
             cd(NEG, 2, 1, 49, 0b101)]  # fmt: skip
    ev, _, stats = decode_file_with_stats(write(tmp_path, words, head))
    assert list(zip(ev["x"].tolist(), ev["y"].tolist(), strict=True)) == [(96, 3), (97, 3), (98, 3), (99, 3),
                                                                          (1, 49), (3, 49)]  # fmt: skip
    assert stats.anomalies == {"out_of_geometry": 6}
    hb = len(head)
    assert stats.anomaly_samples == [(hb + 8, "out_of_geometry"), (hb + 16, "out_of_geometry")]


def test_triggers_and_erc_counters(tmp_path):
    erc_in = OTHERS << 60 | 3 << 54 | 0x0014 << 32 | 1000
    erc_out = OTHERS << 60 | 4 << 54 | 0x0016 << 32 | (1 << 22) | 700  # bits past 21 are not count
    other = OTHERS << 60 | 0x00AA << 32 | 5
    words = [th(2), trig(1, 0, 1), trig(2, 31, 0), erc_in, erc_out, other, erc_out]
    ev, tr, stats = decode_file_with_stats(write(tmp_path, words))
    assert ev.size == 0
    assert tr.tolist() == [(129, 0, 1), (130, 31, 0)]
    assert (stats.erc_input_records, stats.erc_input_events) == (1, 1000)
    assert (stats.erc_output_records, stats.erc_output_events) == (2, 1400)
    assert stats.word_counts == {"EVT_TIME_HIGH": 1, "EXT_TRIGGER": 2, "OTHERS": 4}
    assert stats.anomalies == {}


def test_reserved_words_are_counted(tmp_path):
    words = [th(0), 0x2 << 60, 0x9 << 60 | 7, cd(POS, 0, 0, 0, 1)]
    ev, _, stats = decode_file_with_stats(write(tmp_path, words))
    assert ev.size == 1 and stats.anomalies == {"reserved_word": 2}
    assert stats.word_counts == word_histogram(tmp_path / "w.raw")


def test_truncated_last_word(tmp_path):
    words = [th(0), cd(POS, 1, 10, 10, 1), cd(NEG, 2, 11, 10, 1)]
    path = write(tmp_path, words, tail=b"\x01\x02\x03\x04\x05")
    ev, _, stats = decode_file_with_stats(path)
    assert len(ev) == 2 and stats.words == 3
    assert stats.anomalies == {"truncated": 1}
    assert stats.anomaly_samples == [(len(HEAD_LITTLE) + 3 * 8, "truncated")]
    for chunk in (8, 16, 4096):
        cev, _, cst = concat_chunks(path, chunk)
        np.testing.assert_array_equal(cev, ev)
        assert cst.anomaly_samples == stats.anomaly_samples


# -- header: format, byte order, geometry ---------------------------------------------------------
def test_header_and_reader_facts(tmp_path):
    data = evt21.encode(*sample(50), W, H, header_extra=FIXED)
    hdr = parse_header(data)
    assert hdr.evt_format == "EVT21" and hdr.geometry == (W, H)
    assert hdr.fields["evt"] == "2.1" and hdr.fields["format"] == "EVT21;height=720;width=1280"
    assert hdr.fields["endianness"] == "little"
    path = tmp_path / "h.raw"
    path.write_bytes(data)
    r = RawReader(path)
    assert (r.format, r.word_bytes, r.endianness, r.width, r.height) == ("EVT21", 8, "little", W, H)
    leg = parse_header(evt21.encode(None, None, W, H, endianness="legacy"))
    assert leg.fields["format"] == "EVT21;height=720;width=1280;endianness=legacy"
    with pytest.raises(ValueError, match="endianness"):
        evt21.encode(None, None, W, H, endianness="big")
    with pytest.raises(ValueError, match="geometry"):
        evt21.encode(None, None)


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"% format EVT21;height=720;width=1280;endianness=legacy\n", "legacy"),
        (b"% format EVT21;height=720;width=1280\n% endianness legacy\n", "legacy"),
        (b"% format EVT21;height=720;width=1280\n% endianness little\n", "little"),
        # OpenEB: Prophesee's own files from systems older than SYSTEM_EVK2_SAPHIR (0x37) that
        # name no endianness are legacy (EVK4 IMX636: system_ID 49 = 0x31)
        (b"% evt 2.1\n% geometry 1280x720\n% camera_integrator_name Prophesee\n"
         b"% plugin_integrator_name Prophesee\n% system_ID 49\n", "legacy"),
        (b"% evt 2.1\n% geometry 1280x720\n% integrator_name Prophesee\n% system_ID 49\n", "legacy"),
        # ... and so is a bare header: no integrator means Prophesee's, no system ID is below 0x37
        (b"% evt 2.1\n% geometry 1280x720\n", "legacy"),
        (b"% evt 2.1\n% geometry 1280x720\n% camera_integrator_name Prophesee\n"
         b"% plugin_integrator_name Prophesee\n% system_ID 59\n", "little"),
        (b"% evt 2.1\n% geometry 1280x720\n% camera_integrator_name Acme\n"
         b"% plugin_integrator_name Acme\n% system_ID 49\n", "little"),
    ],
)  # fmt: skip
def test_byte_order_follows_openeb_header_rules(tmp_path, head, expected):
    ev, tr = sample(300, seed=4)
    body = evt21.encode(ev, tr, W, H, endianness=expected)
    body = body[parse_header(body).size_bytes :]
    path = tmp_path / "e.raw"
    path.write_bytes(head + b"% end\n" + body)
    got, gtr, stats = decode_file_with_stats(path)
    assert stats.endianness == expected
    np.testing.assert_array_equal(got, by_typx(ev))
    np.testing.assert_array_equal(gtr, tr)


def test_headerless_words_need_format_and_geometry(tmp_path):
    ev, tr = sample(200, seed=5)
    for endian in evt21.ENDIANNESS:
        body = evt21.encode(ev, tr, W, H, endianness=endian)
        path = tmp_path / f"bare_{endian}.raw"
        path.write_bytes(body[parse_header(body).size_bytes :])
        with pytest.raises(EventFileError, match="names no event format"):
            decode_file(path)
        with pytest.raises(EventFileError, match="no sensor geometry"):
            decode_file(path, evt_format="evt21")
        stated = "EVT21" if endian == "little" else "evt21;endianness=legacy"
        got, gtr, stats = decode_file_with_stats(path, evt_format=stated, width=W, height=H)
        assert (stats.format, stats.endianness, stats.format_source) == ("EVT21", endian, "argument")
        np.testing.assert_array_equal(got, by_typx(ev))
        np.testing.assert_array_equal(gtr, tr)


# -- round trips and chunking ----------------------------------------------------------------------
@pytest.mark.parametrize("endianness", ["little", "legacy"])
def test_roundtrip_exact(tmp_path, endianness):
    ev, tr = sample(20_000, seed=1)
    path = tmp_path / "rt.raw"
    path.write_bytes(evt21.encode(ev, tr, W, H, endianness=endianness, header_extra=FIXED))
    got, gtr, stats = decode_file_with_stats(path)
    np.testing.assert_array_equal(by_tyxp(got), by_tyxp(ev))
    np.testing.assert_array_equal(got, by_typx(ev))  # the documented emission order
    np.testing.assert_array_equal(gtr, tr)
    assert stats.anomalies == {} and stats.events == ev.size and stats.triggers == tr.size
    assert stats.word_counts == word_histogram(path, endianness)
    assert stats.word_counts["EVT_NEG"] + stats.word_counts["EVT_POS"] < ev.size  # vectorised
    assert stats.t_last_us == max(int(ev["t"][-1]), int(tr["t"][-1]))


def test_full_masks_and_repeated_events(tmp_path):
    """A full 32-pixel row is one word; an event repeated at one time and pixel starts another."""
    ev = np.zeros(64 + 3, EVENT_DTYPE)
    ev["t"], ev["y"], ev["p"] = 100, 7, 1
    ev["x"][:64] = np.arange(64) + 64
    ev["x"][64:] = 70
    path = tmp_path / "full.raw"
    path.write_bytes(evt21.encode(ev, None, W, H))
    got, _, stats = decode_file_with_stats(path)
    np.testing.assert_array_equal(got, by_typx(ev))
    assert stats.word_counts == {"EVT_TIME_HIGH": 1, "EVT_POS": 2 + 3}


@pytest.mark.parametrize("chunk", [8, 16, 24, 13, 8 * 1000 + 8, 4096 + 8, 1 << 20])
def test_chunked_equals_whole(tmp_path, chunk):
    ev, tr = sample(4000 if chunk < 100 else 30_000, seed=2)
    path = tmp_path / "c.raw"
    path.write_bytes(evt21.encode(ev, tr, W, H) + b"\xff\xff\xff")  # and a cut last word
    whole, wtr, wst = decode_file_with_stats(path)
    got, gtr, cst = concat_chunks(path, chunk)
    np.testing.assert_array_equal(got, whole)
    np.testing.assert_array_equal(gtr, wtr)
    assert (cst.word_counts, cst.anomalies, cst.anomaly_samples) == (
        wst.word_counts, wst.anomalies, wst.anomaly_samples)  # fmt: skip
    assert wst.anomalies == {"truncated": 1}
    chunks = list(iter_chunks(path, chunk_bytes=chunk))
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), whole)


def test_output_grows_when_the_sampled_size_falls_short(tmp_path, monkeypatch):
    """The outputs are sized from the first words: a sparse start followed by full 32-pixel rows
    and a trigger burst must still decode every event and trigger, also in small read pieces."""
    rng = np.random.default_rng(7)
    n_lone, n_rows = 40_000, 20_000
    lone = np.zeros(n_lone, EVENT_DTYPE)
    lone["t"] = np.arange(n_lone) * 3
    lone["x"], lone["y"], lone["p"] = rng.integers(0, W, n_lone), rng.integers(0, H, n_lone), 1
    t_rows = n_lone * 3 + np.arange(n_rows)
    dense = np.zeros(n_rows * 32, EVENT_DTYPE)
    dense["t"] = np.repeat(t_rows, 32)
    dense["x"] = np.repeat(rng.integers(0, W // 32, n_rows) * 32, 32) + np.tile(np.arange(32), n_rows)
    dense["y"] = np.repeat(rng.integers(0, H, n_rows), 32)
    ev = np.concatenate([lone, dense])
    tr = np.zeros(5000, TRIGGER_DTYPE)
    tr["t"] = t_rows[-1] - 5000 + np.arange(5000)
    tr["value"] = np.arange(5000) % 2
    path = tmp_path / "late_dense.raw"
    path.write_bytes(evt21.encode(ev, tr, W, H))
    ref = by_typx(ev)
    for piece in (raw_reader.READ_PIECE_BYTES, 4096 + 8):
        monkeypatch.setattr(raw_reader, "READ_PIECE_BYTES", piece)
        got, gtr, stats = decode_file_with_stats(path)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(gtr, tr)
        assert stats.anomalies == {} and stats.events == ev.size
    got, gtr, _ = concat_chunks(path, 1 << 20)
    np.testing.assert_array_equal(got, ref)


# -- fuzzing -------------------------------------------------------------------------------------
def check_valid_output(ev, tr, width, height):
    assert ev.dtype == EVENT_DTYPE and tr.dtype == TRIGGER_DTYPE
    if ev.size:
        assert ev["x"].max() < width and ev["y"].max() < height
        assert ev["p"].max() <= 1 and ev["t"].min() >= 0
    if tr.size:
        assert tr["value"].max() <= 1 and tr["id"].max() <= 31


@FUZZ
@given(st.binary(min_size=0, max_size=3000), st.sampled_from(["little", "legacy"]))
def test_fuzz_random_bytes(tmp_path, body, endianness):
    path = tmp_path / "rand.raw"
    head = f"% evt 2.1\n% geometry 64x32\n% endianness {endianness}\n% end\n".encode()
    path.write_bytes(head + body)
    ev, tr, stats = decode_file_with_stats(path)
    check_valid_output(ev, tr, 64, 32)
    assert stats.word_counts == word_histogram(path, endianness)
    assert stats.words == len(body) // 8
    assert (stats.anomalies.get("truncated", 0) == 1) == (len(body) % 8 != 0)
    ev2, tr2, st2 = concat_chunks(path, 24)
    np.testing.assert_array_equal(ev2, ev)
    np.testing.assert_array_equal(tr2, tr)
    assert (st2.word_counts, st2.anomalies, st2.anomaly_samples) == (
        stats.word_counts, stats.anomalies, stats.anomaly_samples)  # fmt: skip


@FUZZ
@given(st.binary(min_size=0, max_size=600))
def test_fuzz_headerless_bytes_are_refused_clearly(tmp_path, body):
    """Bytes with no header are refused with one clear error, and read once format and geometry
    are stated."""
    path = tmp_path / "bare.raw"
    path.write_bytes(body)
    if read_header(path).evt_format is None:
        with pytest.raises(EventFileError, match="bare.raw: the header names no event format"):
            decode_file(path)
    if read_header(path).size_bytes == 0:
        ev, tr, _ = decode_file_with_stats(path, evt_format="evt21", width=64, height=32)
        check_valid_output(ev, tr, 64, 32)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 7999), st.integers(0, 255)), min_size=1, max_size=40),
       st.integers(0, 8000))  # fmt: skip
def test_fuzz_mutated_encoded_file(tmp_path, flips, cut):
    ev, tr = sample(3000, seed=3)
    data = evt21.encode(ev, tr, W, H)
    head = parse_header(data).size_bytes
    buf = bytearray(data[: head + 8000])
    for pos, val in flips:
        buf[head + pos] = val
    path = tmp_path / "mut.raw"
    path.write_bytes(bytes(buf[: head + cut]))
    got, gtr, stats = decode_file_with_stats(path)
    check_valid_output(got, gtr, W, H)
    assert stats.word_counts == word_histogram(path)
    got2, gtr2, st2 = concat_chunks(path, 8 * 37)
    np.testing.assert_array_equal(got2, got)
    np.testing.assert_array_equal(gtr2, gtr)
    assert (st2.word_counts, st2.anomalies) == (stats.word_counts, stats.anomalies)


@st.composite
def event_streams(draw):
    n = draw(st.integers(0, 300))
    dt = draw(st.lists(st.integers(0, 40_000_000), min_size=n, max_size=n))
    t = np.cumsum(np.array(dt, np.int64) // draw(st.sampled_from([1, 1000, 100_000_000])))
    t += draw(st.integers(0, 50_000_000))
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = draw(st.lists(st.integers(0, W - 1), min_size=n, max_size=n)) if n else []
    ev["y"] = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)) if n else []
    ev["p"] = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)) if n else []
    m = draw(st.integers(0, 20))
    tr = np.zeros(m, TRIGGER_DTYPE)
    if m:
        lo, hi = (int(t[0]), int(t[-1])) if n else (0, 100_000_000)
        tr["t"] = np.sort(draw(st.lists(st.integers(lo, hi + 1), min_size=m, max_size=m)))
        tr["id"] = draw(st.lists(st.integers(0, 31), min_size=m, max_size=m))
        tr["value"] = draw(st.lists(st.integers(0, 1), min_size=m, max_size=m))
    return ev, tr, draw(st.sampled_from(evt21.ENDIANNESS))


@FUZZ
@given(event_streams())
def test_fuzz_encode_decode_roundtrip(tmp_path, stream):
    ev, tr, endianness = stream
    path = tmp_path / "rt.raw"
    path.write_bytes(evt21.encode(ev, tr, W, H, endianness=endianness))
    got, gtr, stats = decode_file_with_stats(path)
    np.testing.assert_array_equal(by_tyxp(got), by_tyxp(ev))
    np.testing.assert_array_equal(gtr, tr)
    assert stats.anomalies == {}
    chunks = list(iter_chunks(path, chunk_bytes=8))
    if chunks:
        np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), got)
