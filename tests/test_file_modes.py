"""Every file the toolkit publishes takes its mode from the umask, as a plain `open()` would.

A short, scaled-down simulated session is recorded (session.json, frames.h5, events.raw,
triggers.csv, the simulator's ground truth) and built with `rpea build` (the RPEA sequence file,
index.json, the build report, the recorded split assignment; the image processes' temporary part
files must be gone), beside a calib.yaml and a calibration report.json: under umask 0o022 every
file must be 0o644 (readable by colleagues on shared lab storage, where a 0o600 from
`mkstemp` or a temporary HDF5 file would lock them out), under umask 0o077 every file 0o600 (the
mode follows the umask, it is not forced to 0o644).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("rig.sim.world", reason="simulated rig (rig.sim.world) not available")

from calibration.report import write_report_json  # noqa: E402
from dataset.cli import main as rpea  # noqa: E402
from dataset.demo import ground_truth_calibration  # noqa: E402
from rig import recorder  # noqa: E402
from rig.session import SessionReader  # noqa: E402
from rig.sim.world import SimConfig, SimRig  # noqa: E402

SCALE = 0.25  # 256x192 frames, 160x90 events
DURATION_S = 0.5


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """`os.umask` for the test to set the process umask with; the original one is restored
    afterwards (other tests, and pytest's own files, must not inherit the test's)."""
    original = os.umask(0o022)
    os.umask(original)
    try:
        yield os.umask
    finally:
        os.umask(original)


def _record_small(out: Path, scenario: str, seed: int) -> Path:
    """`rig record` on the simulated rig with both sensors scaled down (the recorder's own code)."""
    def open_small(opts: recorder.RecordOptions) -> recorder.RigDevices:
        sim = SimRig(SimConfig(scenario=opts.scenario, seed=opts.seed, scale=SCALE))
        return recorder.RigDevices(sim.event_camera, sim.frame_camera, sim.trigger, sim_rig=sim)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder, "open_devices", open_small)
        summary = recorder.record_session(recorder.RecordOptions(
            out_dir=out, duration_s=DURATION_S, rate_hz=20, scenario=scenario, seed=seed,
            show_status=False))
    assert summary.status == "complete", summary.detail
    return out


def _record_and_build(tmp: Path) -> list[Path]:
    """Record a session, write a calib.yaml and a report.json, build it (`--split all`, the
    default parallel image processes); every file made, sorted."""
    day = _record_small(tmp / "rec" / "day_sim", "day", 3)
    calib = ground_truth_calibration(SessionReader(day).ground_truth_geometry(),
                                     tmp / "calib" / "calib.yaml")
    write_report_json({"reprojection_rms_px": 0.1}, tmp / "calib" / "report.json")
    res = CliRunner().invoke(rpea, ["build", "--split", "all", "--sessions", str(day),
                                    "--calib", str(calib), "--out", str(tmp / "data"), "--quiet",
                                    "--seed", "0"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return sorted(p for p in tmp.rglob("*") if not p.is_dir())


def _modes(files: list[Path], root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}


#: The files the test is about: each must be there (a renamed output must not slip through).
EXPECTED = ["calib/calib.yaml", "calib/report.json", "rec/day_sim/session.json",
            "rec/day_sim/frames.h5", "rec/day_sim/events.raw", "rec/day_sim/triggers.csv",
            "data/splits.yaml", "data/*/index.json", "data/*/build_report.json", "data/*/day_sim.h5"]


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)],
                         ids=["umask-022", "umask-077"])
def test_published_files_follow_the_umask(tmp_path: Path, umask, mask: int, mode: int) -> None:
    umask(mask)
    files = _record_and_build(tmp_path)
    modes = _modes(files, tmp_path)
    missing = [pattern for pattern in EXPECTED if not list(tmp_path.glob(pattern))]
    assert not missing, f"expected outputs not written: {missing} (written: {sorted(modes)})"
    leftovers = [name for name in modes if Path(name).name.startswith(".") or ".tmp" in name]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    wrong = {name: m for name, m in modes.items() if m != oct(mode)}
    assert not wrong, f"umask {oct(mask)}: expected every file {oct(mode)}, got {wrong}"
