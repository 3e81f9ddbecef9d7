"""Benchmark: EVT3/EVT2 decoding speed of rig.evt3 vs the PyPI decoders `evt3` and `faery`.

Measures events/s on one core (decoder in the same process, page-cached file, best of N
consecutive runs per decoder, CPU time of the process so other load on the machine counts less;
the first, cold call is printed too)
on the real samples in ../shared/data/evt/ and on a dense synthetic EVT3 file made by our
encoder (>= 25M events with trigger words), then the peak memory of streaming decoding of a
~1 GB file (in a child process, so the parent's arrays do not count). Compilation time (numba,
cached) is reported apart and excluded from throughput.

    .venv/bin/python benchmarks/evt3_decode.py                # full run (~2-4 min)
    .venv/bin/python benchmarks/evt3_decode.py --events 5e6 --no-stream   # quick
Peers are benchmark-only extras: pip install evt3 faery.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, EVT3Writer, RawReader, decode_file  # noqa: E402

W, H = 1280, 720


def pin_one_core() -> None:
    """Run on one core so multi-threaded peers and we compare like for like."""
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    for var in ("RAYON_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def dense_piece(rng: np.random.Generator, t0: int, n_ticks: int) -> np.ndarray:
    """Events of `n_ticks` busy microsecond ticks from t0: row bursts (vectors) + lone events."""
    ticks = t0 + np.sort(rng.choice(n_ticks * 3, n_ticks, replace=False)).astype(np.int64)
    rows_per_tick = 4
    # bursts: per tick and row a 32-pixel window with ~70% of pixels firing, one polarity
    n_rows = n_ticks * rows_per_tick
    t_rows = np.repeat(ticks, rows_per_tick)
    y_rows = rng.integers(0, H, n_rows)
    x0_rows = rng.integers(0, W - 32, n_rows)
    p_rows = rng.integers(0, 2, n_rows)
    fire = rng.random((n_rows, 32)) < 0.7
    r, c = np.nonzero(fire)
    burst = np.zeros(r.size, EVENT_DTYPE)
    burst["t"], burst["y"], burst["p"] = t_rows[r], y_rows[r], p_rows[r]
    burst["x"] = x0_rows[r] + c
    # lone events (noise): 10 per tick
    n_lone = n_ticks * 10
    lone = np.zeros(n_lone, EVENT_DTYPE)
    lone["t"] = np.repeat(ticks, 10)
    lone["x"] = rng.integers(0, W, n_lone)
    lone["y"] = rng.integers(0, H, n_lone)
    lone["p"] = rng.integers(0, 2, n_lone)
    ev = np.concatenate([burst, lone])
    ev = ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]
    keep = np.ones(ev.size, bool)
    keep[1:] = (np.diff(ev["t"]) != 0) | (np.diff(ev["y"]) != 0) | (np.diff(ev["x"]) != 0) | (
        np.diff(ev["p"]) != 0
    )
    return ev[keep]


def make_dense_file(path: Path, n_events: int, seed: int = 0) -> tuple[int, int]:
    """Write a dense synthetic EVT3 file with our encoder; returns (events, triggers) written."""
    rng = np.random.default_rng(seed)
    t = 0
    n_ev = n_tr = 0
    with EVT3Writer(path, W, H, header_extra={"serial_number": "BENCH0001"}) as w:
        while n_ev < n_events:
            ev = dense_piece(rng, t, 20_000)
            t_end = int(ev["t"][-1]) + 1
            # trigger edges every 1 ms (rising, then falling 100 us later), channel 0
            starts = np.arange((t + 999) // 1000 * 1000, t_end, 1000)
            tr = np.zeros(2 * starts.size, TRIGGER_DTYPE)
            tr["t"][0::2], tr["t"][1::2] = starts, starts + 100
            tr["value"][0::2] = 1
            tr = tr[tr["t"] < t_end]
            w.write(ev, tr)
            n_ev += ev.size
            n_tr += tr.size
            t = t_end
    return n_ev, n_tr


# -- decoders ---------------------------------------------------------------------------------
def ours(path: Path) -> int:
    ev, _ = decode_file(path)
    return len(ev)


def ours_stream(path: Path) -> int:
    return sum(len(ev) for ev, _ in RawReader(path, chunk_bytes=1 << 20))


def peer_evt3(path: Path) -> int:
    import evt3

    ev, _ = evt3.decode_file_with_triggers(str(path))
    return len(ev)


def peer_faery(path: Path, size=None) -> int:
    import faery

    n = 0
    with faery.evt.Decoder(str(path), size, None) as dec:
        for packet in dec:
            if "events" in packet:
                n += len(packet["events"])
    return n


def run_file(label: str, path: Path, fmt: str, repeats: int) -> list[tuple]:
    """Time every decoder that reads `fmt` on `path`; rows of (file, decoder, events, s, Mev/s)."""
    size = RawReader(path).width, RawReader(path).height
    cands = [("rig.evt3 (ours)", lambda: ours(path))]
    if fmt == "EVT3" and _has("evt3"):
        cands.append(("evt3 (PyPI)", lambda: peer_evt3(path)))
    if _has("faery"):
        cands.append(("faery (PyPI)", lambda: peer_faery(path, size)))
    cands.append(("ours, 1 MiB chunks", lambda: ours_stream(path)))
    rows = []
    for name, fn in cands:  # best of N consecutive runs per decoder (steady state)
        c0 = time.process_time()
        fn()  # first call: page cache, lazy imports, first-touch of fresh output memory
        first = time.process_time() - c0
        best = best_wall = float("inf")
        flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            n = fn()
            best = min(best, time.process_time() - c0)
            best_wall = min(best_wall, time.perf_counter() - w0)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0) / repeats
        secs = max(best, 1e-9)
        rows.append((label, name, n, secs, n / secs / 1e6, best_wall, first, faults))
    return rows


def _has(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def stream_peak(path: Path, chunk_bytes: int) -> tuple[float, float, int]:
    """Peak RSS (VmHWM, MiB) of a child that only streams `path`; its baseline; event count.

    VmHWM is per process image (reset by exec), unlike ru_maxrss which keeps the parent's peak.
    """
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM'):\n"
        "            return int(line.split()[1])\n"
        "from rig.evt3 import RawReader\n"
        "import numpy\n"
        f"r = RawReader({str(path)!r}, chunk_bytes={chunk_bytes})\n"
        "next(iter(r))\n"  # warm-up: numba cache load, first chunk
        "base = hwm()\n"
        "n = sum(len(e) for e, _ in r)\n"
        "print(base, hwm(), n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak, n = out.stdout.split()
    return int(base) / 1024, int(peak) / 1024, int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=float, default=26e6, help="dense synthetic events (>= 25M)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-stream", action="store_true", help="skip the 1 GB streaming test")
    ap.add_argument("--stream-gb", type=float, default=1.0)
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the big files")
    args = ap.parse_args()
    pin_one_core()

    t0 = time.perf_counter()
    import rig.evt.evt3_kernels  # noqa: F401  (numba compiles or loads its cache on first use)

    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="evt3bench_"))
    tmp.mkdir(parents=True, exist_ok=True)
    print("whole-file decoders return all events in memory (ours: decode_file; evt3:")
    print("decode_file_with_triggers; faery: its packet iterator, packets not kept).")
    tiny = tmp / "tiny.raw"
    make_dense_file(tiny, 1000)
    decode_file(tiny)
    print(f"numba compile/cache-load (first decode + encode): {time.perf_counter() - t0:.2f} s")

    dense = tmp / "dense.raw"
    t0 = time.perf_counter()
    n_ev, n_tr = make_dense_file(dense, int(args.events))
    secs = time.perf_counter() - t0
    mb = dense.stat().st_size / 1e6
    print(f"dense synthetic: {n_ev} events, {n_tr} trigger words, {mb:.0f} MB "
          f"(encoded in {secs:.1f} s incl. generation)")  # fmt: skip

    rows = []
    data = REPO.parent / "shared" / "data" / "evt"
    for name, fmt in (("evt3_sample.raw", "EVT3"), ("evt2_sample.raw", "EVT2")):
        if (data / name).is_file():
            # a real sample decodes in ~1-2 ms: many repeats so the best is not a loaded moment
            rows += run_file(name, data / name, fmt, max(50, 10 * args.repeats))
    rows += run_file("dense synthetic", dense, "EVT3", args.repeats)

    print()
    print("times: best of N consecutive runs, CPU time of this process (user + system, so page")
    print("faults of the outputs count; robust to other processes sharing the cores); the wall time")
    print("of that best run and the CPU time of the first (cold) call beside it.")
    print("flt/call: minor page faults per repeated call (fresh output memory touched).")
    print(f"{'file':<18} {'decoder':<19} {'events':>10} {'cpu s':>7} {'wall s':>7} {'1st s':>7} "
          f"{'flt/call':>8} {'Mev/s':>7} {'ours/it':>8}")  # fmt: skip
    for label in dict.fromkeys(r[0] for r in rows):
        group = [r for r in rows if r[0] == label]
        our = group[0][4]
        for r in group:
            ratio = "" if r is group[0] else f"{our / r[4]:.2f}x"
            print(f"{r[0]:<18} {r[1]:<19} {r[2]:>10} {r[3]:>7.3f} {r[5]:>7.3f} {r[6]:>7.3f} "
                  f"{r[7]:>8.0f} {r[4]:>7.1f} {ratio:>8}")  # fmt: skip
        peers = [r for r in group if "PyPI" in r[1]]
        if peers:
            best_peer = max(peers, key=lambda r: r[4])
            print(f"{'':<18} ours (decode_file) / fastest peer ({best_peer[1]}): "
                  f"{our / best_peer[4]:.2f}x")  # fmt: skip

    if not args.no_stream:
        big = tmp / "stream.raw"
        with open(big, "wb") as f:
            f.write(dense.read_bytes())  # repeat the dense file's words (header once)
        from rig.evt.header import read_header

        hb = read_header(dense).size_bytes
        words = dense.read_bytes()[hb:]
        with open(big, "ab") as f:
            while big.stat().st_size < args.stream_gb * 1e9:
                f.write(words)
        size_gb = big.stat().st_size / 1e9
        print()
        for chunk in (1 << 20, 4 << 20):
            base, peak, n = stream_peak(big, chunk)
            print(f"streaming {size_gb:.2f} GB, chunk {chunk >> 20} MiB: {n} events, "
                  f"peak RSS {peak:.0f} MiB (after imports + first chunk {base:.0f} MiB)")
        half = tmp / "stream_half.raw"
        with open(big, "rb") as src, open(half, "wb") as dst:
            dst.write(src.read(int(big.stat().st_size // 2)))
        base, peak, n = stream_peak(half, 4 << 20)
        print(f"streaming {half.stat().st_size / 1e9:.2f} GB, chunk 4 MiB: {n} events, "
              f"peak RSS {peak:.0f} MiB (same chunk, half the file: peak must not grow)")
        big.unlink()
        half.unlink()
    print(f"\nresource: this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; files in {tmp}")  # noqa: E501


if __name__ == "__main__":
    main()
