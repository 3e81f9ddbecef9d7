"""`rig session recover`: a crashed or failed recording made buildable, keeping what is readable.

A recording killed hard (a crash, SIGKILL, a power cut) never rewrites its manifest: `session.json`
still says `recording`. One whose device or disk gave out says `failed`. Both hold what arrived up
to that moment, because the recorder writes as it goes: `frames.h5` grows a row per frame and is
flushed about once a second, `events.raw` is written buffer by buffer, `triggers.csv` line by line.

`recover_session` checks each file and keeps its longest readable prefix:

- `frames.h5`: the rows whose pixels decompress and whose metadata was written (a row past the
  last flush reads as an unwritten chunk, or a host time of 0); the file is rewritten with exactly
  those rows and published atomically, so what stays is a cleanly closed HDF5 file;
- `events.raw`: decoded to its end (the decoder never stops on bad data, it counts anomalies);
  a trailing partial word, and a run of zero bytes at the end (blocks a power cut left unwritten),
  are cut off;
- `triggers.csv` (and the simulator's `ground_truth/triggers.csv`): every complete line; a last
  line without its newline was cut mid-write and is dropped;

then rewrites `session.json` with status `recovered`, counts of what was kept, a `status_detail`
that says it, and a `recovery` record (docs/session-format.md). A recording still running (its
process alive on this machine, `SessionManifest.recorder`) is refused.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (the Blosc filter of frames.h5)
import numpy as np

from common.atomic import PendingFile, write_bytes_atomic
from rig.devices import Frame
from rig.frame_ids import FrameIdTracker
from rig.ground_truth import GROUND_TRUTH_DIR
from rig.session import (
    EVENTS_RAW,
    FRAMES_H5,
    RECOVERABLE_STATUSES,
    TRIGGERS_CSV,
    FramesWriter,
    SessionCounts,
    SessionError,
    SessionManifest,
    recorder_alive,
    utc_now_iso,
)

#: A run of at least this many zero bytes at the end of events.raw is not data: no encoder writes
#: so many identical zero words in a row, a file system that lost power leaves them.
ZERO_TAIL_MIN_BYTES = 64
_TAIL_SCAN_BYTES = 1 << 22
_TRIGGERS_HEADER = "pulse_index,t_mcu_us"


class RecoverError(SessionError):
    """The session cannot be recovered (still recording, or nothing readable); the message says
    why and what to do."""


@dataclass
class RecoveryReport:
    """What `recover_session` found and kept (and, on a dry run, would keep)."""

    path: Path
    status_before: str
    status: str
    dry_run: bool = False
    frames_kept: int = 0
    frames_on_disk: int = 0  # rows the datasets claim (the longest prefix readable is kept)
    events: int = 0
    trigger_edges: int = 0  # rising edges in events.raw
    event_bytes: int = 0  # events.raw's size once repaired
    event_bytes_cut: int = 0
    event_anomalies: dict[str, int] = field(default_factory=dict)
    pulse_reports: int = 0
    pulse_lines_dropped: int = 0
    frames_incomplete: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why nothing buildable could be kept
    frame_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    @property
    def changed(self) -> bool:
        return self.status != self.status_before

    def to_dict(self) -> dict[str, Any]:
        return {"recovered_utc": utc_now_iso(), "status_before": self.status_before,
                "frames": {"kept": self.frames_kept, "on_disk": self.frames_on_disk},
                "events": {"kept": self.events, "trigger_edges": self.trigger_edges,
                           "bytes": self.event_bytes, "bytes_cut": self.event_bytes_cut,
                           "anomalies": dict(self.event_anomalies)},
                "triggers": {"kept": self.pulse_reports, "dropped": self.pulse_lines_dropped},
                "notes": list(self.notes)}

    def kept_summary(self) -> str:
        return (f"kept {self.frames_kept} frames, {self.events:,} events "
                f"({self.trigger_edges} rising trigger edges), {self.pulse_reports} pulse reports")

    def format(self) -> str:
        verb = "would keep" if self.dry_run else "kept"
        head = f"session   {self.path}  [{self.status_before} -> {self.status}" \
            + (", dry run: nothing written]" if self.dry_run else "]")
        if self.status_before not in RECOVERABLE_STATUSES:  # closed by its recorder: not checked
            return "\n".join([head, *(f"note      {n}" for n in self.notes)])
        lines = [head,
                 f"frames    {verb} {self.frames_kept} of {self.frames_on_disk} rows in {FRAMES_H5}",
                 f"events    {verb} {self.events:,} events, {self.trigger_edges} rising trigger "
                 f"edges ({self.event_bytes / 1e6:.1f} MB"
                 + (f"; {self.event_bytes_cut} bytes cut off the end" if self.event_bytes_cut else "")
                 + ")",
                 f"triggers  {verb} {self.pulse_reports} pulse reports"
                 + (f" ({self.pulse_lines_dropped} cut line(s) dropped)"
                    if self.pulse_lines_dropped else "")]
        lines += [f"note      {n}" for n in self.notes]
        lines += [f"problem   {n}" for n in self.problems]
        return "\n".join(lines)


# ---- frames.h5 ---------------------------------------------------------------------------------
def _meta_prefix(ds: h5py.Dataset, n: int) -> np.ndarray:
    """The first `n` values of a metadata dataset, or the longest prefix that reads."""
    try:
        return ds[:n]
    except (OSError, ValueError, RuntimeError):
        pass
    parts, step = [], max(1, int(ds.chunks[0]) if ds.chunks else 1024)
    for start in range(0, n, step):
        try:
            parts.append(ds[start:min(n, start + step)])
        except (OSError, ValueError, RuntimeError):
            break
    return np.concatenate(parts) if parts else np.zeros(0, ds.dtype)


def _chunk_written(ds: h5py.Dataset, row: int) -> bool:
    """Whether the chunk of `row` was ever written (an unwritten one reads as zeros)."""
    get = getattr(ds.id, "get_chunk_info_by_coord", None)
    if get is None:  # HDF5 before 1.10.5: the read itself has to tell
        return True
    try:
        return get((row,) + (0,) * (ds.ndim - 1)).byte_offset is not None
    except (OSError, ValueError, RuntimeError):
        return False


def _frames(path: Path, manifest: SessionManifest, out: Path | None, report: RecoveryReport) -> None:
    """Count (and, with `out`, copy into a new frames file at `out`) the readable rows of
    frames.h5."""
    with h5py.File(path, "r") as src:
        frames = src["frames"]
        names = [name for name, _ in FramesWriter.META_FIELDS]
        missing = [n for n in names if n not in src]
        if missing:
            raise OSError(f"no dataset {', '.join(missing)}")
        on_disk = min(int(src[name].shape[0]) for name in ["frames", *names])
        meta = {name: _meta_prefix(src[name], on_disk) for name in names}
        n_meta = min(len(v) for v in meta.values())
        report.frames_on_disk = int(frames.shape[0])
        attrs = dict(src.attrs)
        size = manifest.sensor_size("frame") or (0, 0)
        width, height = int(attrs.get("width", size[0])), int(attrs.get("height", size[1]))
        pixel_format = str(attrs.get("pixel_format", manifest.settings.frame_camera.pixel_format))
        writer = FramesWriter(out, width, height, pixel_format, flush_every_s=math.inf) \
            if out is not None else None
        try:
            n = 0
            while n < n_meta:
                if int(meta["t_host_ns"][n]) <= 0 or not _chunk_written(frames, n):
                    break  # written after the last flush: metadata or pixels never reached the file
                try:
                    pixels = frames[n]
                except (OSError, ValueError, RuntimeError):
                    break
                if writer is not None:
                    writer.append(Frame(pixels, int(meta["frame_id"][n]), int(meta["t_device_ns"][n]),
                                        int(meta["t_host_ns"][n]), float(meta["exposure_us"][n]),
                                        float(meta["gain_db"][n]), bool(meta["incomplete"][n]),
                                        pixel_format))
                n += 1
            report.frames_kept = n
            if writer is not None:
                writer._h5.attrs.update(attrs)  # the recording's own schema and tool versions
        finally:
            if writer is not None:
                writer.close()
        ids = meta["frame_id"][:report.frames_kept]
        incomplete = meta["incomplete"][:report.frames_kept]
    if report.frames_kept < report.frames_on_disk:
        report.notes.append(f"{FRAMES_H5}: {report.frames_on_disk - report.frames_kept} row(s) after "
                            f"row {report.frames_kept} were never completely written; dropped")
    report.frame_ids = np.asarray(ids, np.int64)
    report.frames_incomplete = int(np.count_nonzero(incomplete))


def _recover_frames(folder: Path, manifest: SessionManifest, report: RecoveryReport) -> str | None:
    """Check and (unless a dry run) rewrite frames.h5; returns why it is unusable, or None."""
    path = folder / FRAMES_H5
    if not path.is_file():
        return f"{path}: missing (the recording stopped before its first frame file was made)"
    try:
        if report.dry_run:
            _frames(path, manifest, None, report)
            return None
        pending = PendingFile(path, suffix=".h5.tmp")
        try:
            _frames(path, manifest, pending.tmp_path, report)
        except BaseException:
            pending.discard()
            raise
        pending.publish()
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return f"{path}: cannot be read ({detail})"
    return None


# ---- events.raw --------------------------------------------------------------------------------
def _zero_tail_start(path: Path, data_start: int, end: int, word_bytes: int) -> int:
    """Where a run of at least ZERO_TAIL_MIN_BYTES zero bytes ending at `end` begins (on a word
    boundary), or `end` when there is none."""
    scan_from = max(data_start, end - _TAIL_SCAN_BYTES)
    with open(path, "rb") as f:
        f.seek(scan_from)
        tail = f.read(end - scan_from)
    stripped = len(tail.rstrip(b"\0"))
    if len(tail) - stripped < ZERO_TAIL_MIN_BYTES:
        return end
    start = scan_from + stripped
    offset = (start - data_start + word_bytes - 1) // word_bytes * word_bytes
    return data_start + offset


def _recover_events(folder: Path, report: RecoveryReport, channel: int | None) -> str | None:
    """Cut what cannot be data off events.raw (unless a dry run) and count what it holds."""
    from rig.evt.errors import EventFileError
    from rig.evt.reader import RawReader

    path = folder / EVENTS_RAW
    if not path.is_file():
        return f"{path}: missing (the recording stopped before the event camera wrote anything)"
    try:
        reader = RawReader(path)
    except (EventFileError, OSError) as exc:
        return (f"{path}: no readable header ({' '.join(str(exc).split())}); the recording "
                "stopped before the event camera's first buffer reached the disk")
    start, size = reader.header.size_bytes, path.stat().st_size
    end = start + reader.data_bytes // reader.word_bytes * reader.word_bytes
    end = _zero_tail_start(path, start, end, reader.word_bytes)
    report.event_bytes_cut = size - end
    if report.event_bytes_cut:
        why = "a partial word" if size - end < reader.word_bytes else "unwritten (zero) bytes"
        report.notes.append(f"{EVENTS_RAW}: {report.event_bytes_cut} byte(s) at the end are {why}; "
                            + ("would be cut" if report.dry_run else "cut"))
        if not report.dry_run:
            os.truncate(path, end)
            reader = RawReader(path)
    from common.progress import progress_bar

    events = edges = 0
    bar = progress_bar(desc=f"reading {EVENTS_RAW}", total=reader.progress_total(), unit="B",
                       unit_scale=True, leave=False)
    for ev, tr in reader:
        bar.update(min(reader.chunk_bytes, bar.total - bar.n))
        events += len(ev)
        rising = tr["value"] == 1
        if channel is not None:
            rising &= tr["id"] == channel
        edges += int(np.count_nonzero(rising))
    bar.close()
    report.events, report.trigger_edges = events, edges
    report.event_bytes = end
    report.event_anomalies = dict(reader.stats.anomalies)
    if reader.stats.anomalies:
        report.notes.append(f"{EVENTS_RAW}: the decoder skipped what it could not read ("
                            + ", ".join(f"{k} {v}" for k, v in reader.stats.anomalies.items()) + ")")
    return None


# ---- CSV files written line by line ------------------------------------------------------------
def _complete_lines(path: Path) -> tuple[list[str], bool]:
    """The lines of a text file that end with a newline, and whether a cut last line followed."""
    data = path.read_bytes()
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    partial = lines[-1] != ""
    return [line.rstrip("\r") for line in lines[:-1]], partial


def _recover_triggers(folder: Path, report: RecoveryReport) -> None:
    path = folder / TRIGGERS_CSV
    rows: list[tuple[int, int]] = []
    dropped = 0
    if path.is_file():
        lines, partial = _complete_lines(path)
        dropped += int(partial)
        body = lines[1:] if lines and lines[0].strip() == _TRIGGERS_HEADER else lines
        for i, line in enumerate(body):
            if not line.strip():
                continue
            try:
                a, b = line.split(",")
                rows.append((int(a), int(b)))
            except ValueError:
                dropped += len(body) - i
                break
        rewrite = dropped > 0 or not lines or lines[0].strip() != _TRIGGERS_HEADER
    else:
        report.notes.append(f"{TRIGGERS_CSV}: missing; written without pulse reports")
        rewrite = True
    report.pulse_reports, report.pulse_lines_dropped = len(rows), dropped
    if dropped:
        report.notes.append(f"{TRIGGERS_CSV}: {dropped} line(s) cut mid-write; dropped")
    if rewrite and not report.dry_run:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["pulse_index", "t_mcu_us"])
        w.writerows(rows)
        write_bytes_atomic(path, buf.getvalue().encode())


def _recover_ground_truth(folder: Path, report: RecoveryReport) -> None:
    """The simulator's ground truth: a cut last line of its triggers.csv dropped, an unreadable
    labels.h5 set aside (the session then builds without the simulator's labels)."""
    gt = folder / GROUND_TRUTH_DIR
    if not gt.is_dir():
        return
    truth_csv = gt / "triggers.csv"
    if truth_csv.is_file():
        lines, partial = _complete_lines(truth_csv)
        if partial:
            report.notes.append(f"{GROUND_TRUTH_DIR}/triggers.csv: a line cut mid-write; dropped")
            if not report.dry_run:
                write_bytes_atomic(truth_csv, "".join(f"{line}\n" for line in lines).encode())
    labels = gt / "labels.h5"
    if labels.is_file():
        try:
            with h5py.File(labels, "r") as f:
                f["pulse_index"][()]
        except (OSError, KeyError, ValueError, RuntimeError):
            aside = labels.with_name("labels.h5.unreadable")
            report.notes.append(f"{GROUND_TRUTH_DIR}/labels.h5: unreadable; "
                                + ("would be set aside" if report.dry_run else f"set aside as {aside.name}")
                                + " (no simulator labels for this session)")
            if not report.dry_run:
                os.replace(labels, aside)


# ---- the session -------------------------------------------------------------------------------
def _last_write_utc(folder: Path) -> str:
    """When the recording last wrote a file (the manifest's stop time of a crashed recording)."""
    times = [p.stat().st_mtime for p in (folder / n for n in (FRAMES_H5, EVENTS_RAW, TRIGGERS_CSV))
             if p.is_file()]
    if not times:
        return utc_now_iso()
    return dt.datetime.fromtimestamp(max(times), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def recover_session(folder: str | os.PathLike[str], *, dry_run: bool = False,
                    force: bool = False) -> RecoveryReport:
    """Check a crashed (`recording`) or failed session, keep what is readable and mark it
    `recovered` (see the module's docstring). A session already closed is left as it is (the
    report says so); `force` recovers even when the recording's process still seems to run."""
    folder = Path(folder)
    manifest = SessionManifest.load(folder)
    report = RecoveryReport(folder, manifest.status, manifest.status, dry_run=dry_run)
    if manifest.status not in RECOVERABLE_STATUSES:
        report.notes.append(f"status {manifest.status!r}: already closed, nothing to recover")
        return report
    alive = recorder_alive(manifest.recorder) if manifest.status == "recording" else False
    if alive and not force:
        pid = manifest.recorder.get("pid") if manifest.recorder else "?"
        raise RecoverError(f"{folder}: still being recorded by process {pid} on this machine; stop "
                           "that recording (Ctrl-C) first, or pass --force if that process is not "
                           "the recorder")
    if alive is None:
        report.notes.append("whether the recording still runs cannot be told here (recorded on "
                            "another machine, or before schema 1.2): make sure it does not")
    problems = [p for p in (_recover_events(folder, report, manifest.wiring.event_trigger_channel),
                            _recover_frames(folder, manifest, report)) if p]
    if not problems:
        _recover_triggers(folder, report)
        _recover_ground_truth(folder, report)
    before = ("the recording was never closed (the recorder crashed, was killed or lost power)"
              if manifest.status == "recording" else f"the recording failed ({manifest.status_detail})")
    if problems:
        report.status = "failed"
        report.problems.extend(problems)
        if not dry_run and manifest.status == "recording":
            manifest.status = "failed"
            manifest.status_detail = f"{before}; not recoverable: {'; '.join(problems)}"
            manifest.stopped_utc = manifest.stopped_utc or _last_write_utc(folder)
            manifest.save(folder)
        return report
    report.status = "recovered"
    if dry_run:
        return report
    tracker = FrameIdTracker(manifest.frame_ids.modulus, first=manifest.frame_ids.first)
    gaps = sum(tracker.update(int(i)) for i in report.frame_ids)
    c = manifest.counts
    crashed = manifest.status == "recording"  # its counts were never written
    # the MCU's own count is lost with a crash (or stale when its link went): every stream shows
    # a lower bound (pairing anchors the streams at their start, rig.sync)
    id_span = 0
    if len(report.frame_ids):
        first = manifest.frame_ids.first_exposure
        id_span = len(report.frame_ids) + gaps + (int(report.frame_ids[0]) - first
                                                  if first is not None and report.frame_ids[0] >= first
                                                  else 0)
    pulses = max(report.pulse_reports, report.trigger_edges, id_span,
                 c.pulses_sent if not crashed else 0)
    received = report.frames_kept if crashed else max(c.frames_received, report.frames_kept)
    dropped_camera = gaps if crashed else c.frames_dropped_camera
    dropped_queue = 0 if crashed else c.frames_dropped_queue
    manifest.counts = SessionCounts(
        pulses_sent=pulses, pulse_reports=report.pulse_reports, frames_received=received,
        frames_written=report.frames_kept, frames_dropped=dropped_camera + dropped_queue,
        frames_dropped_camera=dropped_camera, frames_dropped_queue=dropped_queue,
        frames_missing=max(0, pulses - report.frames_kept - dropped_camera - dropped_queue),
        frames_incomplete=report.frames_incomplete, trigger_events=report.trigger_edges,
        events=report.events, bytes_events=report.event_bytes)
    manifest.status = "recovered"
    manifest.status_detail = f"{before}; rig session recover {report.kept_summary()}"
    manifest.stopped_utc = manifest.stopped_utc or _last_write_utc(folder)
    manifest.recovery = report.to_dict()
    manifest.save(folder)
    return report


def recover_hint(folder: str | os.PathLike[str], status: str, detail: str = "") -> str:
    """What a reader that refuses a crashed or failed session tells its user."""
    if status == "recording":
        return (f"{folder}: session was never closed (status 'recording': the recorder crashed, "
                f"was killed or is still running); run `rig session recover {folder}` to keep "
                "what it wrote")
    detail = " ".join(detail.split())
    return (f"{folder}: the recording failed" + (f" ({detail})" if detail else "")
            + f"; run `rig session recover {folder}` to check and keep what it recorded before that")
