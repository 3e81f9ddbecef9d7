"""Which OpenCV distribution provides `cv2`, and what to tell a user who has the wrong one.

Four PyPI distributions install the same `cv2` module (opencv-python, -headless, -contrib-python,
-contrib-python-headless); two of them in one environment overwrite each other's files. The
toolkit needs a contrib build and leaves the GUI choice to the user: the extras `[headless]`
and `[gui]` of pyproject (README, "Installing").
"""

from __future__ import annotations

from importlib import metadata

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless")
INSTALL_HINT = ("pip install 'rpea-rig[headless]' (servers) or 'rpea-rig[gui]' (a desktop, for "
                "`rig calibrate --show-pattern`), or `make setup OPENCV=gui|headless`; never both")


def opencv_distributions() -> list[str]:
    """The installed distributions that provide `cv2` (a healthy environment has exactly one)."""
    found = []
    for name in OPENCV_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def gui_hint() -> str:
    """What to do when this OpenCV cannot open a window."""
    dists = opencv_distributions()
    now = ", ".join(dists) or "no OpenCV distribution"
    return (f"this OpenCV build has no GUI ({now}); switch the environment to opencv-contrib-python: "
            f"`make setup OPENCV=gui`, or pip uninstall {' '.join(dists) or 'opencv-contrib-python-headless'}"
            " && pip install 'rpea-rig[gui]'")
