"""EVT3 encoder <-> decoder: round trips, header, streaming writer, word-level semantics."""

from __future__ import annotations

import numpy as np
import pytest

from rig.evt3 import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    EVT3Writer,
    decode_file,
    decode_file_with_stats,
    encode,
    make_header,
    parse_header,
)

W, H = 1280, 720
FIXED = {"date": "2024-01-01 00:00:00"}


def random_events(n: int, t_max: int, seed: int = 0, dense_rows: int = 0) -> np.ndarray:
    """Sorted random events, optionally with dense same-time rows (vector material)."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = rng.integers(0, t_max, n)
    ev["x"] = rng.integers(0, W, n)
    ev["y"] = rng.integers(0, H, n)
    ev["p"] = rng.integers(0, 2, n)
    if dense_rows:
        k = min(n, dense_rows * 40)
        ev["t"][:k] = np.repeat(rng.integers(0, t_max, dense_rows), 40)[:k]
        ev["y"][:k] = np.repeat(rng.integers(0, H, dense_rows), 40)[:k]
        ev["p"][:k] = np.repeat(rng.integers(0, 2, dense_rows), 40)[:k]
        ev["x"][:k] = (np.tile(np.arange(40), dense_rows)[:k] * 2 + 1200) % W
    order = np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))
    return ev[order]


def random_triggers(n: int, t_max: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tr = np.zeros(n, TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(0, t_max, n))
    tr["id"] = rng.integers(0, 3, n)
    tr["value"] = np.arange(n) % 2
    return tr


def roundtrip(tmp_path, ev, tr, name="a.raw"):
    path = tmp_path / name
    path.write_bytes(encode(ev, tr, W, H, header_extra=FIXED))
    return path, decode_file_with_stats(path)


def test_header_has_prophesee_keys_and_overrides():
    head = make_header(W, H, {"serial_number": "ABC123", "custom": "1"})
    assert head.endswith(b"% end\n")
    text = head.decode()
    for line in ("% evt 3.0", "% format EVT3;height=720;width=1280", "% geometry 1280x720",
                 "% serial_number ABC123", "% custom 1", "% plugin_name ", "% date ",
                 "% camera_integrator_name "):  # fmt: skip
        assert line in text
    parsed = parse_header(head + b"\x00\x80")
    assert parsed.size_bytes == len(head) and parsed.has_end
    assert parsed.geometry == (W, H) and parsed.evt_format == "EVT3"
    with pytest.raises(ValueError):
        make_header(W, H, {"bad key": "x"})
    with pytest.raises(ValueError):
        make_header(4096, 10)


def test_roundtrip_exact_with_wraps_and_vectors(tmp_path):
    ev = random_events(20000, 40_000_000, dense_rows=50)  # > 2 wraps of the 24-bit time
    tr = random_triggers(200, 40_000_000)
    _, (ev2, tr2, stats) = roundtrip(tmp_path, ev, tr)
    np.testing.assert_array_equal(ev2, ev)
    np.testing.assert_array_equal(tr2, tr)
    assert stats.anomalies == {}
    assert stats.word_counts["VECT_12"] == 2 * stats.word_counts["VECT_8"] > 0
    assert stats.word_counts["EXT_TRIGGER"] == 200


def test_vectors_make_dense_rows_compact(tmp_path):
    ev = np.zeros(30, EVENT_DTYPE)  # a run at the right edge: the base is clamped to W - 32
    ev["t"], ev["y"], ev["p"], ev["x"] = 100, 7, 1, np.arange(W - 30, W)
    data = encode(ev, None, W, H, header_extra=FIXED)
    words = np.frombuffer(data[len(make_header(W, H, FIXED)) :], "<u2")
    assert list(words >> 12) == [8, 6, 0, 3, 4, 4, 5]  # TH, TL, Y, BASE_X, 12, 12, 8
    assert words[3] & 0x7FF == W - 32 and words[3] >> 11 & 1 == 1
    path = tmp_path / "v.raw"
    path.write_bytes(data)
    np.testing.assert_array_equal(decode_file(path)[0], ev)


@pytest.mark.parametrize("t0", [0, 5, 16_777_215, 100_000_000])
def test_long_gaps_and_late_start(tmp_path, t0):
    t = np.array([0, 4095, 4096, 16_777_216, 17_000_000, 60_000_000, 60_000_000 + 3 * 2**24 + 5,
                  60_000_000 + 3 * 2**24 + 4096 * 4095])  # fmt: skip
    ev = np.zeros(t.size, EVENT_DTYPE)
    ev["t"] = t + t0
    ev["x"] = np.arange(t.size)
    ev["y"] = np.arange(t.size) // 2
    ev["p"] = np.arange(t.size) % 2
    tr = np.zeros(2, TRIGGER_DTYPE)
    tr["t"] = [t0 + 1, t0 + 30_000_000]
    tr["value"] = [1, 0]
    tr["id"] = [0, 5]
    _, (ev2, tr2, stats) = roundtrip(tmp_path, ev, tr)
    np.testing.assert_array_equal(ev2, ev)
    np.testing.assert_array_equal(tr2, tr)
    assert stats.anomalies == {}


def test_streaming_writer_equals_one_shot(tmp_path):
    ev = random_events(5000, 30_000_000, seed=3, dense_rows=20)
    tr = random_triggers(50, 30_000_000)
    whole = encode(ev, tr, W, H, header_extra=FIXED)
    path = tmp_path / "w.raw"
    cuts = [0, 1, 700, 701, 2500, 4999, 5000]
    with EVT3Writer(path, W, H, header_extra=FIXED) as w:
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            t_hi = ev["t"][b - 1]
            t_lo = ev["t"][a - 1] if a else -1
            sel = (tr["t"] > t_lo) & (tr["t"] <= t_hi) if b < 5000 else tr["t"] > t_lo
            n = w.write(ev[a:b], tr[sel])
            assert n >= 2 * (b - a)
        w.flush()
        assert path.stat().st_size == w.bytes_written
        assert w.events_written == 5000 and w.triggers_written == 50
    # cutting the stream between two events of one timestamp may split a vector run; the events
    # and triggers stay exact
    ev2, tr2 = decode_file(path)
    np.testing.assert_array_equal(ev2, ev)
    np.testing.assert_array_equal(tr2, tr)
    assert abs(len(path.read_bytes()) - len(whole)) < 64


def test_writer_rejects_bad_input(tmp_path):
    with EVT3Writer(tmp_path / "bad.raw", W, H) as w:
        ev = random_events(10, 1000)
        w.write(ev)
        with pytest.raises(ValueError, match="last written"):
            w.write(ev[:1])  # goes back in time
        bad = random_events(10, 1000)[::-1].copy()
        bad["t"] += 10_000
        with pytest.raises(ValueError, match="sorted"):
            w.write(bad)
        far = random_events(1, 10)
        far["t"] = 50_000
        far["x"] = W
        with pytest.raises(ValueError, match="x outside"):
            w.write(far)
        tr = np.zeros(1, TRIGGER_DTYPE)
        tr["t"], tr["id"] = 60_000, 16
        with pytest.raises(ValueError, match="trigger id"):
            w.write(None, tr)
    with pytest.raises(ValueError, match="closed"):
        w.write(ev)


def test_erc_counters_and_words_before_time_high(tmp_path):
    head = make_header(W, H, FIXED)
    words = [0x2005, 0x0003,  # before the first TIME_HIGH: skipped
             0x8001, 0x6010, 0x0004, 0x2805,  # t = 4096 + 16, y 4, x 5, ON
             0xE014, 0xF123, 0xF456, 0x7009,  # ERC input count 0x9456123
             0xE016, 0xF001, 0x2006,  # broken counter, then ADDR_X decoded normally
             0xA301]  # trigger channel 3 rising  # fmt: skip
    path = tmp_path / "erc.raw"
    path.write_bytes(head + np.array(words, "<u2").tobytes())
    ev, tr, st = decode_file_with_stats(path)
    assert [(int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])) for e in ev] == [
        (4112, 5, 4, 1), (4112, 6, 4, 0)]  # fmt: skip
    assert [(int(t["t"]), int(t["id"]), int(t["value"])) for t in tr] == [(4112, 3, 1)]
    assert st.skipped_words == 2
    assert st.erc_input_records == 1 and st.erc_input_events == 0x9456123
    assert st.erc_output_records == 0
    assert st.anomalies == {"broken_erc_counter": 1}
    assert st.anomaly_samples == [(len(head) + 2 * 12, "broken_erc_counter")]


def test_time_semantics_follow_openeb(tmp_path):
    head = make_header(W, H, FIXED)
    words = [0x8FFE, 0x6005, 0x0001, 0x2001,  # loop 0, high 4094, low 5
             0x8FFF, 0x2002,  # new high resets low to 0
             0x6003, 0x6001, 0x2003,  # time low backwards: kept (last TIME_LOW wins)
             0x87FF, 0x2004,  # 4095 -> 2047: a drop of 2048 counts a wrap
             0x87F0, 0x2005,  # small drop: time goes back, no wrap
             0x8000, 0x2006]  # 2032 -> 0: a drop under 2048, no wrap either  # fmt: skip
    path = tmp_path / "t.raw"
    path.write_bytes(head + np.array(words, "<u2").tobytes())
    ev, _, st = decode_file_with_stats(path)
    L = 1 << 24
    assert list(ev["t"]) == [4094 * 4096 + 5, 4095 * 4096, 4095 * 4096 + 1, L + 2047 * 4096,
                             L + 2032 * 4096, L]  # fmt: skip
    assert st.anomalies == {"time_low_backwards": 1, "time_high_backwards": 2}


def test_out_of_geometry_dropped_and_reported(tmp_path):
    head = make_header(64, 32, FIXED)
    words = [0x8000, 0x0005, 0x2040,  # x 64 >= width: dropped
             0x0020, 0x2001,  # y 32 >= height: dropped
             0x0801, 0x2001,  # system-type bit set: y 0x801 (OpenEB drops it too)
             0x0002, 0x3038, 0x4FFF, 0x4000, 0x5000,  # base 56: x 56..63 kept, 64..67 dropped
             0x4001]  # 12 -> x 68: dropped  # fmt: skip
    path = tmp_path / "g.raw"
    path.write_bytes(head + np.array(words, "<u2").tobytes())
    ev, _, st = decode_file_with_stats(path)
    assert list(ev["x"]) == list(range(56, 64)) and set(ev["y"]) == {2}
    assert st.anomalies == {"out_of_geometry": 3 + 4 + 1}
