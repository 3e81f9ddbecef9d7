"""benchmarks/e2e_validation.py's bookkeeping: the JSON the issue asks for (plain percent numbers,
means over seeds, their spread), the event shifts in both units, and the goal verdicts."""

from __future__ import annotations

import json

import pytest
from benchmark_module import load_benchmark


@pytest.fixture(scope="module")
def e2e():
    return load_benchmark("e2e_validation")


def _doc(miou: float, under: float, over: float, shifts: dict[float, float] | None = None,
         sky_over: float = 50.0) -> dict:
    """A `cacd eval` document: one entry per event shift (the first unshifted). Per class: road
    90 everywhere, sky `sky_over` on the over-exposed pixels, pole absent from them (None)."""
    def entry(px: float, m: float) -> dict:
        cls = {"road": 90.0, "sky": 60.0, "pole": 5.0}
        return {"misalign_px": px, "mIoU": m, "overall": {"mIoU": m, "per_class": cls},
                "under": {"mIoU": under, "per_class": cls},
                "over": {"mIoU": over, "per_class": {**cls, "sky": sky_over, "pole": None}},
                "day": {"mIoU": m + 1}, "night": {"mIoU": None if px else m - 1}}

    shifts = shifts or {0.0: miou}
    return {"mIoU": miou, "misalignment": [entry(px, m) for px, m in shifts.items()]}


def _docs(e2e, both_by_seed: dict[int, float], falling: bool = True) -> dict:
    scale = 0.25
    docs = {}
    for seed, both in both_by_seed.items():
        shifts = {}
        for name, px in e2e.shifts_grid_px(scale).items():
            n = float(name.split(":")[1])
            k = 1.0 if name.startswith("grid") else 4.0  # an input pixel is 4 grid pixels
            wobble = (-1) ** int(n) * 0.2 if n else 0.0
            shifts[px] = both - (n * k * 0.1 if falling else wobble)
        docs[("rgb_events", seed)] = _doc(both, 30.0 + seed, 40.0, dict(sorted(shifts.items())),
                                          sky_over=70.0 + seed)
        docs[("rgb_only", seed)] = _doc(20.0 + seed, 20.0, 30.0)
        docs[("event_only", seed)] = _doc(15.0, 25.0, 35.0)
    return docs


def test_shifts_cover_both_units(e2e):
    shifts = e2e.shifts_grid_px(0.25)
    assert shifts == {"grid:0": 0.0, "grid:1": 1.0, "grid:2": 2.0, "grid:4": 4.0,
                      "working:1": 4.0, "working:2": 8.0, "working:4": 16.0}


def test_summary_has_the_issues_fields_as_plain_percent(e2e):
    result = e2e.summarise(_docs(e2e, {0: 26.0, 1: 28.0}), [0, 1], 0.25)
    json.dumps(result)  # serialisable as is
    for row in ("rgb_only", "event_only", "rgb_events"):
        for m in ("mIoU", "under", "over", "day", "night"):
            assert isinstance(result[row][m], float) and 0 <= result[row][m] <= 100, (row, m)
    assert result["rgb_events"]["mIoU"] == 27.0 and result["rgb_events"]["spread"]["mIoU"] == 2.0
    assert result["rgb_only"]["per_seed"]["1"]["mIoU"] == 21.0
    assert list(result["misalign"]) == ["0", "1", "2", "4"]
    assert result["misalign"]["0"] == 27.0 and result["misalign"]["4"] == pytest.approx(26.6)
    # an input pixel is 4 grid pixels here: the same shift list, read in the other unit
    assert result["misalign_working_px"]["1"] == result["misalign"]["4"]
    assert result["misalign_working_px"]["4"] == pytest.approx(27.0 - 1.6)
    goal = result["goal"]
    assert goal["margin_over_rgb_only"] == {"mIoU": 6.5, "under": 10.5, "over": 10.0}
    assert goal["events_help_by_3"] and goal["misalign_falls"] and goal["misalign_working_px_falls"]
    table = e2e.format_table(result)
    assert "rgb_events | 27.0 ± 1.0" in table and "goal >= 3 each: met" in table


def test_per_class_iou_says_where_the_events_help(e2e):
    """Each row's IoU per class (mean over seeds) overall / under / over, and image + events minus
    image only per class: the margin one mIoU hides. A class absent from a subset is left out."""
    result = e2e.summarise(_docs(e2e, {0: 26.0, 1: 28.0}), [0, 1], 0.25)
    assert result["rgb_events"]["per_class"]["over"] == {"road": 90.0, "sky": 70.5}
    assert result["rgb_only"]["per_class"]["overall"]["pole"] == 5.0
    margin = result["goal"]["per_class_margin_over_rgb_only"]
    assert margin["over"] == {"road": 0.0, "sky": 20.5}
    assert margin["under"] == {"road": 0.0, "sky": 0.0, "pole": 0.0}
    table = e2e.format_table(result)
    assert "over-exposed pixels, image + events - image only: sky +20.5" in table
    assert "under-exposed pixels, image + events - image only: no change" in table


def test_goal_verdicts_can_fail(e2e):
    docs = _docs(e2e, {0: 21.0, 1: 22.0}, falling=False)
    result = e2e.summarise(docs, [0, 1], 0.25)
    assert result["goal"]["margin_over_rgb_only"]["mIoU"] == 1.0
    assert not result["goal"]["events_help_by_3"]
    assert not result["goal"]["misalign_falls"]  # up and down with the shift
    assert "NOT met" in e2e.format_table(result)


def test_exposure_overrides_reach_the_session_table(e2e):
    """`--exposure-us overexposed=40000` changes only that scenario's sessions; a bad item is
    refused with what was wrong."""
    table = e2e.session_table(e2e.parse_exposures(["overexposed=40000"]))
    over = [s for s in table if s["scenario"] == "overexposed"]
    assert len(over) == 2 and all(s["exposure_us"] == 40000.0 for s in over)
    assert all("exposure_us" not in s for s in table if s["scenario"] != "overexposed")
    for bad, why in (("sunset=1000", "SCENARIO one of"), ("night", "SCENARIO=US"),
                     ("night=fast", "not a number"), ("night=0", "positive")):
        with pytest.raises(ValueError, match=why):
            e2e.parse_exposures([bad])
