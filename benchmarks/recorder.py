"""Highest frame rate the recorder's writer sustains at 2048x1536 BayerRG8 with zero drops.

A fake camera (the BFS-U3-32S4C's full resolution) delivers frames on a fixed schedule through
the recorder's real path: `FramePipeline` (acquisition thread -> bounded queue -> writer thread)
into `FramesWriter` (frames.h5). The camera side keeps `--camera-buffers` frames like a driver's
buffer pool and drops (counts) beyond that; the queue counts its own drops. A rate passes when a
run of `--seconds` ends with every frame written and no drop of either kind.

Frame content is realistic, so compression is not trivial: a photograph resampled to the sensor
size, moving a little every frame, mosaicked to RGGB, with shot and read noise (a pool of
distinct frames is prepared before timing; each delivery is a fresh copy, as a backend makes).

    .venv/bin/python benchmarks/recorder.py                  # 60 s per rate (the issue's test)
    .venv/bin/python benchmarks/recorder.py --seconds 10     # quicker look
    .venv/bin/python benchmarks/recorder.py --rates 30,45,55 # just these rates
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from rig.devices import DeviceInfo, Frame, FrameCameraLifecycle, FrameCameraSettings, GrabTimeout
from rig.recorder import FramePipeline
from rig.session import FramesWriter

WIDTH, HEIGHT = 2048, 1536  # BFS-U3-32S4C (Sony IMX265) full resolution


def make_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` distinct realistic RGGB Bayer frames (uint8, HxW)."""
    from skimage import data

    rng = np.random.default_rng(seed)
    scene = cv2.resize(data.coffee(), (WIDTH + 64, HEIGHT + 64), interpolation=cv2.INTER_CUBIC)
    scene = scene.astype(np.float32)
    frames = []
    for k in range(n):
        dx, dy = int(32 + 20 * np.sin(k / 3)), int(32 + 12 * np.cos(k / 4))
        rgb = scene[dy:dy + HEIGHT, dx:dx + WIDTH]
        bayer = np.empty((HEIGHT, WIDTH), np.float32)
        bayer[0::2, 0::2] = rgb[0::2, 0::2, 0]  # R
        bayer[0::2, 1::2] = rgb[0::2, 1::2, 1]  # G
        bayer[1::2, 0::2] = rgb[1::2, 0::2, 1]  # G
        bayer[1::2, 1::2] = rgb[1::2, 1::2, 2]  # B
        electrons = rng.poisson(np.clip(bayer, 0, None) * 20.0) / 20.0  # ~5k e- full well
        noisy = electrons + rng.normal(0.0, 1.5, bayer.shape)  # read noise in DN
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


