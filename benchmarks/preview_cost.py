"""What the live preview costs a recording (issue 17): the same real-time recording, three ways.

The recording is benchmarks/soak.py's fake hardware, imported from it: the real `metavision` and
`pyspin` backends on the fake SDKs of tests/fakes, the trigger MCU's protocol twin on the host
clock behind the real serial client, a cable thread that carries each pulse to the fake FLIR's
Line3 and the fake EVK4's trigger-in, and a fake EVK4 streaming random events live in 10 ms
driver buffers, at 20 Hz by default. It runs

- `off`: without the preview;
- `idle`: with `--preview` and nobody looking (the preview draws nothing then);
- `watched`: with a client that does what the page does: stats.json and, when the picture is new,
  snapshot.jpg, once per camera period (it runs in this process, not the recording's).

Each run is a child process. The table gives pulses, frames, drops (the recorder's: camera and
writer queue, frames missing; and the fake camera's own buffer drops and the trigger edges that
missed their event buffer), the child's CPU seconds (user + system) and its ratio to `off`, the
pictures drawn, and the frames the preview did not draw (a newer one came first).

    .venv/bin/python benchmarks/preview_cost.py                    # 45 s per run
    .venv/bin/python benchmarks/preview_cost.py --seconds 60 --repeat 2
    .venv/bin/python benchmarks/preview_cost.py --quick            # 8 s per run (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODES = ("off", "idle", "watched")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the child: one recording --------------------------------------------------------------------

def child(args: argparse.Namespace) -> int:
    """One fake-hardware recording (with the preview unless mode is off); a JSON line out."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from soak import _fake_rig, fake_sizes  # the soak's fake rig, not a copy of it

    from rig import recorder
    from rig.preview import PreviewFeed, PreviewServer

    devices, cable, source, flir = _fake_rig(args)
    recorder.open_devices = lambda o: devices  # type: ignore[assignment]
    fw, fh = fake_sizes(args.scale)["frame"]
    # the space check assumes a busy EVK4 (20 MB/s); this one streams --event-rate
    recorder.estimate_bytes = lambda o, w, h: int(  # type: ignore[assignment]
        o.duration_s * (args.event_rate * 6.0 + fw * fh * args.rate) + 50e6)
    feed, server = None, None
    if args.mode != "off":
        feed = PreviewFeed()
        server = PreviewServer(feed, port=args.port, title="rig record").start()
    opts = recorder.RecordOptions(out_dir=Path(args.out), duration_s=args.seconds, rate_hz=args.rate,
                                  sim=False, show_status=False)
    cable.start()
    try:
        summary = recorder.record_session(opts, preview=feed)
    finally:
        cable.stop.set()
        cable.join(5)
        if server is not None:
            server.close()
    c = summary.counts
    print(json.dumps({
        "status": summary.status, "pulses": c["pulses_sent"], "frames": c["frames_received"],
        "written": c["frames_written"], "drops": c["frames_dropped"] + c["frames_missing"],
        "camera_buffer_drops": flir.dropped_no_buffer, "late_edges": source.late_edges,
        "events": c["events"], "wall_s": summary.elapsed_wall_s,
        "drawn": server.rendered if server is not None else 0,
        "not_drawn": server.frames_skipped if server is not None else 0,
        "render_ms": server.render_ms if server is not None else 0.0}), flush=True)
    return 0 if summary.status == "complete" else 1


# ---- the parent: runs and the table -------------------------------------------------------------

class PageClient(threading.Thread):
    """What the page does: stats.json every camera period, snapshot.jpg when it changed."""

    def __init__(self, port: int, rate_hz: float) -> None:
        super().__init__(daemon=True)
        self.url, self.period_s = f"http://127.0.0.1:{port}/", 1.0 / rate_hz
        self.stop = threading.Event()
        self.requests = self.pictures = self.bytes = 0

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            data = r.read()
        self.requests += 1
        self.bytes += len(data)
        return data

    def run(self) -> None:
        shown = None
        next_t = time.monotonic()
        while not self.stop.is_set():
            try:
                seq = json.loads(self._get("stats.json"))["picture"]["seq"]
                if seq != shown:
                    self._get(f"snapshot.jpg?seq={seq}")
                    shown = seq
                    self.pictures += 1
            except OSError:  # not listening yet, or already gone
                pass
            next_t = max(next_t + self.period_s, time.monotonic())
            self.stop.wait(next_t - time.monotonic())


