"""Packaging for users' environments (issue 14): torch as a range, one OpenCV distribution."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from common.opencv import OPENCV_DISTRIBUTIONS, gui_hint, opencv_distributions

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _names(reqs: list[str]) -> list[str]:
    return [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs]


def test_the_environment_holds_exactly_one_opencv_distribution() -> None:
    dists = opencv_distributions()
    assert len(dists) == 1, f"cv2 is provided by {dists}: two overwrite each other's files"
    assert "contrib" in dists[0]  # calibration uses contrib modules
    import cv2

    assert hasattr(cv2, "ximgproc") or hasattr(cv2, "aruco")


def test_opencv_is_an_extra_chosen_once() -> None:
    deps = _names(PYPROJECT["project"]["dependencies"])
    assert not set(deps) & set(OPENCV_DISTRIBUTIONS), "OpenCV in the main dependencies pins one variant"
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert _names(extras["headless"]) == ["opencv-contrib-python-headless"]
    assert _names(extras["gui"]) == ["opencv-contrib-python"]
    for name, reqs in extras.items():  # no other extra drags in a second cv2
        if name not in ("headless", "gui"):
            assert not set(_names(reqs)) & set(OPENCV_DISTRIBUTIONS), name


def test_torch_is_a_range_and_make_installs_the_tested_wheel() -> None:
    torch = [r for r in PYPROJECT["project"]["dependencies"] if _names([r]) == ["torch"]]
    assert len(torch) == 1 and "==" not in torch[0] and ">=" in torch[0] and "<" in torch[0], torch
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -q --disable-pip-version-check torch==2.13.0" in makefile
    assert makefile.index("torch==2.13.0") < makefile.index("-e '.[test,$(OPENCV)]'")


def test_the_gui_hint_names_the_installed_build_and_the_fix() -> None:
    hint = gui_hint()
    assert opencv_distributions()[0] in hint and "OPENCV=gui" in hint and "[gui]" in hint


def test_show_pattern_without_a_gui_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    from calibration.board import Board
    from calibration.pattern import show_pattern

    def no_gui(*_a: object) -> None:
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ 2.x")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    with pytest.raises(RuntimeError, match="no GUI.*OPENCV=gui"):
        show_pattern(Board(8, 5, 0.025), 5.0, 800, 600)
