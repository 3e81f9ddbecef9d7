"""The aligned image / event / label pairs of one recorded session, made on the fly (`cacd predict
--session`): no dataset is written to the workspace's data/.

The pairs come from the RPEA builder itself (`dataset.build.sequence.build_sequence`: the same
frame-trigger pairing, event windows, alignment and labels as `rpea build`), built into a sequence
file in a temporary folder that is removed when the pairs are closed, and read back through
`RPEASequence`, so the image and the event representation of each pair equal what `rpea build`
followed by `RPEADataset` gives (tests/test_predict_session.py checks it). A temporary file rather
than pairs streamed in memory: the builder's event pass writes as it decodes (bounded memory on a
long session), and reusing it whole is what keeps the two paths from ever drifting apart.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from calibration.io import load_calibration
from dataset.build.options import BuildOptions, SessionPlan
from dataset.build.planning import session_key
from dataset.build.sequence import build_sequence
from dataset.reader import RPEASequence
from rig.recover import recover_hint
from rig.session import (
    BUILDABLE_STATUSES,
    EVENTS_RAW,
    MANIFEST,
    RECOVERABLE_STATUSES,
    SessionError,
    SessionManifest,
)

#: The split folder of the temporary build (any name: nothing outside the temporary folder sees it).
_SPLIT = "session"


class SessionPairsError(ValueError):
    """A session or calibration that cannot give pairs (the message names the file and what to do)."""


@dataclass(frozen=True)
class SessionPair:
    """One pair of a session, on the calibration's aligned grid."""

    index: int  # pair number in the session (0-based, in time order)
    frame_id: int
    pulse_index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    events: np.ndarray  # (C, H, W) float32: the representation asked for
    label: np.ndarray | None  # (H, W) uint8 train ids, 255 = ignore; None: no ground truth
    frame_t_us: int  # exposure start, event-camera clock
    event_t0_us: int  # the pair's event window [t0, t1)
    event_t1_us: int


def check_session(path: str | Path) -> SessionManifest:
    """The session's manifest, refused with the reason and the fix as `rpea build` refuses it:
    not a session folder, crashed or failed while recording (`rig session recover` first), no
    event recording."""
    path = Path(path)
    if not path.is_dir():
        raise SessionPairsError(f"{path}: not a folder; give a session folder that rig record wrote")
    if not (path / MANIFEST).is_file():
        raise SessionPairsError(f"{path}: not a session folder (no {MANIFEST}); give a folder that "
                                "rig record wrote")
    try:
        manifest = SessionManifest.load(path)
    except SessionError as err:  # its message names session.json
        raise SessionPairsError(str(err)) from None
    if manifest.status in RECOVERABLE_STATUSES:
        raise SessionPairsError(recover_hint(path, manifest.status, manifest.status_detail))
    if manifest.status not in BUILDABLE_STATUSES:
        raise SessionPairsError(f"{path}: session status is {manifest.status!r} (need "
                                f"{' or '.join(BUILDABLE_STATUSES)})")
    if not (path / EVENTS_RAW).is_file():
        raise SessionPairsError(f"{path / EVENTS_RAW}: missing; the session has no event recording")
    return manifest


def check_calibration(calib_path: str | Path, manifest: SessionManifest | None = None) -> None:
    """Refuse a calibration that cannot align the session: unreadable, or made for cameras of
    another size than the session's (a calibration of another rig aligns nothing, silently)."""
    calib = load_calibration(calib_path)  # CalibrationFileError (a ValueError) names the file
    if manifest is None:
        return
    for camera, size in (("event", calib.size_event), ("frame", calib.size_frame)):
        recorded = manifest.sensor_size(camera)
        if recorded is not None and tuple(int(v) for v in size) != recorded:
            raise SessionPairsError(
                f"{calib_path}: calibrated for a {size[0]}x{size[1]} {camera} camera, the session's "
                f"is {recorded[0]}x{recorded[1]}; calibrate this rig (rig calibrate --checkerboard) "
                "or give --calib FILE")


