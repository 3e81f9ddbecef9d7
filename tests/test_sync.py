"""Pairing frames <-> trigger edges <-> MCU pulses under injected faults (rig/sync.py).

A synthetic pulse train is generated with three clocks (offsets, ppm drift, jitter); faults are
injected by pulse index; every pair must carry the true pulse on both sides (zero mis-pairs), and
every pulse not touched by a fault must be paired.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.sync import (
    SyncConfig,
    SyncError,
    chain_from_times,
    dedupe_edges,
    pair_streams,
    rising_edges,
)

PERIOD_US = 50_000.0


@dataclass
class Faults:
    drop_frames: set[int] = field(default_factory=set)  # exposed, frame id used, never delivered
    missed_triggers: set[int] = field(default_factory=set)  # camera never exposed
    missing_edges: set[int] = field(default_factory=set)
    duplicate_edges: dict[int, int] = field(default_factory=dict)  # pulse -> extra edge delay us
    incomplete: set[int] = field(default_factory=set)
    lost_reports: set[int] = field(default_factory=set)


def make_streams(n: int, faults: Faults, seed: int = 0, first_id: int = 0):
    """Synthetic records of n pulses; returns kwargs for pair_streams and the truth per item."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    t_true = 10_000_000 + k * PERIOD_US  # MCU and "true" time
    mcu_t = np.rint(t_true).astype(np.int64)
    ev_t = np.rint(123_456 + (t_true - t_true[0]) * (1 + 37e-6) + rng.normal(0, 2, n)).astype(np.int64)
    fr_t = np.rint(9_876_543_210_000 + (t_true - t_true[0]) * 1000 * (1 - 21e-6)
                   + rng.normal(0, 500, n)).astype(np.int64)
    edges, edge_pulse = [], []
    for i in range(n):
        if i in faults.missing_edges:
            continue
        edges.append(ev_t[i])
        edge_pulse.append(i)
        if i in faults.duplicate_edges:
            edges.append(ev_t[i] + faults.duplicate_edges[i])
            edge_pulse.append(-1)
    order = np.argsort(edges, kind="stable")
    edges = np.array(edges, np.int64)[order]
    edge_pulse = np.array(edge_pulse, np.int64)[order]
    fids, ftimes, fpulse, finc = [], [], [], []
    next_id = first_id
    for i in range(n):
        if i in faults.missed_triggers:
            continue
        fid = next_id
        next_id += 1
        if i in faults.drop_frames:
            continue
        fids.append(fid)
        ftimes.append(fr_t[i])
        fpulse.append(i)
        finc.append(i in faults.incomplete)
    rep = np.array([i for i in range(n) if i not in faults.lost_reports], np.int64)
    kwargs = dict(rising_t_us=edges, frame_id=np.array(fids, np.int64),
                  frame_t_device_ns=np.array(ftimes, np.int64), mcu_pulse_index=rep,
                  mcu_t_us=mcu_t[rep], period_us=PERIOD_US, num_pulses=n,
                  frame_incomplete=np.array(finc, bool), first_frame_id=first_id)
    truth = dict(edge_t=ev_t, frame_pulse=np.array(fpulse, np.int64))
    return kwargs, truth


def check_no_mispair(res, truth) -> None:
    """Every pair: the edge is the true edge of its pulse and the frame the true frame."""
    assert np.array_equal(res.edge_t_us, truth["edge_t"][res.pulse_index])
    assert np.array_equal(truth["frame_pulse"][res.frame_index], res.pulse_index)


def test_clean_train_pairs_everything() -> None:
    kw, truth = make_streams(200, Faults())
    res = pair_streams(**kw)
    assert res.num_pairs == 200
    assert res.dropped == []
    check_no_mispair(res, truth)
    assert abs(res.period_us - PERIOD_US * (1 + 37e-6)) < 1.0


def test_frame_drop_is_reported_as_drop() -> None:
    kw, truth = make_streams(100, Faults(drop_frames={10, 11, 50}))
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert res.num_pairs == 97
    assert set(range(100)) - set(res.pulse_index.tolist()) == {10, 11, 50}
    reasons = [d.reason for d in res.dropped if d.pulse_index == 50]
    assert any("frame dropped" in r for r in reasons)


