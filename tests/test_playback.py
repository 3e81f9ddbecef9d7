"""Playback videos: `rpea show --video` (one picture per pair at the recording rate) and
`rpea events render` (an event file at a chosen frame rate and accumulation time).

Datasets are tiny synthetic ones (`dataset.synthetic`); event files are written with the EVT3
writer, with bursts of ON and OFF events at known times and places.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from common.video import even_size, read_video_info
from dataset.cli import main
from dataset.event_video import frame_count, iter_frames, sparse_event_image
from dataset.playback import pair_picture, recording_fps, write_sequence_video
from dataset.reader import open_sequence_file
from dataset.synthetic import SynthConfig, write_dataset
from dataset.visual import OFF_RGB, ON_RGB, event_image
from rig.evt.common import EVENT_DTYPE
from rig.evt.evt3 import EVT3Writer

PAIRS = 5
SENSOR_W, SENSOR_H = 64, 48


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of an MP4 as RGB uint8."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two one-sequence splits of 5 pairs (48x64, labelled), 50 ms apart (20 fps)."""
    root = tmp_path_factory.mktemp("playback") / "data"
    return write_dataset(root, {"train": 1, "val": 1},
                         SynthConfig(height=48, width=64, pairs_per_sequence=PAIRS, substeps=2))


def seq_file(data: Path, split: str = "val") -> Path:
    return next((data / split).glob("*.h5"))


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


# --- rpea show --video ------------------------------------------------------------------------

def test_sequence_video_has_a_frame_per_pair_at_the_recording_rate(data: Path, tmp_path: Path) -> None:
    name = seq_file(data).stem
    out = tmp_path / "seq.mp4"
    code, text = run("show", str(data), "--split", "val", "--sequence", name, "--video",
                     str(out))
    assert code == 0, text
    info = read_video_info(out)
    with open_sequence_file(seq_file(data)) as f:
        h, w = pair_picture(f, 0, label_column=True).shape[:2]
    assert info["frames"] == PAIRS
    assert info["fps"] == pytest.approx(20.0)
    assert (info["width"], info["height"]) == even_size(w, h)
    assert f"{PAIRS} pairs" in text and "20 fps" in text
    assert [p.name for p in tmp_path.iterdir()] == ["seq.mp4"]  # no temporary file left


def test_video_frame_matches_the_png_of_the_same_pair(data: Path, tmp_path: Path) -> None:
    name = seq_file(data).stem
    out = tmp_path / "seq.mp4"
    assert run("show", str(data), "--split", "val", "--sequence", name, "--video", str(out))[0] == 0
    frames = decoded_frames(out)
    pngs = []
    for i in (1, 3):
        png = tmp_path / f"p{i}.png"
        code, text = run("show", str(data), "--split", "val", "--sequence", name, "--index", str(i),
                         "--out", str(png))
        assert code == 0, text
        pngs.append(cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB))
    h, w = pngs[0].shape[:2]

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a[:h, :w].astype(np.int16) - b.astype(np.int16)).mean())

    # codec error only (4:2:0 chroma blurs the one-pixel ON/OFF stripes of these tiny pictures:
    # 5..8 grey levels), against 20..27 from the picture of another pair
    assert diff(frames[1], pngs[0]) < 10 and diff(frames[3], pngs[1]) < 10
    assert diff(frames[1], pngs[1]) > 2 * diff(frames[1], pngs[0])
    assert diff(frames[3], pngs[0]) > 2 * diff(frames[3], pngs[1])


