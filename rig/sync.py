"""Pair frames with trigger edges and MCU pulses, explicitly (DESIGN "Synchronisation").

Three independent records describe the same pulse train:

- the MCU's pulse reports (`triggers.csv`: pulse index, MCU clock) - the authority on how many
  pulses were sent (`N`) and their indices;
- the event camera's EXT_TRIGGER rising edges (event clock, 1 us);
- the frame camera's delivered frames (frame id + device timestamp, camera clock).

Clocks have unknown offsets, so items are matched by *position in the pulse train*, never by
absolute time. Each stream becomes a "chain": consecutive items get relative indices from the
gap to the previous item in units of the trigger period (1 = next pulse, 2 = one pulse missing,
...). Duplicate edges (closer than a fraction of a period) are collapsed, a gap that is not close
to a whole number of periods breaks the chain into segments, and a frame-id gap that disagrees
with the device-time gap breaks it too. A segment is then *anchored* to absolute pulse indices
only when the pulse count leaves exactly one possibility (for example: 100 pulses sent, the chain
spans 100 positions -> it starts at pulse 0). Because every stream is (near) periodic, timing can
never tell a chain shifted by one pulse from the true one; so an ambiguous anchor drops the
segment with a report instead of guessing. Finally every pair is cross-checked against the MCU
clock by a linear fit (a pair off the fit by more than `max_residual_frac` of a period is
dropped).

Everything here is pure numpy on small arrays (one entry per pulse); the tests inject faults.
`pair_session` is the one place a recorded session's frames meet its trigger edges: the RPEA
builder and calibration's session source both pair through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rig.session import SessionReader


class SyncError(ValueError):
    """The records cannot be paired at all (the message says why)."""


@dataclass(frozen=True)
class SyncConfig:
    """Tolerances of the pairing, as fractions of the trigger period unless in microseconds."""

    duplicate_frac: float = 0.25  # edges closer than this x period to the previous are duplicates
    # Opt-in assumption: a frame camera armed before the first pulse exposes on it, so the frame
    # carrying the camera's first id (`first_frame_id`) answers pulse 0. It pins the frame chain,
    # so frames lost at the end of a recording (Ctrl-C) do not make the whole chain ambiguous;
    # but if the camera did miss pulse 0, every frame would be paired one pulse off (nothing in
    # the records can tell), hence off by default.
    first_exposure_on_first_pulse: bool = False
    gap_tol_frac: float = 0.2  # |gap/period - round(gap/period)| above this = ambiguous gap
    edge_jitter_us: float = 100.0  # timing precision of trigger edges (duplicates this close: harmless)
    max_residual_frac: float = 0.05  # pair dropped if off the MCU-clock fit by more than this x period


@dataclass
class Chain:
    """One stream placed on the pulse train: item i sits at `segment_start[seg[i]] + rel[i]`."""

    name: str
    rel: np.ndarray  # (n,) int64 position inside its segment
    seg: np.ndarray  # (n,) int64 segment id (-1 = item removed, e.g. an ambiguous duplicate)
    segment_gaps: list[tuple[int, int]]  # per segment boundary j -> j+1: (min, max) pulse gap
    pulse: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # absolute, -1 = none

    @property
    def num_segments(self) -> int:
        return len(self.segment_gaps) + (1 if self.rel.size and (self.seg >= 0).any() else 0)


@dataclass
class Dropped:
    """One item (pulse, edge or frame) that is not in any pair, and why."""

    kind: str  # "pulse" | "edge" | "frame" | "mcu_report"
    reason: str
    pulse_index: int | None = None
    frame_index: int | None = None  # row in frames.h5
    edge_t_us: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class SyncResult:
    """Pairs (arrays, one entry per pair, ordered by pulse) and the report of what was dropped."""

    pulse_index: np.ndarray  # (P,) int64
    frame_index: np.ndarray  # (P,) int64 row in frames.h5
    frame_id: np.ndarray  # (P,) int64
    edge_t_us: np.ndarray  # (P,) int64 rising edge, event clock
    edge_fall_t_us: np.ndarray  # (P,) int64 falling edge, event clock, -1 when none was seen
    num_pulses: int
    num_edges: int
    num_frames: int
    period_us: float  # trigger period measured on the event clock
    dropped: list[Dropped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def num_pairs(self) -> int:
        return int(self.pulse_index.size)

    def count(self, reason_prefix: str) -> int:
        return sum(1 for d in self.dropped if d.reason.startswith(reason_prefix))

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for d in self.dropped:
            key = f"{d.kind}: {d.reason.split(' (')[0]}"
            kinds[key] = kinds.get(key, 0) + 1
        parts = [f"{self.num_pairs}/{self.num_pulses} pulses paired "
                 f"({self.num_edges} rising edges, {self.num_frames} frames)"]
        parts += [f"{n} x {k}" for k, n in sorted(kinds.items())]
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"num_pulses": self.num_pulses, "num_edges": self.num_edges,
                "num_frames": self.num_frames, "num_pairs": self.num_pairs,
                "period_us": self.period_us, "summary": self.summary(), "notes": list(self.notes),
                "dropped": [d.to_dict() for d in self.dropped]}


# --------------------------------------------------------------------------------------------
# edges


def rising_edges(triggers: np.ndarray, channel: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rising, falling) edge times (int64 us, sorted) of one EXT_TRIGGER channel.

    `triggers` is a structured array with fields t, id, value (value 1 = rising), as
    `rig.evt3.decode_file` returns; `channel=None` takes every channel.
    """
    if triggers.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sel = np.ones(triggers.shape[0], bool) if channel is None else triggers["id"] == channel
    t = triggers["t"][sel].astype(np.int64)
    v = triggers["value"][sel]
    return np.sort(t[v == 1]), np.sort(t[v == 0])


