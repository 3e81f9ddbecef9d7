"""DSEC's layout exactly (issue 14): `/events/{p,x,y,t}`, `/ms_to_idx` and `/t_offset` at the file
root, as DSEC ships its files and as its EventSlicer reads them; files of our schema 1.0 (both
inside `events/`) still read; RPEA files carry sensor pixels plus a float `rectify_map` that the
reader applies."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter)
import numpy as np
import pytest
from click.testing import CliRunner

from dataset.cli import main as rpea_main
from dataset.events import DsecReader, DsecWriter, compression, convert_to_dsec
from dataset.reader import RPEASequence
from dataset.representations import event_frame
from dataset.rpea_check import check_sequence
from dataset.rpea_format import SCHEMA_VERSION, SequenceWriter, identity_rectify_map
from rig.evt import EVENT_DTYPE, TRIGGER_DTYPE, encode
from rig.evt.errors import EventFileError

#: DSEC's documented example (DSEC README, "Events"): event times and the ms_to_idx they give.
DSEC_T_US = [0, 500, 2100, 5000, 5000, 7100, 7200, 7200, 8100, 9000]
DSEC_MS_TO_IDX = [0, 2, 2, 3, 3, 3, 5, 5, 8, 9]
T_OFFSET_US = 1_000_000_000


def _dsec_events(t_offset: int = T_OFFSET_US) -> np.ndarray:
    ev = np.zeros(len(DSEC_T_US), EVENT_DTYPE)
    ev["t"] = np.array(DSEC_T_US) + t_offset
    ev["x"] = np.arange(ev.size) * 3
    ev["y"] = np.arange(ev.size) * 2
    ev["p"] = np.arange(ev.size) % 2
    return ev


def _write_as_dsec_ships(path: Path) -> None:
    """A file laid out as DSEC ships `events.h5` (written here with plain h5py, not our writer)."""
    ev = _dsec_events()
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        g.create_dataset("p", data=ev["p"].astype(np.uint8), **compression())
        g.create_dataset("x", data=ev["x"].astype(np.uint16), **compression())
        g.create_dataset("y", data=ev["y"].astype(np.uint16), **compression())
        g.create_dataset("t", data=np.array(DSEC_T_US, np.uint32), **compression())
        f.create_dataset("ms_to_idx", data=np.array(DSEC_MS_TO_IDX, np.uint64))
        f.create_dataset("t_offset", data=np.int64(T_OFFSET_US))


class SlicerAsDsecDoes:
    """Reads a file the way DSEC's EventSlicer does (its documented access pattern: root
    `ms_to_idx` as int64, root `t_offset` if present, events/{p,x,y,t}; a conservative
    millisecond window, then an exact cut). Written here from that description."""

    def __init__(self, f: h5py.File) -> None:
        self.events = {k: f[f"events/{k}"] for k in ("p", "x", "y", "t")}
        self.ms_to_idx = np.asarray(f["ms_to_idx"], dtype="int64")
        self.t_offset = int(f["t_offset"][()]) if "t_offset" in list(f.keys()) else 0

    def get_events(self, t_start_us: int, t_end_us: int) -> dict[str, np.ndarray] | None:
        t0, t1 = t_start_us - self.t_offset, t_end_us - self.t_offset
        ms0, ms1 = math.floor(t0 / 1000), math.ceil(t1 / 1000)
        if ms0 < 0 or ms1 >= self.ms_to_idx.size:
            return None
        a, b = int(self.ms_to_idx[ms0]), int(self.ms_to_idx[ms1])
        t = self.events["t"][a:b].astype(np.int64)
        sel = (t >= t0) & (t < t1)
        out = {k: self.events[k][a:b][sel] for k in ("p", "x", "y")}
        out["t"] = t[sel] + self.t_offset
        return out


def test_our_writer_gives_dsecs_documented_example_at_the_root(tmp_path: Path) -> None:
    with DsecWriter(tmp_path / "ours.h5") as w:
        w.append(_dsec_events())
    with h5py.File(tmp_path / "ours.h5", "r") as f:
        assert set(f.keys()) >= {"events", "ms_to_idx", "t_offset"}
        assert set(f["events"].keys()) == {"p", "x", "y", "t"}  # nothing else inside events/
        assert list(f["ms_to_idx"][()]) == DSEC_MS_TO_IDX
        assert int(f["t_offset"][()]) == T_OFFSET_US
        assert list(f["events/t"][()]) == DSEC_T_US


def test_reader_honours_a_root_t_offset_in_a_file_as_dsec_ships_it(tmp_path: Path) -> None:
    path = tmp_path / "events.h5"
    _write_as_dsec_ships(path)
    with DsecReader(path) as r:
        assert r.t_offset_us == T_OFFSET_US
        assert list(r.ms_to_idx) == DSEC_MS_TO_IDX
        assert r.t_range_us == (T_OFFSET_US, T_OFFSET_US + 9000)
        np.testing.assert_array_equal(r.read_index(0, len(r)), _dsec_events())
        got = r.read_time(T_OFFSET_US + 2000, T_OFFSET_US + 7200)
        assert list(got["t"] - T_OFFSET_US) == [2100, 5000, 5000, 7100]
        assert r.read_time(0, 10_000).size == 0  # relative times are not absolute times


@pytest.mark.parametrize(("t0", "t1"), [(0, 9000), (499, 5001), (2100, 2101), (5000, 7200), (7150, 8200)])
def test_dsecs_slicer_reads_our_files_unchanged(tmp_path: Path, t0: int, t1: int) -> None:
    with DsecWriter(tmp_path / "ours.h5") as w:
        w.append(_dsec_events())
    with h5py.File(tmp_path / "ours.h5", "r") as f, DsecReader(tmp_path / "ours.h5") as r:
        got = SlicerAsDsecDoes(f).get_events(T_OFFSET_US + t0, T_OFFSET_US + t1)
        want = r.read_time(T_OFFSET_US + t0, T_OFFSET_US + t1)
    assert got is not None
    np.testing.assert_array_equal(got["t"], want["t"])
    np.testing.assert_array_equal(got["x"], want["x"])


def test_schema_1_0_layout_still_reads(tmp_path: Path) -> None:
    """Our earlier files kept t_offset and ms_to_idx inside events/."""
    ev = _dsec_events()
    with h5py.File(tmp_path / "old.h5", "w") as f:
        g = f.create_group("events")
        for k, dt in (("x", np.uint16), ("y", np.uint16), ("p", np.uint8)):
            g.create_dataset(k, data=ev[k].astype(dt))
        g.create_dataset("t", data=np.array(DSEC_T_US, np.uint32))
        g.create_dataset("ms_to_idx", data=np.array(DSEC_MS_TO_IDX, np.uint64))
        g.create_dataset("t_offset", data=np.int64(T_OFFSET_US))
    with DsecReader(tmp_path / "old.h5") as r:
        assert r.t_offset_us == T_OFFSET_US and list(r.ms_to_idx) == DSEC_MS_TO_IDX
        np.testing.assert_array_equal(r.read_index(0, len(r)), ev)


def test_an_hdf5_file_without_events_is_refused_by_name(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("images", data=np.zeros(3))
    with pytest.raises(EventFileError, match="other.h5.*not the DSEC event layout"):
        DsecReader(tmp_path / "other.h5")


def _sequence_with_map(path: Path, rectify_map: np.ndarray, x: np.ndarray, y: np.ndarray,
                       h: int, w: int) -> None:
    t = np.arange(x.size, dtype=np.int64) * 10 + 5_000_000
    with SequenceWriter(path, h, w) as wr:
        wr.append_events(x, y, t, np.ones(x.size, np.uint8))
        wr.finish_events()
        t0 = np.array([t[0]])
        wr.create_pairs(1)
        wr.write_image(0, np.zeros((h, w, 3), np.uint8))
        wr.write_label(0, np.zeros((h, w), np.uint8))
        wr.write_pairs({
            "frame_id": [0], "frame_t_us": t0, "exposure_t0_us": t0, "exposure_t1_us": t0 + 20,
            "event_t0_us": t0, "event_t1_us": [int(t[-1]) + 1],
            "event_idx0": wr.event_index(t0), "event_idx1": wr.event_index([int(t[-1]) + 1]),
            "has_label": [1], "overexposed_frac": [0.0], "underexposed_frac": [0.0], "is_night": [0]})
        wr.write_calib("%YAML:1.0\n# test\n")
        wr.write_rectify_map(rectify_map)
        wr.commit({"sequence": path.stem, "scene": "t", "time_of_day": "day", "split": "train",
                   "source_session": "t"})


def test_rpea_sequence_stores_sensor_pixels_and_the_reader_applies_the_rectify_map(tmp_path: Path) -> None:
    sh, sw, h, w = 12, 16, 20, 30  # sensor 16x12 -> a 30x20 grid, scaled by 1.7 and shifted
    xs, ys = np.meshgrid(np.arange(sw, dtype=np.float32), np.arange(sh, dtype=np.float32))
    rmap = np.stack([xs * 1.7 + 0.3, ys * 1.5 + 0.6], axis=-1).astype(np.float32)
    x = np.array([0, 5, 15, 7], np.uint16)
    y = np.array([0, 11, 3, 6], np.uint16)
    path = tmp_path / "s.h5"
    _sequence_with_map(path, rmap, x, y, h, w)
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION == "2.0"
        assert list(f["events/x"][()]) == list(x)  # sensor pixels, DSEC's meaning
        assert f["rectify_map"].shape == (sh, sw, 2) and f["rectify_map"].dtype == np.float32
        assert "t_offset" in f and "ms_to_idx" in f and "t_offset" not in f["events"]
    seq = RPEASequence(path)
    e = seq.events(0)
    np.testing.assert_allclose(e.x, x * 1.7 + 0.3, rtol=1e-6)
    np.testing.assert_allclose(e.y, y * 1.5 + 0.6, rtol=1e-6)
    assert list(e.x_sensor) == list(x)
    plain = event_frame(e.x, e.y, e.t_us, e.p, (h, w), e.t0_us, e.t1_us)  # splat, no density
    assert plain[0].sum() == pytest.approx(4.0)  # each event's weight is 1, spread sub-pixel
    rows, cols = np.mgrid[0:h, 0:w]
    assert (plain[0] * cols).sum() / 4 == pytest.approx(float(e.x.mean()), abs=1e-4)
    assert (plain[0] * rows).sum() / 4 == pytest.approx(float(e.y.mean()), abs=1e-4)
    frame = seq.representation(0, "frame", normalize=False)  # the same pixels, density-divided
    assert np.array_equal(frame[0] > 0, plain[0] > 0) and np.array_equal(frame[2] > 0, plain[0] > 0)
    probs, counts = check_sequence(path, alignment=False)
    assert counts == (1, 1) and not [p for p in probs if p.level == "error"], probs


def test_check_flags_events_outside_the_rectify_map(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _sequence_with_map(path, identity_rectify_map(8, 8), np.array([1, 9], np.uint16),
                       np.array([1, 1], np.uint16), 8, 8)
    probs, _ = check_sequence(path, alignment=False)
    assert any("outside" in p.message for p in probs if p.level == "error"), probs


def test_reader_still_reads_a_schema_1_0_sequence(tmp_path: Path) -> None:
    """Rewrite a 2.0 file into the 1.0 layout (grid x/y, index inside events/): same events."""
    path = tmp_path / "s.h5"
    _sequence_with_map(path, identity_rectify_map(8, 8), np.array([1, 6], np.uint16),
                       np.array([2, 7], np.uint16), 8, 8)
    new = RPEASequence(path).events(0)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = "1.0"
        f.move("t_offset", "events/t_offset")
        f.move("ms_to_idx", "events/ms_to_idx")
        del f["rectify_map"]
    old_seq = RPEASequence(path)
    old = old_seq.events(0)
    assert old_seq.t_offset_us == 5_000_000
    np.testing.assert_array_equal(old.x, new.x)
    np.testing.assert_array_equal(old.t_us, new.t_us)
    probs, counts = check_sequence(path, alignment=False)
    assert counts == (1, 1) and not [p for p in probs if p.level == "error"], probs
    assert any("schema 1.0" in p.message for p in probs)


def test_convert_writes_the_root_layout_and_sorts_times_that_step_back(tmp_path: Path) -> None:
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:  # one step back, as decoded real EVT3 has
        g = f.create_group("events")
        g.create_dataset("t", data=np.array([100, 1500, 1490, 2500, 3100, 3200], np.uint32))
        for k in ("x", "y"):
            g.create_dataset(k, data=np.arange(6, dtype=np.uint16))
        g.create_dataset("p", data=np.ones(6, np.uint8))
        f.attrs["width"], f.attrs["height"] = 64, 48
    stats = convert_to_dsec(src, tmp_path / "r.h5")
    assert stats.reordered == 0 and stats.format == "DSEC"  # sorted within the one chunk
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert list(f["events/t"][()]) == [0, 1390, 1400, 2400, 3000, 3100]
        assert list(f["events/x"][()]) == [0, 2, 1, 3, 4, 5]
        assert int(f["t_offset"][()]) == 100 and list(f["ms_to_idx"][()]) == [0, 1, 3, 4]
        assert (f.attrs["width"], f.attrs["height"]) == (64, 48)
    res = CliRunner().invoke(rpea_main, ["events", "info", str(tmp_path / "r.h5")])
    assert res.exit_code == 0, res.output
    assert "DSEC" in res.output and "64x48" in res.output and "events      6" in res.output


def test_convert_of_a_raw_file_gives_the_root_layout(tmp_path: Path) -> None:
    ev = np.zeros(500, EVENT_DTYPE)
    ev["t"] = 7_000 + np.arange(500) * 13
    ev["x"] = np.arange(500) % 64
    raw = tmp_path / "r.raw"
    raw.write_bytes(encode(ev, np.zeros(0, TRIGGER_DTYPE), 64, 48))
    res = CliRunner().invoke(rpea_main, ["events", "convert", str(raw), str(tmp_path / "r.h5")])
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "r.h5", "r") as f, DsecReader(tmp_path / "r.h5") as r:
        assert int(f["t_offset"][()]) == 7_000 and "ms_to_idx" in f and "t_offset" not in f["events"]
        np.testing.assert_array_equal(r.read_index(0, len(r)), ev)


_FUZZ_CHILD = r"""
import sys, random, numpy as np
from pathlib import Path
from rig.evt.errors import EventFileError
from rig.evt.files import open_events
src = Path(sys.argv[1]).read_bytes()
rng = random.Random(int(sys.argv[3]))
out = Path(sys.argv[2])
bad = []
for k in range(int(sys.argv[4])):
    data = bytearray(src)
    if k % 3 == 0:
        data = data[: rng.randrange(8, len(data))]  # truncated
    else:
        for _ in range(rng.randrange(1, 40)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    out.write_bytes(bytes(data))
    try:
        reader = open_events(out)
        ev, _ = reader.read_all()
        assert ev.size <= 20000
    except EventFileError as e:
        if str(out) not in str(e):
            bad.append(f"case {k}: message without the file name: {e}")
    except Exception as e:  # noqa: BLE001
        bad.append(f"case {k}: {type(e).__name__}: {e}")
print("\n".join(bad) if bad else "OK")
"""


def test_damaged_dsec_files_give_a_clear_error_or_what_is_readable(tmp_path: Path) -> None:
    """Fuzz (truncation, random byte changes) in a child process: only EventFileError naming the
    file, or the readable events; no other exception, no hang, no crash of the process."""
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    ev = np.zeros(20000, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 2_000_000, ev.size))
    ev["x"] = rng.integers(0, 640, ev.size)
    ev["y"] = rng.integers(0, 480, ev.size)
    with DsecWriter(tmp_path / "good.h5", chunk_events=2048) as w:
        w.append(ev)
    res = subprocess.run([sys.executable, "-c", _FUZZ_CHILD, str(tmp_path / "good.h5"),
                          str(tmp_path / "bad.h5"), "7", "60"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"child died ({res.returncode}): {res.stderr[-2000:]}"
    assert res.stdout.strip() == "OK", res.stdout[-3000:]


def test_a_uniform_flood_gives_a_flat_frame_without_holes(tmp_path: Path) -> None:
    """The aligned grid is finer than the sensor's sampling (here 1.4x, with barrel distortion):
    nearest-pixel rounding leaves about half the pixels unreachable (a fixed hole pattern); the
    sub-pixel splat divided by the splat density reaches every in-view pixel and a uniform flood
    (every sensor pixel fires once) is flat."""
    sh, sw = 30, 40
    h, w = 46, 60
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float64)
    u, v = (xs - sw / 2) / sw, (ys - sh / 2) / sh
    r2 = u * u + v * v
    scale = 1.4 * (1 - 0.08 * r2)  # barrel: pixels near the border are packed closer
    rmap = np.stack([w / 2 + (xs - sw / 2) * scale, h / 2 + (ys - sh / 2) * scale], -1).astype(np.float32)
    x, y = xs.ravel().astype(np.uint16), ys.ravel().astype(np.uint16)
    _sequence_with_map(tmp_path / "s.h5", rmap, x, y, h, w)
    seq = RPEASequence(tmp_path / "s.h5")
    frame = seq.representation(0, "frame", normalize=False)
    xi = np.floor(rmap[..., 0] + 0.5).astype(int).ravel()
    yi = np.floor(rmap[..., 1] + 0.5).astype(int).ravel()
    nearest = np.zeros((h, w), bool)
    nearest[yi, xi] = True
    inner = np.zeros((h, w), bool)  # the view less a 2-pixel margin
    inner[int(rmap[..., 1].min()) + 2:int(rmap[..., 1].max()) - 1,
          int(rmap[..., 0].min()) + 2:int(rmap[..., 0].max()) - 1] = True
    assert nearest[inner].mean() < 0.6  # what rounding gave: holes
    counts = frame[0][inner]
    assert (counts > 0).all() and (frame[2][inner] > 0).all()  # no holes, counts or time
    assert counts.std() / counts.mean() < 1e-4  # flat