def test_every_limit_start_and_rate(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    res = write_sequence_video(seq_file(data), out, start=1, every=2)
    assert (res.frames, res.first_pair, res.last_pair) == (2, 1, 3)
    assert res.fps == pytest.approx(10.0)  # every 2nd pair: half the rate, still real time
    assert read_video_info(out)["frames"] == 2
    res = write_sequence_video(seq_file(data), out, limit=3, fps=5)
    assert (res.frames, res.fps, read_video_info(out)["frames"]) == (3, 5.0, 3)


def test_recording_rate_from_the_build_report_then_the_pair_times(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["pairs/frame_t_us"] = np.array([0, 40_000, 80_000, 160_000, 200_000])  # one dropped
        assert recording_fps(f) == (25.0, "median interval between pairs")
        f["build/report"] = json.dumps({"sync": {"period_us": 33_367.0}})
        fps, source = recording_fps(f)
        assert fps == pytest.approx(1e6 / 33_367.0) and "rpea build" in source
        del f["build/report"]
        f["build/report"] = json.dumps({"sync": {"period_us": 50_001.0}})
        assert recording_fps(f)[0] == 20.0  # within 0.1 % of a whole rate: rounded
        del f["pairs/frame_t_us"], f["build/report"]
        f["pairs/frame_t_us"] = np.array([7])
        assert recording_fps(f)[0] == 1.0


def test_interrupted_video_leaves_nothing(data: Path, tmp_path: Path, monkeypatch) -> None:
    import dataset.playback as playback

    real = playback.pair_picture
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(playback, "pair_picture", interrupted)
    out = tmp_path / "v.mp4"
    with pytest.raises(KeyboardInterrupt):
        write_sequence_video(seq_file(data), out)
    assert list(tmp_path.iterdir()) == []


# --- rpea events render -----------------------------------------------------------------------

ON_BLOCK = (10, 20, 5, 15)  # x0, x1, y0, y1 of the ON burst
OFF_BLOCK = (40, 50, 30, 40)
ON_T, OFF_T, LAST_T = 520_000, 1_230_000, 1_999_000  # us after the first event (at 0)


def block_events(block: tuple[int, int, int, int], t_us: int, p: int) -> np.ndarray:
    x0, x1, y0, y1 = block
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ev = np.zeros(xx.size, EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = xx.ravel(), yy.ravel(), t_us, p
    return ev


def write_burst_file(path: Path, t_base_us: int = 3_000_000) -> Path:
    """An EVT3 file: a corner event at the start and at the end, an ON burst and an OFF burst."""
    parts = [block_events((0, 1, 0, 1), 0, 1), block_events(ON_BLOCK, ON_T, 1),
             block_events(OFF_BLOCK, OFF_T, 0), block_events((63, 64, 47, 48), LAST_T, 0)]
    ev = np.concatenate(parts)
    ev["t"] += t_base_us
    with EVT3Writer(path, SENSOR_W, SENSOR_H) as w:
        w.write(ev)
    return path


@pytest.fixture()
def burst(tmp_path: Path) -> Path:
    return write_burst_file(tmp_path / "burst.raw")


def block_colour(frame: np.ndarray, block: tuple[int, int, int, int], scale: int = 1) -> np.ndarray:
    x0, x1, y0, y1 = (v * scale for v in block)
    return frame[y0 + scale:y1 - scale, x0 + scale:x1 - scale].reshape(-1, 3).mean(0)


def test_render_frame_count_is_duration_times_fps(burst: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.mp4"
    code, text = run("events", "render", str(burst), str(out), "--fps", "10")
    assert code == 0, text
    assert read_video_info(out)["frames"] == 20  # 0 .. 1.999 s at 10 fps
    code, text = run("events", "render", str(burst), str(out), "--fps", "25", "--duration-s", "1.2")
    assert code == 0, text
    assert read_video_info(out)["frames"] == 30 == frame_count(1.2, 25)
    code, text = run("events", "render", str(burst), str(out), "--fps", "10", "--start-s", "1.5",
                     "--duration-s", "3")  # longer than what is left: stops at the last event
    assert code == 0, text
    assert read_video_info(out)["frames"] == 5 and "5 of 30 frames" in text


def test_bursts_appear_in_their_frame_at_their_place_in_their_colour(burst: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "b.mp4"
    assert run("events", "render", str(burst), str(out), "--fps", "10", "--scale", "2")[0] == 0
    frames = decoded_frames(out)
    assert frames[0].shape == (2 * SENSOR_H, 2 * SENSOR_W, 3)
    white = np.array([255, 255, 255])
    for k, frame in enumerate(frames):
        on, off = block_colour(frame, ON_BLOCK, 2), block_colour(frame, OFF_BLOCK, 2)
        if k == 5:  # [0.5, 0.6) s holds the ON burst at 0.52 s
            assert np.abs(on - ON_RGB).max() < 25, on
        else:
            assert np.abs(on - white).max() < 10, (k, on)
        if k == 12:  # [1.2, 1.3) s holds the OFF burst
            assert np.abs(off - OFF_RGB).max() < 25, off
        else:
            assert np.abs(off - white).max() < 10, (k, off)


def test_long_accumulation_leaves_a_trail(burst: Path, tmp_path: Path) -> None:
    out = tmp_path / "trail.mp4"
    assert run("events", "render", str(burst), str(out), "--fps", "10",
               "--accumulation-ms", "300")[0] == 0
    shown = [k for k, f in enumerate(decoded_frames(out))
             if np.abs(block_colour(f, ON_BLOCK) - ON_RGB).max() < 40]
    assert shown == [5, 6, 7]  # windows ending at 0.6, 0.7, 0.8 s reach back to 0.52 s


def test_frames_do_not_depend_on_the_chunking() -> None:
    """Every frame shows exactly the events of [end - accumulation, end), however the stream is
    cut into chunks, for accumulations shorter and longer than the frame period."""
    rng = np.random.default_rng(3)
    ev = np.zeros(3000, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(1000, 2_000_000, ev.size))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 64, ev.size), rng.integers(0, 48, ev.size), 1
    trig = np.zeros(0, ev.dtype)
    cuts = np.sort(rng.choice(ev.size, 40, replace=False))
    for fps, acc in ((20.0, 50_000), (20.0, 12_000), (7.0, 400_000)):
        whole = list(iter_frames([(ev, trig)], fps, acc))
        pieces = list(iter_frames([(p, trig) for p in np.split(ev, cuts)], fps, acc))
        assert len(whole) == len(pieces) == frame_count((ev["t"][-1] - ev["t"][0] + 1) / 1e6, fps)
        for a, b in zip(whole, pieces, strict=True):
            expect = ev[(ev["t"] >= a.t0_us) & (ev["t"] < a.t1_us)]
            assert a.t1_us - a.t0_us == acc
            assert np.array_equal(a.events, expect) and np.array_equal(b.events, expect)
        in_a_window = np.zeros(ev.size, bool)
        for a in whole:
            in_a_window |= (ev["t"] >= a.t0_us) & (ev["t"] < a.t1_us)
        assert sum(f.new_events for f in whole) == in_a_window.sum()  # each counted once
        assert in_a_window.all() == (acc >= 1e6 / fps)  # a short window skips the rest


def test_truncated_file_renders_as_far_as_valid_and_says_where(burst: Path, tmp_path: Path) -> None:
    data = burst.read_bytes()
    cut = tmp_path / "cut.raw"
    cut.write_bytes(data[:len(data) - 7])  # loses the last event, ends inside a word
    out = tmp_path / "cut.mp4"
    code, text = run("events", "render", str(cut), str(out), "--fps", "10")
    assert code == 0, text
    assert out.is_file() and 12 < read_video_info(out)["frames"] < 20
    warning = next(line for line in text.splitlines() if line.startswith("warning:"))
    assert "cut.raw" in warning and "truncated at byte" in warning


@pytest.mark.parametrize("args, code, says", [
    (["show", "{data}", "--video", "{out}"], 2, "--sequence"),
    (["show", "{data}", "--video", "{out}", "--sequence", "nope"], 1, "train/day_0000, val/day_0000"),
    (["show", "{data}", "--video", "{out}", "--sequence", "nope", "--split", "val"], 1, "val/day_0000"),
    (["show", "{data}", "--video", "{out}", "--sequence", "day_0000"], 1, "--split"),  # in both
    (["show", "{data}", "--video", "{work}", "--sequence", "day_0000", "--split", "val"], 2,
     "--video"),
    (["show", "{data}", "--video", "{out}", "--sequence", "day_0000", "--split", "val", "--start",
      "99"], 1, "--start"),
    (["show", "{data}", "--video", "{out}", "--index", "0"], 2, "--index"),
    (["events", "render", "{burst}", "{out}", "--fps", "0"], 2, "--fps"),
    (["events", "render", "{burst}", "{out}", "--fps=-1"], 2, "--fps"),
    (["events", "render", "{burst}", "{out}", "--fps", "nan"], 2, "--fps"),
    (["events", "render", "{burst}", "{out}", "--accumulation-ms", "0"], 2, "--accumulation-ms"),
    (["events", "render", "{text}", "{out}"], 1, "text.txt"),
    (["events", "render", "{burst}", "{work}"], 2, "OUT"),
    (["events", "render", "{burst}", "{out}", "--start-s", "5"], 1, "no events"),
])
def test_bad_input_is_one_line_and_leaves_no_output(args: list[str], code: int, says: str,
                                                    data: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    burst = write_burst_file(inputs / "burst.raw")
    text_file = inputs / "text.txt"
    text_file.write_text("hello\n")
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.mp4"
    res = CliRunner().invoke(main, [a.format(data=data, out=out, work=work, burst=burst,
                                             text=text_file) for a in args])
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == code, res.output
    assert len(errors) == 1 and says in errors[0], res.output
    assert "Traceback" not in res.output
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in inputs.iterdir()) == ["burst.raw", "text.txt"]


def test_sparse_event_image_is_visual_event_image() -> None:
    """The render's fast picture is dataset.visual.event_image's, pixel for pixel."""
    rng = np.random.default_rng(5)
    for n, (h, w) in ((0, (8, 8)), (7, (48, 64)), (4000, (48, 64)), (20_000, (90, 160))):
        x, y, p = rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n)
        assert np.array_equal(sparse_event_image(x, y, p, (h, w)), event_image(x, y, p, (h, w)))


def test_interrupted_render_leaves_nothing(burst: Path, tmp_path: Path, monkeypatch) -> None:
    import dataset.event_video as event_video

    real = event_video.event_picture
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(event_video, "event_picture", interrupted)
    out = tmp_path / "out" / "v.mp4"
    out.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        event_video.render_event_video(burst, out, fps=10)
    assert list(out.parent.iterdir()) == []