def estimate_period(t: np.ndarray, nominal: float) -> float:
    """Trigger period in the stream's own clock units: median of the one-period gaps.

    Clock rates differ by ppm, which matters over many periods; gaps within 20 % of the nominal
    period are taken as one period, the rest (drops, duplicates) are ignored.
    """
    if t.size < 2:
        return float(nominal)
    d = np.diff(t.astype(np.float64))
    one = d[np.abs(d - nominal) < 0.2 * nominal]
    return float(np.median(one)) if one.size else float(nominal)


def dedupe_edges(t_us: np.ndarray, period_us: float, cfg: SyncConfig) -> tuple[np.ndarray, list[Dropped]]:
    """Collapse runs of edges closer than `duplicate_frac` x period to one edge each.

    Returns the index (into `t_us`) of the edge kept per run, -1 where the run is ambiguous (two
    candidates both plausible), and the dropped duplicates. The kept edge is the one closest to
    the time predicted from the neighbouring clean edges; within `edge_jitter_us` of each other
    the first is kept (the choice cannot matter).
    """
    n = t_us.size
    dropped: list[Dropped] = []
    if n == 0:
        return np.zeros(0, np.int64), dropped
    t = t_us.astype(np.int64)
    new_run = np.ones(n, bool)
    new_run[1:] = np.diff(t) >= cfg.duplicate_frac * period_us
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], n)
    single = ends - starts == 1
    single_t = t[starts[single]]
    kept = np.empty(starts.size, np.int64)
    for r, (a, b) in enumerate(zip(starts, ends, strict=True)):
        if b - a == 1:
            kept[r] = a
            continue
        cand = t[a:b]
        if cand[-1] - cand[0] <= cfg.edge_jitter_us:
            kept[r] = a
            choice = "within jitter of the first"
        else:
            pred = _predict(single_t, int(cand[0]), period_us)
            res = np.abs(cand - pred) if pred is not None else None
            order = np.argsort(res) if res is not None else None
            if (res is not None and order is not None and res[order[0]] <= 5 * cfg.edge_jitter_us
                    and res[order[1]] >= 10 * cfg.edge_jitter_us):
                kept[r] = a + int(order[0])
                choice = f"{res[order[0]]:.0f} us off the predicted time"
            else:
                kept[r] = -1
                choice = ""
        for i in range(a, b):
            if i == kept[r]:
                continue
            why = (f"duplicate edge ({t[i] - t[a]} us after the run start; kept the edge {choice})"
                   if kept[r] >= 0 else
                   "ambiguous duplicate edges (no edge of the run matches the period; run dropped)")
            dropped.append(Dropped("edge", why, edge_t_us=int(t[i])))
    return kept, dropped