def test_camera_missed_trigger_is_reported_as_miss() -> None:
    kw, truth = make_streams(100, Faults(missed_triggers={33}))
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert 33 not in res.pulse_index and res.num_pairs == 99
    assert any("missed the trigger" in d.reason for d in res.dropped if d.pulse_index == 33)


def test_duplicate_edges_collapse_to_the_true_edge() -> None:
    kw, truth = make_streams(100, Faults(duplicate_edges={5: 30, 40: 3000, 41: 8000}))
    res = pair_streams(**kw)
    assert res.num_pairs == 100
    check_no_mispair(res, truth)
    assert sum(d.kind == "edge" and d.reason.startswith("duplicate") for d in res.dropped) == 3


def test_missing_edge_leaves_a_hole_not_a_shift() -> None:
    kw, truth = make_streams(100, Faults(missing_edges={20, 21, 22}))
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert res.num_pairs == 97
    assert {20, 21, 22}.isdisjoint(res.pulse_index.tolist())


def test_incomplete_frames_and_lost_reports() -> None:
    kw, truth = make_streams(60, Faults(incomplete={3}, lost_reports={7, 8}))
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert res.num_pairs == 59 and 3 not in res.pulse_index
    assert sum(d.kind == "mcu_report" for d in res.dropped) == 2


def test_missing_first_edge_is_ambiguous_and_never_shifted() -> None:
    # 99 edges for 100 pulses: the chain could start at pulse 0 or 1 -> nothing is paired.
    kw, truth = make_streams(100, Faults(missing_edges={0}))
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert res.num_pairs == 0
    assert any("not anchored" in n for n in res.notes)


def test_dropped_first_frame_is_anchored_by_frame_id() -> None:
    # the first delivered frame has id 1 although ids start at 0: frame 0 was dropped
    kw, truth = make_streams(50, Faults(drop_frames={0}))
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert res.num_pairs == 49


def test_ambiguous_gap_splits_the_chain() -> None:
    kw, truth = make_streams(80, Faults())
    edges = kw["rising_t_us"].copy()
    edges[40:] += int(0.5 * PERIOD_US)  # a clock jump of half a period
    kw["rising_t_us"] = edges
    truth["edge_t"] = truth["edge_t"].copy()
    truth["edge_t"][40:] += int(0.5 * PERIOD_US)
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert res.num_pairs < 80


def test_extra_edges_beyond_pulse_count_are_not_paired() -> None:
    kw, truth = make_streams(30, Faults())
    kw["rising_t_us"] = np.append(kw["rising_t_us"], kw["rising_t_us"][-1] + int(PERIOD_US))
    res = pair_streams(**kw)
    assert res.num_pairs == 0
    assert any("only 30 were sent" in n for n in res.notes)


def test_exposure_fall_edges_are_attached() -> None:
    kw, truth = make_streams(20, Faults())
    kw["falling_t_us"] = kw["rising_t_us"] + 1000
    res = pair_streams(**kw)
    assert np.array_equal(res.edge_fall_t_us - res.edge_t_us, np.full(20, 1000))


def test_frame_time_off_the_mcu_fit_is_dropped() -> None:
    kw, truth = make_streams(60, Faults())
    ft = kw["frame_t_device_ns"].copy()
    ft[30] += 6_000_000  # 6 ms late: still rounds to the right pulse, but timing is broken
    kw["frame_t_device_ns"] = ft
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert 30 not in res.pulse_index and res.num_pairs == 59


def test_bad_input_is_a_clear_error() -> None:
    kw, _ = make_streams(10, Faults())
    kw["mcu_t_us"] = kw["mcu_t_us"][:5]
    with pytest.raises(SyncError, match="MCU report"):
        pair_streams(**kw)
    kw, _ = make_streams(10, Faults())
    kw["frame_t_device_ns"] = np.zeros(10, np.int64)
    with pytest.raises(SyncError, match="same device timestamp"):
        pair_streams(**kw)