class SessionPairs:
    """The pairs of `session` aligned by `calib_path`, built when entered, removed when left.

        with SessionPairs("recordings/session_x", "calib/calib.yaml") as pairs:
            for pair in pairs.pairs("frame"):
                ...

    `window`, `window_ms` and `trigger_delay_us` are `rpea build`'s options of the same names
    (its defaults); `progress` shows the build's progress bars (quiet off a terminal).
    """

    def __init__(self, session: str | Path, calib_path: str | Path, *, window: str = "ms",
                 window_ms: float = 50.0, trigger_delay_us: int = 0, progress: bool = True) -> None:
        self.session = Path(session)
        self.calib_path = Path(calib_path)
        self.manifest = check_session(self.session)
        check_calibration(self.calib_path, self.manifest)
        self.window, self.window_ms = window, float(window_ms)
        self.trigger_delay_us = int(trigger_delay_us)
        self.progress = progress
        self.report: dict[str, Any] = {}
        self._tmp: Path | None = None
        self._sequence: RPEASequence | None = None

    # -- lifetime -------------------------------------------------------------------------------
    def __enter__(self) -> SessionPairs:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        """Build the session's sequence file into a new temporary folder."""
        if self._sequence is not None:
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="rpea-session-"))
        key = session_key(self.session)
        opts = BuildOptions(calib_path=self.calib_path, out_dir=self._tmp, image_workers=0,
                            write_masks=False, progress=self.progress,
                            window=self.window, window_ms=self.window_ms,
                            trigger_delay_us=self.trigger_delay_us)
        plan = SessionPlan(self.session, key.name, _SPLIT, key.time_of_day, key.scene)
        bars = _StageBars(key.name, self.progress)
        try:
            entry = build_sequence(plan, opts, progress=bars.update)
        finally:
            bars.close()
        self.report = entry["report"]
        self._sequence = RPEASequence(self._tmp / _SPLIT / entry["file"])

    def close(self) -> None:
        """Close the sequence and remove the temporary folder (idempotent)."""
        if self._sequence is not None:
            self._sequence.close()
            self._sequence = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- what it holds --------------------------------------------------------------------------
    @property
    def sequence(self) -> RPEASequence:
        """The built sequence (open only inside the `with` block)."""
        if self._sequence is None:
            raise RuntimeError("SessionPairs: use it in a `with` block (or call open())")
        return self._sequence

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def rate_hz(self) -> float:
        """The recording's trigger rate: one frame per pulse."""
        return 1e6 / self.manifest.trigger_period_us

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.sequence.height, self.sequence.width

    def __len__(self) -> int:
        return self.sequence.num_pairs

    def pair(self, i: int, representation: str = "frame", bins: int = 5) -> SessionPair:
        """Pair `i` with its event representation as `RPEADataset` makes it (no augmentation)."""
        seq = self.sequence
        if not 0 <= i < seq.num_pairs:
            raise IndexError(f"pair {i} of {seq.num_pairs}")
        p = seq.pairs
        label = seq.label(i) if p["has_label"][i] else None
        pulse = int(p["pulse_index"][i]) if "pulse_index" in p else i
        return SessionPair(index=i, frame_id=int(p["frame_id"][i]), pulse_index=pulse,
                           image=seq.image(i), events=seq.representation(i, representation, bins),
                           label=label, frame_t_us=int(p["frame_t_us"][i]),
                           event_t0_us=int(p["event_t0_us"][i]),
                           event_t1_us=int(p["event_t1_us"][i]))

    def pairs(self, representation: str = "frame", bins: int = 5,
              indices: Iterable[int] | None = None) -> Iterator[SessionPair]:
        """The pairs in time order (or those of `indices`), one at a time."""
        for i in (range(len(self)) if indices is None else indices):
            yield self.pair(int(i), representation, bins)


class _StageBars:
    """The builder's `progress(stage, done, total)` calls as one tqdm bar per stage."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name, self.enabled = name, enabled
        self.bars: dict[str, Any] = {}

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            from tqdm import tqdm

            scale = stage == "events"  # the event pass counts bytes of events.raw
            bar = self.bars[stage] = tqdm(total=total, desc=f"{self.name}: {stage}",
                                          unit="B" if scale else "pair", unit_scale=scale,
                                          disable=None, leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