def _predict(single_t: np.ndarray, t_c: int, period: float) -> float | None:
    """Time of the pulse nearest `t_c`, extrapolated from the closest clean edges on each side."""
    if single_t.size == 0:
        return None
    j = int(np.searchsorted(single_t, t_c))
    preds = []
    for k in (j - 1, j):
        if 0 <= k < single_t.size:
            n = round((t_c - single_t[k]) / period)
            preds.append(single_t[k] + n * period)
    return float(np.mean(preds))


# --------------------------------------------------------------------------------------------
# chains


def chain_from_times(name: str, t: np.ndarray, period: float, cfg: SyncConfig,
                     ids: np.ndarray | None = None, id_modulus: int | None = None
                     ) -> tuple[Chain, list[str]]:
    """Place items (sorted times in any clock, `period` in the same units) on the pulse train.

    With `ids` (frame ids), an id gap larger than the time gap is a contradiction and breaks the
    chain; an id gap smaller than the time gap means the camera missed a trigger (no exposure).
    Returns the chain and notes about every break.
    """
    n = t.size
    rel = np.zeros(n, np.int64)
    seg = np.zeros(n, np.int64)
    gaps: list[tuple[int, int]] = []
    notes: list[str] = []
    if n == 0:
        return Chain(name, rel, seg, gaps), notes
    if np.any(np.diff(t) <= 0):
        raise SyncError(f"{name}: timestamps are not strictly increasing")
    q = np.diff(t.astype(np.float64)) / period
    steps = np.rint(q).astype(np.int64)
    id_steps = None
    if ids is not None:
        id_steps = np.diff(ids.astype(np.int64))
        if id_modulus:
            id_steps = np.where(id_steps <= 0, id_steps + id_modulus, id_steps)
    s = 0
    for i in range(1, n):
        step, qi = int(steps[i - 1]), float(q[i - 1])
        lo = hi = step
        why = ""
        if abs(qi - step) > cfg.gap_tol_frac or step < 1:
            lo, hi = max(1, int(np.floor(qi))), max(1, int(np.ceil(qi)))
            why = f"gap of {qi:.3f} periods"
        elif id_steps is not None:
            ids_gap = int(id_steps[i - 1])
            if ids_gap < 1:
                notes.append(f"{name}: id went back before item {i} (wrap or reset); "
                             "the time gap alone places it")
            elif ids_gap > step:
                lo, hi = step, ids_gap
                why = f"frame id step {ids_gap} exceeds the device-time step of {step}"
        if why:
            gaps.append((lo, hi))
            notes.append(f"{name}: chain broken before item {i} ({why})")
            s += 1
            rel[i] = 0
        else:
            rel[i] = rel[i - 1] + step
        seg[i] = s
    return Chain(name, rel, seg, gaps), notes