def test_rising_edges_filters_channel_and_value() -> None:
    trig = np.zeros(4, dtype=[("t", "<i8"), ("id", "u1"), ("value", "u1")])
    trig["t"] = [10, 11, 20, 21]
    trig["id"] = [0, 0, 1, 0]
    trig["value"] = [1, 0, 1, 1]
    rise, fall = rising_edges(trig, channel=0)
    assert rise.tolist() == [10, 21] and fall.tolist() == [11]


def test_dedupe_ambiguous_run_dropped() -> None:
    t = np.array([0, 50_000, 100_000, 100_000 + 2_000, 150_000], np.int64) + 7
    t[2] += 1_000  # both candidates are off the grid by > 5 jitter: ambiguous
    kept, dropped = dedupe_edges(t, PERIOD_US, SyncConfig())
    assert -1 in kept.tolist()
    assert len(dropped) == 2


def test_chain_breaks_on_frame_id_contradiction() -> None:
    t = np.arange(6, dtype=np.float64) * PERIOD_US
    ids = np.array([0, 1, 2, 5, 6, 7])  # ids jump by 3 but time by one period
    chain, notes = chain_from_times("frames", t, PERIOD_US, SyncConfig(), ids=ids)
    assert chain.segment_gaps == [(1, 3)] and notes


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_faults_never_mispair(data) -> None:
    n = data.draw(st.integers(20, 120))
    inner = st.integers(1, n - 2)
    faults = Faults(
        drop_frames=set(data.draw(st.lists(inner, max_size=4))),
        missed_triggers=set(data.draw(st.lists(inner, max_size=3))),
        missing_edges=set(data.draw(st.lists(inner, max_size=3))),
        duplicate_edges={k: data.draw(st.integers(1, 12_000))
                         for k in data.draw(st.lists(inner, max_size=3))},
        incomplete=set(data.draw(st.lists(inner, max_size=2))),
    )
    faults.missed_triggers -= faults.drop_frames
    kw, truth = make_streams(n, faults, seed=data.draw(st.integers(0, 1000)))
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    untouched = (set(range(n)) - faults.drop_frames - faults.missed_triggers
                 - faults.missing_edges - faults.incomplete - set(faults.duplicate_edges))
    assert untouched <= set(res.pulse_index.tolist())


def _drop_tail_frames(kw: dict, m: int) -> None:
    for key in ("frame_id", "frame_t_device_ns", "frame_incomplete"):
        kw[key] = kw[key][:-m]


def test_frames_lost_at_the_end_are_anchored_by_the_first_frame_id() -> None:
    # an interrupted recording: the last two frames never arrived
    kw, truth = make_streams(40, Faults(missed_triggers={12}))
    _drop_tail_frames(kw, 2)
    trusting = SyncConfig(first_exposure_on_first_pulse=True)
    res = pair_streams(**kw, cfg=trusting)
    check_no_mispair(res, truth)
    assert res.num_pairs == 37 and 12 not in res.pulse_index
    # by default (or without knowing the first id) it is ambiguous: no pairs, never a shift
    res = pair_streams(**kw)
    check_no_mispair(res, truth)
    assert res.num_pairs == 0 and any("not anchored" in n for n in res.notes)
    kw["first_frame_id"] = None
    assert pair_streams(**kw, cfg=trusting).num_pairs == 0


def test_first_frame_rule_with_dropped_first_frames_and_tail_loss() -> None:
    kw, truth = make_streams(30, Faults(drop_frames={0, 1}), first_id=5)
    _drop_tail_frames(kw, 1)
    res = pair_streams(**kw, cfg=SyncConfig(first_exposure_on_first_pulse=True))
    check_no_mispair(res, truth)
    assert res.num_pairs == 27 and res.pulse_index[0] == 2


# --------------------------------------------------------------------------------------------
# frame ids that wrap (GigE Vision 1.x: 1..65535; 16-bit counters: 0..65535)

WRAP_SCHEMES = {"gige_1_to_65535": (65535, 1), "u16_0_to_65535": (65536, 0)}


def wrap_ids(ids: np.ndarray, modulus: int, first: int) -> np.ndarray:
    """Unwrapped counter values -> the ids a camera with this scheme reports."""
    return first + (ids - first) % modulus


