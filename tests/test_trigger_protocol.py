"""The protocol table (rig/trigger/protocol.py) against its C copies: the generated header and the
timer arithmetic vectors the firmware's host tests replay.

Regenerate both after changing the table: `RPEA_REGEN=1 .venv/bin/python -m pytest
tests/test_trigger_protocol.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rig.trigger import protocol as tp

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
HEADER = FIRMWARE / "src" / "proto_spec.h"
TIMING_VECTORS = FIRMWARE / "tests" / "timing_vectors.txt"

# Hand-picked cases (typical camera rates, limits, rounding edges) plus a deterministic sweep.
_CASES = [
    (20_000, 1000), (20_000, 5000), (30_000, 5000), (25_000, 5000), (10_000, 1000), (15_000, 2000),
    (50_000, 1000), (60_000, 100), (100_000, 1000), (120_000, 500), (200_000, 1000),
    (1_000_000, 100), (10_000_000, 20), (10_000_000, 80), (10_000_000, 81), (250, 1000),
    (250, 3_999_980), (250, 4_000_000), (1000, 999_980), (1000, 999_000), (20_000, 49_980),
    (20_000, 49_983), (20_000, 50_000), (30_000, 33_313), (244_141, 1000), (244_140, 1000),
    (30_518, 1000), (30_517, 1000), (3_815, 1000), (3_814, 1000), (977, 1000), (976, 1000),
    (33_333, 16_000), (29_970, 1000), (59_940, 1000),
]


def timing_vector_text() -> str:
    lines = [
        "# rate_mhz width_us -> prescaler top ocrb period_cyc width_cyc achieved_rate_mhz "
        "achieved_width_us",
        "#                   -> ERR <code>",
        "# GENERATED from rig/trigger/protocol.py:plan_timer by tests/test_trigger_protocol.py;",
        "# firmware/tests/test_timing.c checks src/timing.c against every line.",
    ]
    cases = list(_CASES)
    rate = 250.0
    while rate <= 10_000_000:
        for width in (20, 1000, 5000, 30_000):
            cases.append((int(rate), width))
        rate *= 1.37
    for rate_mhz, width_us in cases:
        plan = tp.plan_timer(rate_mhz, width_us)
        if isinstance(plan, int):
            lines.append(f"{rate_mhz} {width_us} -> ERR {plan}")
        else:
            lines.append(
                f"{rate_mhz} {width_us} -> {plan.prescaler} {plan.top} {plan.ocrb} "
                f"{plan.period_cyc} {plan.width_cyc} {plan.achieved_rate_mhz} "
                f"{plan.achieved_width_us}"
            )
    return "\n".join(lines) + "\n"


def _check_generated(path: Path, text: str) -> None:
    if os.environ.get("RPEA_REGEN"):
        path.write_text(text)
    assert path.read_text() == text, (
        f"{path} is out of date with rig/trigger/protocol.py: regenerate it (see module docstring)"
    )


def test_c_header_matches_table() -> None:
    _check_generated(HEADER, tp.emit_c_header())


def test_timing_vectors_match_python() -> None:
    _check_generated(TIMING_VECTORS, timing_vector_text())


@pytest.mark.parametrize(
    ("rate_mhz", "width_us", "prescaler", "top", "ocrb"),
    [
        # Worked by hand: 20 Hz = 800000 cycles = 12500 ticks of /64; 5 ms = 1250 ticks.
        (20_000, 5000, 64, 12_499, 1249),
        # 30 Hz: 533333.3 cycles -> 8333 ticks of /64 = 533312 cycles (30.0012 Hz).
        (30_000, 5000, 64, 8332, 1249),
        # 10 kHz: 1600 cycles fit /1; 20 us = 320 cycles.
        (10_000_000, 20, 1, 1599, 319),
        # 0.25 Hz: 64e6 cycles = 62500 ticks of /1024; 1000 us = 15.6 -> 16 ticks.
        (250, 1000, 1024, 62_499, 15),
    ],
)
def test_plan_by_hand(rate_mhz: int, width_us: int, prescaler: int, top: int, ocrb: int) -> None:
    plan = tp.plan_timer(rate_mhz, width_us)
    assert not isinstance(plan, int)
    assert (plan.prescaler, plan.top, plan.ocrb) == (prescaler, top, ocrb)
    assert plan.period_cyc == (top + 1) * prescaler


def test_plan_refuses_width_without_low_time() -> None:
    assert tp.plan_timer(20_000, 50_000) == tp.ERR_WIDTH_TOO_LONG
    assert tp.plan_timer(10_000_000, 81) == tp.ERR_WIDTH_TOO_LONG


def test_plan_error_is_bounded_by_half_a_tick() -> None:
    for rate_mhz in range(250, 10_000_001, 7919):
        plan = tp.plan_timer(rate_mhz, 20)
        assert not isinstance(plan, int)
        exact_cyc = tp.F_CPU_HZ * 1000 / rate_mhz
        assert abs(plan.period_cyc - exact_cyc) <= plan.prescaler / 2
        assert plan.top <= 0xFFFF


def test_err_line_format() -> None:
    assert tp.err_line(tp.ERR_UNKNOWN_KEY, "averyveryverylongkey") == (
        "ERR 5 unknown key: averyveryverylon"
    )
    assert tp.err_line(tp.ERR_BUSY) == "ERR 9 busy"