def anchor_chain(chain: Chain, num_pulses: int, min_first: int = 0, first_exact: bool = False
                 ) -> tuple[np.ndarray, list[str]]:
    """Absolute pulse index of every item, -1 where its segment cannot be placed uniquely.

    Segment j may start anywhere consistent with: the first item at pulse >= `min_first` (at
    exactly `min_first` with `first_exact`), each boundary gap within its (min, max), the last
    item at pulse <= num_pulses - 1. It is placed only if that leaves exactly one start.
    """
    notes: list[str] = []
    pulse = np.full(chain.rel.size, -1, np.int64)
    live = chain.seg >= 0
    if not live.any():
        chain.pulse = pulse
        return pulse, notes
    nseg = int(chain.seg[live].max()) + 1
    spans = np.array([int(chain.rel[chain.seg == j].max()) + 1 for j in range(nseg)], np.int64)
    gmin = np.array([g[0] for g in chain.segment_gaps], np.int64)
    gmax = np.array([g[1] for g in chain.segment_gaps], np.int64)
    # shortest and longest distance from segment 0's start to segment j's start
    pmin = np.concatenate([[0], np.cumsum(spans[:-1] - 1 + gmin)])
    pmax = np.concatenate([[0], np.cumsum(spans[:-1] - 1 + gmax)])
    last_end_min = int(pmin[-1] + spans[-1] - 1)  # shortest distance to the chain's last item
    if min_first + last_end_min > num_pulses - 1:
        notes.append(f"{chain.name}: spans at least {last_end_min + 1} pulses but only "
                     f"{num_pulses} were sent (extra items?); nothing anchored")
        chain.pulse = pulse
        return pulse, notes
    for j in range(nseg):
        lo = min_first + int(pmin[j])  # everything before j at its shortest, from the first pulse
        hi = (num_pulses - 1) - (last_end_min - int(pmin[j]))  # the rest must still fit
        if first_exact:
            hi = min(hi, min_first + int(pmax[j]))
        if lo == hi:
            sel = chain.seg == j
            pulse[sel] = lo + chain.rel[sel]
        else:
            count = int((chain.seg == j).sum())
            notes.append(f"{chain.name}: segment {j} ({count} items spanning {spans[j]} pulses) "
                         f"could start at any pulse in [{lo}, {hi}]; not anchored")
    chain.pulse = pulse
    return pulse, notes


# --------------------------------------------------------------------------------------------
# the whole pairing