@pytest.mark.parametrize("scheme", WRAP_SCHEMES)
def test_frame_ids_across_the_wrap_pair_every_frame(scheme: str) -> None:
    modulus, first = WRAP_SCHEMES[scheme]
    start = first + modulus - 12  # the counter wraps a dozen frames in
    kw, truth = make_streams(40, Faults(drop_frames={11, 12}, missed_triggers={20}), first_id=start)
    kw["frame_id"] = wrap_ids(kw["frame_id"], modulus, first)
    assert np.any(np.diff(kw["frame_id"]) < 0)  # the test really crosses the wrap
    res = pair_streams(**kw, frame_id_modulus=modulus)
    check_no_mispair(res, truth)
    assert set(range(40)) - set(res.pulse_index.tolist()) == {11, 12, 20}
    reasons = {d.pulse_index: d.reason for d in res.dropped if d.kind == "pulse"}
    assert "frame dropped" in reasons[12] and "missed the trigger" in reasons[20]


def test_the_wrong_modulus_misreads_the_wrap() -> None:
    """GigE ids (1..65535) read as 16-bit ids from 0: the step 65535 -> 1 looks like a skipped
    frame that the device time contradicts, which breaks the frame chain: the modulus must come
    from the camera (the manifest's frame_ids)."""
    modulus, first = WRAP_SCHEMES["gige_1_to_65535"]
    kw, truth = make_streams(30, Faults(), first_id=first + modulus - 10)
    kw["frame_id"] = wrap_ids(kw["frame_id"], modulus, first)
    right = pair_streams(**kw, frame_id_modulus=modulus)
    assert right.num_pairs == 30 and not right.dropped
    assert not any("chain broken" in n for n in right.notes)
    wrong = pair_streams(**kw, frame_id_modulus=65536)
    assert any("chain broken" in n for n in wrong.notes)


@pytest.mark.parametrize("scheme", WRAP_SCHEMES)
def test_pair_session_takes_the_id_scheme_from_the_manifest(tmp_path, scheme: str) -> None:
    from rig.devices import Frame
    from rig.evt3 import TRIGGER_DTYPE
    from rig.session import (
        FrameIdScheme,
        FramesWriter,
        SessionCounts,
        SessionManifest,
        SessionReader,
        TriggersCsvWriter,
    )
    from rig.sync import pair_session

    modulus, first = WRAP_SCHEMES[scheme]
    start = first + modulus - 5
    kw, truth = make_streams(16, Faults(drop_frames={7}), first_id=start)
    ids = wrap_ids(kw["frame_id"], modulus, first)
    with FramesWriter(tmp_path / "frames.h5", 8, 4, "Mono8") as fw:
        for fid, t_ns in zip(ids, kw["frame_t_device_ns"], strict=True):
            fw.append(Frame(np.zeros((4, 8), np.uint8), int(fid), int(t_ns), 0, 1000.0, 0.0,
                            pixel_format="Mono8"))
    csv = TriggersCsvWriter(tmp_path / "triggers.csv")
    for k, t in zip(kw["mcu_pulse_index"], kw["mcu_t_us"], strict=True):
        csv.write(int(k), int(t))
    csv.close()
    manifest = SessionManifest(status="complete", counts=SessionCounts(pulses_sent=16),
                               frame_ids=FrameIdScheme(modulus, first, start))
    manifest.settings.trigger.rate_hz = 1e6 / PERIOD_US
    manifest.save(tmp_path)
    triggers = np.zeros(2 * kw["rising_t_us"].size, TRIGGER_DTYPE)
    triggers["t"] = np.sort(np.concatenate([kw["rising_t_us"], kw["rising_t_us"] + 1000]))
    triggers["value"][0::2] = 1
    with SessionReader(tmp_path) as reader:
        assert reader.manifest.frame_ids == FrameIdScheme(modulus, first, start)
        res = pair_session(reader, triggers)
    check_no_mispair(res, truth)
    assert res.num_pairs == 15 and set(range(16)) - set(res.pulse_index.tolist()) == {7}
