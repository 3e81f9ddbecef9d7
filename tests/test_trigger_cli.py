"""`rig trigger ping|status|test` on the simulated MCU (real time) and on a port that is no MCU."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rig.cli import main


def test_ping_sim() -> None:
    result = CliRunner().invoke(main, ["trigger", "ping", "--port", "sim", "--count", "3"])
    assert result.exit_code == 0, result.output
    assert "rpea-trigger (sim), firmware 1.0.0, protocol 1.0" in result.output
    assert "PING x3" in result.output


def test_status_json_sim() -> None:
    result = CliRunner().invoke(main, ["trigger", "status", "--port", "sim", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["state"] == "idle" and status["rate_mhz"] == 20_000
    assert status["error_flags"] == 0 and status["flags"] == ""


def test_rate_test_sim_passes() -> None:
    result = CliRunner().invoke(
        main, ["trigger", "test", "--port", "sim", "--rate", "50", "--seconds", "0.6"])
    assert result.exit_code == 0, result.output
    assert "the timer achieves 50 Hz (period 320000 cycles)" in result.output
    assert "spacing 20000..20000 us" in result.output
    assert result.output.rstrip().endswith("OK")


def test_rate_test_refused_width_is_a_clear_error() -> None:
    result = CliRunner().invoke(
        main, ["trigger", "test", "--port", "sim", "--rate", "100", "--width-us", "20000"])
    assert result.exit_code == 1
    assert "ERR 8 width too long for rate" in result.output


def test_loopback_port_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["trigger", "ping", "--port", "loop://", "--timeout", "0.3"])
    assert result.exit_code == 1
    assert "echoes what is sent" in result.output