def pair_streams(
    rising_t_us: np.ndarray,
    frame_id: np.ndarray,
    frame_t_device_ns: np.ndarray,
    mcu_pulse_index: np.ndarray,
    mcu_t_us: np.ndarray,
    *,
    period_us: float,
    num_pulses: int | None = None,
    frame_incomplete: np.ndarray | None = None,
    falling_t_us: np.ndarray | None = None,
    first_frame_id: int | None = None,
    frame_id_modulus: int | None = None,
    cfg: SyncConfig | None = None,
    anchor_at_start: bool = False,
) -> SyncResult:
    """Pair frame k with rising edge k, cross-checked against the MCU's pulse reports.

    `period_us` is the nominal trigger period (from the manifest); `num_pulses` the pulses the
    MCU sent (default: highest reported index + 1). `first_frame_id` is the id the camera gives
    its first exposure after acquisition start, when known: a larger first id proves dropped
    frames at the start, and with `cfg.first_exposure_on_first_pulse` it pins the frame chain
    (frame id `first_frame_id + d` answers pulse d). `anchor_at_start`: the streams were cut at
    their end at different pulses (a recovered crash: `rig session recover`), so their length says
    nothing; the first edge then answers pulse 0 and the frame chain starts where the first frame
    id says (pulse 0 when unknown). Returns pairs and a report naming every dropped item.
    """
    cfg = cfg or SyncConfig()
    rising = np.sort(np.asarray(rising_t_us, np.int64))
    fid = np.asarray(frame_id, np.int64)
    ftn = np.asarray(frame_t_device_ns, np.int64)
    mpi = np.asarray(mcu_pulse_index, np.int64)
    mtu = np.asarray(mcu_t_us, np.int64)
    incomplete = (np.zeros(fid.size, bool) if frame_incomplete is None
                  else np.asarray(frame_incomplete).astype(bool))
    if not (fid.size == ftn.size == incomplete.size):
        raise SyncError(f"frame metadata lengths differ: {fid.size} ids, {ftn.size} times, "
                        f"{incomplete.size} flags")
    if mpi.size != mtu.size:
        raise SyncError(f"MCU report: {mpi.size} pulse indices but {mtu.size} times")
    if period_us <= 0:
        raise SyncError(f"trigger period must be positive, got {period_us} us")
    dropped: list[Dropped] = []
    notes: list[str] = []

    # --- MCU: the authority on the pulse count
    if mpi.size and np.any(np.diff(mpi) <= 0):
        raise SyncError("MCU report: pulse indices are not strictly increasing")
    n_pulses = int(num_pulses) if num_pulses is not None else (int(mpi[-1]) + 1 if mpi.size else 0)
    if mpi.size and int(mpi[-1]) >= n_pulses:
        notes.append(f"MCU reported pulse {int(mpi[-1])} but {n_pulses} pulses sent; using "
                     f"{int(mpi[-1]) + 1}")
        n_pulses = int(mpi[-1]) + 1
    if n_pulses == 0:
        raise SyncError("no trigger pulses were sent (MCU report empty, no pulse count)")
    missing_reports = np.setdiff1d(np.arange(n_pulses), mpi)
    for k in missing_reports:
        dropped.append(Dropped("mcu_report", "MCU report line missing (pulse still pairable)",
                               pulse_index=int(k)))
    if missing_reports.size:
        notes.append(f"{missing_reports.size} MCU pulse reports missing")

    # --- event-camera edges
    period_ev = estimate_period(rising, period_us)
    kept_run, dup_dropped = dedupe_edges(rising, period_ev, cfg)
    dropped += dup_dropped
    edge_idx = kept_run[kept_run >= 0]
    edges = rising[edge_idx]
    period_ev = estimate_period(edges, period_us)
    edge_chain, n1 = chain_from_times("edges", edges, period_ev, cfg)
    edge_pulse, n2 = anchor_chain(edge_chain, n_pulses, 0, first_exact=anchor_at_start)
    notes += n1 + n2
    if anchor_at_start:
        notes.append("streams cut at their end (a recovered recording): edges and frames anchored "
                     "at their first item")

    # --- frames (device clock, ns)
    order = np.argsort(ftn, kind="stable")
    if np.any(order != np.arange(order.size)):
        notes.append("frames are not in device-time order; sorted")
    period_fr_ns = estimate_period(ftn[order].astype(np.float64), period_us * 1000.0)
    ftn_sorted = ftn[order]
    if ftn_sorted.size > 1 and np.any(np.diff(ftn_sorted) == 0):
        raise SyncError("two frames carry the same device timestamp")
    frame_chain, n3 = chain_from_times("frames", ftn_sorted.astype(np.float64), period_fr_ns, cfg,
                                       ids=fid[order], id_modulus=frame_id_modulus)
    min_first = 0
    first_exact = anchor_at_start
    if first_frame_id is not None and fid.size:
        skipped = int(fid[order[0]]) - int(first_frame_id)
        if 0 <= skipped < n_pulses:
            min_first = skipped
            first_exact = cfg.first_exposure_on_first_pulse or anchor_at_start
            if skipped:
                notes.append(f"first frame has id {int(fid[order[0]])}: {skipped} earlier "
                             "exposure(s) never delivered")
        else:
            notes.append(f"first frame id {int(fid[order[0]])} is not after the camera's first "
                         f"id {first_frame_id}: frame ids do not anchor the chain")
    frame_pulse_sorted, n4 = anchor_chain(frame_chain, n_pulses, min_first, first_exact)
    notes += n3 + n4
    frame_pulse = np.full(fid.size, -1, np.int64)
    frame_pulse[order] = frame_pulse_sorted

    # --- unanchored items are dropped, with the reason
    for i in np.flatnonzero(edge_pulse < 0):
        dropped.append(Dropped("edge", "edge not anchored to a pulse (ambiguous position)",
                               edge_t_us=int(edges[i])))
    for i in np.flatnonzero(frame_pulse < 0):
        dropped.append(Dropped("frame", "frame not anchored to a pulse (ambiguous position)",
                               frame_index=int(i)))

    # --- join on the pulse index
    edge_of = np.full(n_pulses, -1, np.int64)
    ok = edge_pulse >= 0
    edge_of[edge_pulse[ok]] = np.flatnonzero(ok)
    frame_of = np.full(n_pulses, -1, np.int64)
    okf = frame_pulse >= 0
    frame_of[frame_pulse[okf]] = np.flatnonzero(okf)
    anchored_edges = bool(ok.any())
    anchored_frames = bool(okf.any())
    cand: list[int] = []
    for k in range(n_pulses):
        e, f = edge_of[k], frame_of[k]
        if e < 0 and anchored_edges:
            dropped.append(Dropped("pulse", "no trigger edge for this pulse "
                                   "(missing edge or edge not anchored)", pulse_index=k))
        if f < 0 and anchored_frames:
            dropped.append(Dropped("pulse", _frame_missing_reason(k, frame_of, fid, frame_pulse,
                                                                  frame_id_modulus), pulse_index=k))
        if e < 0 or f < 0:
            if f >= 0:
                dropped.append(Dropped("frame", "no trigger edge to pair with", pulse_index=k,
                                       frame_index=int(f)))
            continue
        if incomplete[f]:
            dropped.append(Dropped("frame", "frame flagged incomplete", pulse_index=k,
                                   frame_index=int(f), edge_t_us=int(edges[e])))
            continue
        cand.append(k)
    if not anchored_edges and rising.size:
        dropped.append(Dropped("pulse", f"no edge could be anchored: all {n_pulses} pulses "
                               "unpaired"))
    if not anchored_frames and fid.size:
        dropped.append(Dropped("pulse", f"no frame could be anchored: all {n_pulses} pulses "
                               "unpaired"))

    # --- cross-check against the MCU clock (linear fit: offsets and ppm drift)
    ks = np.array(cand, np.int64)
    if ks.size:
        mcu_t = _mcu_times(mpi, mtu, ks, period_us)
        keep = np.ones(ks.size, bool)
        for name, tt, unit in (("edge", edges[edge_of[ks]].astype(np.float64), 1.0),
                               ("frame", ftn[frame_of[ks]].astype(np.float64), 1000.0)):
            res = _fit_residual(mcu_t, tt / unit)
            bad = np.abs(res) > cfg.max_residual_frac * period_us
            for j in np.flatnonzero(bad & keep):
                dropped.append(Dropped("pulse", f"{name} time off the MCU clock fit by "
                                       f"{res[j]:.0f} us", pulse_index=int(ks[j])))
            keep &= ~bad
        ks = ks[keep]

    e_sel = edge_idx[edge_of[ks]] if ks.size else np.zeros(0, np.int64)
    edge_t = rising[e_sel]
    fall = np.full(ks.size, -1, np.int64)
    if falling_t_us is not None and ks.size:
        ft = np.sort(np.asarray(falling_t_us, np.int64))
        j = np.searchsorted(ft, edge_t, side="right")
        has = j < ft.size
        nxt = np.where(has, ft[np.minimum(j, ft.size - 1)], -1)
        good = has & (nxt - edge_t < cfg.duplicate_frac * period_ev * 4)
        fall = np.where(good, nxt, -1)
    f_sel = frame_of[ks] if ks.size else np.zeros(0, np.int64)
    dropped.sort(key=lambda d: (d.pulse_index if d.pulse_index is not None else -1, d.kind))
    return SyncResult(ks, f_sel, fid[f_sel], edge_t, fall, n_pulses, int(rising.size),
                      int(fid.size), period_ev, dropped, notes)