class ScheduledCamera(FrameCameraLifecycle):
    """A `FrameCamera` delivering frames at `rate_hz`, with a driver-like pool of `buffers`."""

    def __init__(self, frames: list[np.ndarray], rate_hz: float, buffers: int = 16) -> None:
        self.frames, self.rate_hz, self.buffers = frames, rate_hz, buffers
        self.width, self.height = WIDTH, HEIGHT
        self.next_index = 0  # next frame to hand out
        self.dropped = 0  # frames the "driver" had no buffer for
        self.t0 = 0.0
        self.limit: int | None = None  # stop producing after this many frames

    def open(self) -> None: ...
    def close(self) -> None: ...

    def info(self) -> DeviceInfo:
        return DeviceInfo("frame_camera", "bench", "scheduled", "0")

    def configure(self, settings: FrameCameraSettings) -> None: ...

    def start(self) -> None:
        self.t0 = time.monotonic()

    def stop(self) -> None: ...

    def _produced(self, now: float) -> int:
        n = int((now - self.t0) * self.rate_hz) + 1
        return n if self.limit is None else min(n, self.limit)

    def grab(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            produced = self._produced(now)
            if produced - self.next_index > self.buffers:  # the pool overflowed: oldest kept
                lost = produced - self.next_index - self.buffers
                self.dropped += lost
                self.next_index += lost
            if self.next_index < produced:
                break
            if self.limit is not None and self.next_index >= self.limit:
                time.sleep(min(timeout_s, 0.01))
                raise GrabTimeout("schedule finished")
            wait = self.t0 + self.next_index / self.rate_hz - now
            if now + wait > deadline:
                time.sleep(max(0.0, deadline - now))
                raise GrabTimeout("no frame yet")
            time.sleep(max(0.0, wait))
        k = self.next_index
        self.next_index += 1
        pixels = self.frames[k % len(self.frames)].copy()  # a backend copies out of the driver buffer
        t_ns = int((self.t0 + k / self.rate_hz) * 1e9)
        return Frame(pixels, frame_id=k, t_device_ns=t_ns, t_host_ns=time.monotonic_ns(),
                     exposure_us=5000.0, gain_db=0.0, pixel_format="BayerRG8")


def run_rate(frames: list[np.ndarray], rate_hz: float, seconds: float, queue_frames: int,
             buffers: int, out_dir: Path) -> dict[str, float]:
    cam = ScheduledCamera(frames, rate_hz, buffers)
    cam.limit = int(round(rate_hz * seconds))
    path = out_dir / f"frames_{rate_hz:g}.h5"
    writer = FramesWriter(path, WIDTH, HEIGHT, "BayerRG8")
    pipe = FramePipeline(cam, writer, queue_frames=queue_frames, grab_timeout_s=0.05)
    cam.start()
    t0 = time.perf_counter()
    pipe.start()
    while cam.next_index + cam.dropped < cam.limit and pipe.error is None:
        time.sleep(0.05)
    pipe.stop()  # writes everything queued
    wall = time.perf_counter() - t0
    writer.close()
    size = path.stat().st_size
    path.unlink()
    c = pipe.counts
    expected = cam.limit
    return {"rate_hz": rate_hz, "frames": expected, "received": c["received"], "written": c["written"],
            "drop_queue": c["dropped_queue_full"], "drop_camera": cam.dropped, "wall_s": wall,
            "mb_s_in": c["written"] * WIDTH * HEIGHT / 1e6 / wall,
            "ratio": c["written"] * WIDTH * HEIGHT / max(size, 1),
            "ok": float(c["written"] == expected and c["dropped_queue_full"] == 0 and cam.dropped == 0
                        and pipe.error is None)}


def unthrottled_fps(frames: list[np.ndarray], seconds: float, out_dir: Path) -> float:
    """Writer throughput with a camera that is never the bottleneck (drops allowed)."""
    res = run_rate(frames, 1000.0, seconds, queue_frames=64, buffers=10**9, out_dir=out_dir)
    return res["written"] / res["wall_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="duration of each zero-drop run")
    ap.add_argument("--rates", default="", help="comma-separated rates to test (default: search)")
    ap.add_argument("--queue-frames", type=int, default=64, help="the pipeline's queue (rig record default)")
    ap.add_argument("--camera-buffers", type=int, default=16, help="driver buffer pool of the fake camera")
    ap.add_argument("--pool", type=int, default=24, help="distinct frames prepared")
    ap.add_argument("--out", type=Path, default=None, help="folder for the temporary frames.h5")
    args = ap.parse_args()

    print(f"preparing {args.pool} realistic {WIDTH}x{HEIGHT} BayerRG8 frames ...", flush=True)
    frames = make_frames(args.pool)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        out = Path(tmp)
        rows = []
        if args.rates:
            rates = [float(r) for r in args.rates.split(",")]
        else:
            top = unthrottled_fps(frames, min(args.seconds, 10.0), out)
            print(f"unthrottled writer: {top:.1f} fps ({top * WIDTH * HEIGHT / 1e6:.0f} MB/s in)", flush=True)
            start = max(5.0, np.floor(top * 0.95))
            rates = [start]
        passed: float | None = None
        while rates:
            rate = rates.pop(0)
            print(f"running {rate:g} fps for {args.seconds:g} s ...", flush=True)
            res = run_rate(frames, rate, args.seconds, args.queue_frames, args.camera_buffers, out)
            rows.append(res)
            if res["ok"]:
                passed = rate if passed is None else max(passed, rate)
            if not args.rates and not res["ok"] and rate > 5:
                rates.append(np.floor(rate * 0.9))  # search down until a rate holds for the full run
    print()
    print(f"{'fps':>6} {'frames':>7} {'written':>7} {'drop_q':>6} {'drop_cam':>8} {'wall_s':>7} "
          f"{'MB/s_in':>8} {'ratio':>6}  zero-drop")
    for r in rows:
        print(f"{r['rate_hz']:6.1f} {r['frames']:7d} {r['written']:7d} {r['drop_queue']:6d} "
              f"{r['drop_camera']:8d} {r['wall_s']:7.1f} {r['mb_s_in']:8.1f} {r['ratio']:6.2f}  "
              f"{'yes' if r['ok'] else 'NO'}")
    if passed is not None:
        print(f"\nhighest zero-drop rate tested: {passed:g} fps for {args.seconds:g} s at {WIDTH}x{HEIGHT} "
              f"BayerRG8 ({'meets' if passed >= 30 else 'BELOW'} the 30 fps target)")
    else:
        print("\nno tested rate ran without drops")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
