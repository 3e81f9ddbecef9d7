"""The pairing of a simulated session measured against the simulator's ground truth.

`rpea build` pairs frames with trigger edges from the records alone (`rig.sync`); for a
simulated session `ground_truth/triggers.csv` also says what really happened to every pulse
(`rig.ground_truth.TRUTH_PULSE_COLUMNS`): which frame its exposure became, what the event camera
stamped for its rising edge, and the true instants on the event clock. `sync_vs_truth` compares
the two and becomes the `sync_vs_truth` block of the build report (docs/dataset.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rig.sync import SyncResult

#: Mis-paired pairs listed in the report (all are counted).
MAX_LISTED = 20


def _stats(err_us: np.ndarray) -> dict[str, float] | None:
    """|error| median, p95 and max, and the mean signed error (a bias), in microseconds."""
    err = err_us[np.isfinite(err_us)]
    if not err.size:
        return None
    a = np.abs(err)
    return {"median": round(float(np.median(a)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "max": round(float(a.max()), 3), "mean_signed": round(float(err.mean()), 3),
            "n": int(err.size)}


def sync_vs_truth(truth: np.ndarray, sync: SyncResult, frame_t_device_ns: np.ndarray,
                  trigger_delay_us: float = 0.0) -> dict[str, Any]:
    """Compare the pairs with the truth (`GroundTruth.pulses()`).

    A pair is mis-paired when its frame was not exposed by its pulse, or its edge is not its
    pulse's edge. `edge_error_us`: the paired EXT_TRIGGER stamp minus the true rising edge on the
    event clock (the stamp's latency and 1 us quantisation). `exposure_start_error_us`: the
    exposure start the builder uses (stamp + `trigger_delay_us`) minus the true exposure start on
    the event clock (adds the frame camera's trigger latency and jitter). Both are taken at the
    pulse that really exposed the frame, so a mis-pairing also shows as a period-sized error.
    """
    n = sync.num_pairs
    frame_t = np.asarray(frame_t_device_ns, np.int64)
    delivered = truth["frame_delivered"] == 1
    row_of_pulse = {int(k): i for i, k in enumerate(truth["pulse_index"])}
    pulse_of_frame_t = {int(t): int(k) for t, k in zip(truth["t_frame_clock_ns"][delivered],
                                                        truth["pulse_index"][delivered],
                                                        strict=True)}
    stamped = truth["t_edge_stamped_us"]
    has_stamps = bool((stamped >= 0).any())
    pulse_of_stamp = {int(t): int(k) for t, k in zip(stamped[stamped >= 0],
                                                      truth["pulse_index"][stamped >= 0], strict=True)}
    ev_true_us = np.where(truth["t_event_clock_ns"] >= 0, truth["t_event_clock_ns"] / 1000.0,
                          truth["t_event_clock_us"].astype(np.float64))
    exp_true_us = np.where(truth["t_exposure_event_clock_ns"] >= 0,
                           truth["t_exposure_event_clock_ns"] / 1000.0, np.nan)

    frame_pulse = np.full(n, -1, np.int64)
    edge_pulse = np.full(n, -1, np.int64)
    edge_err = np.full(n, np.nan)
    exp_err = np.full(n, np.nan)
    for j in range(n):
        k = int(sync.pulse_index[j])
        frame_pulse[j] = pulse_of_frame_t.get(int(frame_t[int(sync.frame_index[j])]), -1)
        edge_t = int(sync.edge_t_us[j])
        if has_stamps:
            edge_pulse[j] = pulse_of_stamp.get(edge_t, -1)
        else:  # older ground truth: the nearest true edge
            i = int(np.argmin(np.abs(ev_true_us - edge_t))) if ev_true_us.size else -1
            if i >= 0 and abs(ev_true_us[i] - edge_t) < 100.0:
                edge_pulse[j] = int(truth["pulse_index"][i])
        row = row_of_pulse.get(int(frame_pulse[j]) if frame_pulse[j] >= 0 else k)
        if row is not None:
            edge_err[j] = edge_t - ev_true_us[row]
            exp_err[j] = edge_t + float(trigger_delay_us) - exp_true_us[row]
    wrong = (frame_pulse != sync.pulse_index) | (edge_pulse != sync.pulse_index)
    listed = [{"pulse": int(sync.pulse_index[j]), "frame_exposed_by": int(frame_pulse[j]),
               "edge_of": int(edge_pulse[j])} for j in np.flatnonzero(wrong)[:MAX_LISTED]]
    possible = delivered & (truth["incomplete"] == 0)
    if has_stamps:
        possible &= stamped >= 0
    return {
        "pairs": int(n),
        "mispaired": int(wrong.sum()),
        "mispaired_list": listed,
        # frames that arrived complete with their edge recorded, hence pairable in principle
        "pairs_possible": int(possible.sum()),
        "pairs_missed": int(possible.sum()) - int((~wrong).sum()),
        "truth_pulses": int(truth.size),
        "edge_error_us": _stats(edge_err),
        "exposure_start_error_us": _stats(exp_err),
        "trigger_delay_us": float(trigger_delay_us),
    }


def summary(block: dict[str, Any]) -> str:
    """One line for the build log."""
    e = block.get("edge_error_us") or {}
    text = f"vs truth: {block['mispaired']} mis-paired, {block['pairs_missed']} pairable missed"
    if e:
        text += f", edge error median/p95/max {e['median']:.1f}/{e['p95']:.1f}/{e['max']:.1f} us"
    return text