def _frame_missing_reason(k: int, frame_of: np.ndarray, fid: np.ndarray, frame_pulse: np.ndarray,
                          id_modulus: int | None) -> str:
    """Why pulse k has no frame: a frame-id gap means delivered-but-lost, else never exposed."""
    prev = frame_of[:k][frame_of[:k] >= 0]
    nxt = frame_of[k + 1:][frame_of[k + 1:] >= 0]
    if prev.size and nxt.size:
        a, b = int(prev[-1]), int(nxt[0])
        pa, pb = int(frame_pulse[a]), int(frame_pulse[b])
        id_gap, pulse_gap = int(fid[b] - fid[a]), pb - pa
        if id_modulus and id_gap <= 0:  # the counter wrapped in between
            id_gap += id_modulus
        if id_gap == pulse_gap:
            return "frame dropped (frame id gap: exposed, never delivered)"
        if id_gap == 1:
            return "camera missed the trigger (device-time gap, no frame id gap)"
        return (f"no frame ({pulse_gap - 1} pulses without frame, {id_gap - 1} frame ids "
                "skipped: drops and missed triggers mixed)")
    return "no frame for this pulse (at the start or end of the recording)"


def _mcu_times(mpi: np.ndarray, mtu: np.ndarray, ks: np.ndarray, period_us: float) -> np.ndarray:
    """MCU clock time of pulses `ks`; interpolated/extrapolated where a report line is missing."""
    if mpi.size == 0:
        return ks.astype(np.float64) * period_us
    if mpi.size == 1:
        return mtu[0] + (ks - mpi[0]) * period_us
    a, b = np.polyfit(mpi.astype(np.float64), mtu.astype(np.float64), 1)
    out = a * ks + b
    pos = np.searchsorted(mpi, ks)
    hit = (pos < mpi.size) & (mpi[np.minimum(pos, mpi.size - 1)] == ks)
    out[hit] = mtu[pos[hit]]
    return out


