"""Shared fixtures: where the real sample recordings are, and test-wide settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("RPEA_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """`../shared/data` beside the repository (real Prophesee recordings); skip if absent."""
    path = _shared_data()
    if not (path / "evt").is_dir():
        pytest.skip(f"shared sample data not found at {path} (set RPEA_SHARED_DATA)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _tests_leave_no_workspace_in_the_repository():
    """A command typed bare writes into the workspace of its current folder; tests run it in a
    temporary folder. This fails the run if one wrote recordings/, calib/, data/ or runs/ here."""
    folders = [REPO / name for name in ("recordings", "calib", "data", "runs")]
    before = {p for p in folders if p.exists()}
    yield
    made = sorted(str(p) for p in folders if p.exists() and p not in before)
    assert not made, f"a test created workspace folders in the repository: {made}"