def run_one(mode: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = work / f"session_{mode}_{time.monotonic_ns()}"
    port = _free_port()
    argv = [sys.executable, __file__, "_child", "--mode", mode, "--out", str(out), "--port", str(port),
            "--seconds", str(args.seconds), "--rate", str(args.rate), "--scale", str(args.scale),
            "--event-rate", str(args.event_rate)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = PageClient(port, args.rate) if mode == "watched" else None
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if client is not None:
        client.start()
    stdout, stderr = proc.communicate()
    if client is not None:
        client.stop.set()
        client.join(10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(out, ignore_errors=True)
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{mode}: the recording failed (exit {proc.returncode}):\n{stdout}\n{stderr}")
    res = json.loads(lines[-1])
    res["mode"] = mode
    res["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res["client_pictures"] = client.pictures if client is not None else 0
    res["client_mb"] = client.bytes / 1e6 if client is not None else 0.0
    return res


def table(results: list[dict[str, Any]]) -> str:
    base = [r["cpu_s"] for r in results if r["mode"] == "off"]
    off_cpu = sum(base) / len(base) if base else float("nan")
    head = (f"{'run':<9} {'pulses':>6} {'frames':>6} {'drops':>5} {'cam buf':>7} {'late edges':>10} "
            f"{'CPU s':>7} {'CPU/off':>7} {'CPU %':>6} {'drawn':>6} {'not drawn':>9} {'page pics':>9}")
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r['mode']:<9} {r['pulses']:>6} {r['frames']:>6} {r['drops']:>5} "
                    f"{r['camera_buffer_drops']:>7} {r['late_edges']:>10} {r['cpu_s']:>7.1f} "
                    f"{r['cpu_s'] / off_cpu:>7.2f} {100 * r['cpu_s'] / r['wall_s']:>6.0f} "
                    f"{r['drawn']:>6} {r['not_drawn']:>9} {r['client_pictures']:>9}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="bench", choices=["bench", "_child"])
    ap.add_argument("--seconds", type=float, default=45.0, help="recording length per run (real time)")
    ap.add_argument("--quick", action="store_true", help="8 s per run, one repeat")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the three runs (order rotates)")
    ap.add_argument("--rate", type=float, default=20.0, help="trigger rate, Hz")
    ap.add_argument("--scale", type=float, default=0.25,
                    help="sensor size as a fraction of the real cameras' (1: 2048x1536 frames, "
                         "1280x720 events)")
    ap.add_argument("--event-rate", type=float, default=500_000, help="events per second")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--mode", choices=MODES)  # the child's
    ap.add_argument("--out")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    if args.what == "_child":
        return child(args)
    if args.quick:
        args.seconds, args.repeat = 8.0, 1
    sys.path.insert(0, str(REPO / "benchmarks"))
    from soak import fake_sizes

    sizes = fake_sizes(args.scale)
    print(f"fake hardware, real time: {args.seconds:g} s per run at {args.rate:g} Hz, frames "
          f"{'x'.join(map(str, sizes['frame']))} BayerRG8, events {'x'.join(map(str, sizes['event']))} "
          f"at {args.event_rate / 1e3:g} kev/s; {args.repeat} round(s)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="preview-cost-", dir=args.workdir))
    results: list[dict[str, Any]] = []
    try:
        for k in range(args.repeat):
            order = MODES[k % 3:] + MODES[:k % 3]
            for mode in order:
                res = run_one(mode, args, work)
                results.append(res)
                print(f"  {mode:<8} {res['frames']} frames, {res['drops']} drops, {res['cpu_s']:.1f} CPU s",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