def _fit_residual(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residual of a robust straight-line fit y ~ a x + b (two passes, outliers excluded)."""
    if x.size < 3:
        return np.zeros(x.size)
    x0 = x - x[0]
    y0 = y - y[0]
    a, b = np.polyfit(x0, y0, 1)
    res = y0 - (a * x0 + b)
    inl = np.abs(res - np.median(res)) <= 3 * max(np.median(np.abs(res - np.median(res))), 1.0) + 50
    if inl.sum() >= 3:
        a, b = np.polyfit(x0[inl], y0[inl], 1)
    return y0 - (a * x0 + b)


# --------------------------------------------------------------------------------------------
# a recorded session


def pair_session(reader: SessionReader, triggers: np.ndarray,
                 cfg: SyncConfig | None = None) -> SyncResult:
    """Pair the frames of a recorded session with its trigger edges (`triggers` as decoded from
    its events.raw), using what its manifest says: trigger period, trigger-in channel, pulses
    sent, the frame camera's id scheme (wrap modulus, first id), and whether ExposureActive
    drives the trigger input (then the falling edges end the exposures). A `recovered` session
    (cut at its end by a crash or a failed device) is anchored at its start."""
    m = reader.manifest
    meta = reader.frame_meta
    mcu = reader.mcu_pulses
    rise, fall = rising_edges(triggers, m.wiring.event_trigger_channel)
    return pair_streams(
        rise, meta["frame_id"], meta["t_device_ns"], mcu["pulse_index"], mcu["t_mcu_us"],
        period_us=m.trigger_period_us, num_pulses=m.pulses_sent,
        frame_incomplete=meta["incomplete"],
        falling_t_us=fall if m.wiring.exposure_active_to_event else None,
        first_frame_id=m.frame_ids.first_exposure, frame_id_modulus=m.frame_ids.modulus, cfg=cfg,
        anchor_at_start=m.status == "recovered")
