"""`make -C firmware test`: the firmware's protocol interpreter, timer arithmetic and receive
ring compiled with the host's gcc and run (they are plain C; no AVR toolchain needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


def test_firmware_host_unit_tests() -> None:
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("make or gcc not installed: firmware host tests skipped")
    proc = subprocess.run(["make", "-C", str(FIRMWARE), "test"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_proto: ok" in proc.stdout
    assert "test_timing: ok" in proc.stdout
    assert "test_ring: ok" in proc.stdout
