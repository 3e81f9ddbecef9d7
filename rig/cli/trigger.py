"""`rig trigger`: talk to the trigger MCU (the Uno, the firmware in QEMU, or the simulated MCU)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from common.clierrors import positive
from rig.devices import TriggerSettings

if TYPE_CHECKING:
    from rig.trigger import SerialTrigger

_ARDUINO_VIDS = {0x2341, 0x2A03, 0x1A86}  # Arduino LLC, Arduino SRL, WCH CH340 (Uno clones)

PORT_HELP = ("serial device (/dev/ttyACM0, COM3), pyserial URL (socket://127.0.0.1:5678 for the "
             "firmware in QEMU, loop://) or 'sim' for the simulated MCU; default: $RPEA_TRIGGER_PORT"
             " or the one Arduino found on USB")


def _autodetect_port() -> str:
    try:
        from serial.tools import list_ports
    except ImportError:
        raise click.ClickException("pyserial is not installed: pip install pyserial") from None
    ports = list(list_ports.comports())
    found = [p.device for p in ports if p.vid in _ARDUINO_VIDS or "ttyACM" in p.device]
    if len(found) == 1:
        return found[0]
    if not found:
        raise click.UsageError("no Arduino found on USB: give --port (or --port sim)")
    raise click.UsageError(f"several candidate ports ({', '.join(found)}): pick one with --port")


def open_trigger(port: str | None, timeout_s: float) -> SerialTrigger:
    """An opened trigger client for a --port value ('sim' = the simulated MCU, real time)."""
    from rig.trigger import SerialTrigger, TriggerError

    port = port or _autodetect_port()
    trig: SerialTrigger
    if port == "sim":
        from rig.sim.mcu import SimTrigger

        trig = SimTrigger(realtime=True, timeout_s=timeout_s)
    else:
        trig = SerialTrigger(port, timeout_s=timeout_s)
    try:
        trig.open()
    except TriggerError as exc:
        raise click.ClickException(str(exc)) from None
    return trig


def _port_option(f):
    return click.option("--port", envvar="RPEA_TRIGGER_PORT", default=None, help=PORT_HELP)(f)


def _timeout_option(f):
    return click.option("--timeout", "timeout_s", type=positive(float, "s"), default=2.0, show_default=True,
                        help="seconds to wait for each reply")(f)


@click.group("trigger")
def trigger() -> None:
    """Check and exercise the trigger MCU that fires both cameras.

    \b
    Examples:
      rig trigger ping --port /dev/ttyACM0
      rig trigger status --port socket://127.0.0.1:5678     # firmware running in QEMU
      rig trigger test --rate 20 --seconds 5 --port sim     # the simulated MCU
    """


@trigger.command()
@_port_option
@_timeout_option
@click.option("--count", "n", type=positive(int), default=5, show_default=True, help="PINGs to send")
def ping(port: str | None, timeout_s: float, n: int) -> None:
    """Handshake with the firmware and time PING round trips.

    \b
    Example:
      rig trigger ping --port /dev/ttyACM0 --count 10
    """
    from rig.trigger import TriggerError

    trig = open_trigger(port, timeout_s)
    try:
        info = trig.info()
        click.echo(f"{info.serial}: {info.model}, firmware {info.firmware}, protocol "
                   f"{info.extra.get('protocol')}, F_CPU {info.extra.get('f_cpu_hz')} Hz")
        rtts_ms = [trig.ping() * 1e3 for _ in range(max(1, n))]
        click.echo(f"PING x{len(rtts_ms)}: min {min(rtts_ms):.2f} ms, "
                   f"mean {sum(rtts_ms) / len(rtts_ms):.2f} ms, max {max(rtts_ms):.2f} ms")
    except TriggerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        trig.close()


@trigger.command()
@_port_option
@_timeout_option
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def status(port: str | None, timeout_s: float, as_json: bool) -> None:
    """Show state, pulses emitted, MCU time, configuration and error flags.

    \b
    Example:
      rig trigger status --port /dev/ttyACM0 --json
    """
    from rig.trigger import TriggerError, describe_flags

    trig = open_trigger(port, timeout_s)
    try:
        st = trig.status()
    except TriggerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        trig.close()
    if as_json:
        click.echo(json.dumps({**st.__dict__, "flags": describe_flags(st.error_flags)}))
        return
    click.echo(f"state        {st.state}\npulses       {st.pulses_emitted}\n"
               f"mcu time     {st.mcu_time_us / 1e6:.6f} s\n"
               f"rate         {st.rate_mhz / 1000:g} Hz\nwidth        {st.width_us} us\n"
               f"count        {st.count or 'until STOP'}\n"
               f"error flags  0x{st.error_flags:02X} {describe_flags(st.error_flags)}")


@trigger.command()
@_port_option
@_timeout_option
@click.option("--rate", "rate_hz", type=positive(float, "Hz"), default=20.0, show_default=True,
              help="pulse rate, Hz")
@click.option("--width-us", type=positive(int, "us"), default=5000, show_default=True,
              help="pulse width, us")
@click.option("--seconds", type=positive(float, "s"), default=5.0, show_default=True,
              help="how long to run")
@click.option("--tolerance", type=positive(float), default=0.05, show_default=True,
              help="allowed relative rate error against the host clock")
def test(port: str | None, timeout_s: float, rate_hz: float, width_us: int, seconds: float,
         tolerance: float) -> None:
    """Run a pulse train and check its rate against the host clock.

    Counts pulses between two STATUS replies, compares the MCU clock with the host clock and
    checks the pulse reports' spacing; exits with status 1 when the rate is off by more than
    --tolerance.

    \b
    Example:
      rig trigger test --rate 20 --seconds 5 --port /dev/ttyACM0
    """
    from tqdm import tqdm

    from rig.trigger import TriggerError, describe_flags

    trig = open_trigger(port, timeout_s)
    try:
        trig.configure(TriggerSettings(rate_hz=rate_hz, width_us=width_us))
        cfg = trig.last_config
        click.echo(f"configured {rate_hz:g} Hz / {width_us} us: the timer achieves "
                   f"{int(cfg['achieved_rate_mhz']) / 1000:g} Hz "
                   f"(period {cfg['period_cyc']} cycles), width {cfg['achieved_width_us']} us")
        trig.start()
        time.sleep(min(0.2, seconds / 10))
        first, t0 = trig.status(), time.monotonic()
        reports = []
        with tqdm(total=round(seconds, 1), unit="s", desc="pulsing", leave=False,
                  disable=None) as bar:  # disable=None: no bar off a terminal
            while (elapsed := time.monotonic() - t0) < seconds:
                reports += trig.read_pulses(timeout_s=min(0.25, seconds - elapsed))
                if (done := round(min(elapsed, seconds), 1)) != bar.n:
                    bar.n = done
                    bar.refresh()
        last, t1 = trig.status(), time.monotonic()
        reports += trig.read_pulses()
        trig.stop()
    except TriggerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        trig.close()
    host_s = t1 - t0
    counted = last.pulses_emitted - first.pulses_emitted
    measured_hz = counted / host_s
    error = measured_hz / rate_hz - 1.0
    mcu_s = (last.mcu_time_us - first.mcu_time_us) / 1e6
    click.echo(f"pulses       {counted} in {host_s:.3f} s (host clock), expected "
               f"{rate_hz * host_s:.1f}")
    click.echo(f"rate         {measured_hz:.4f} Hz ({error * 100:+.2f} %)")
    click.echo(f"mcu clock    {mcu_s:.6f} s for {host_s:.6f} s host "
               f"({(mcu_s / host_s - 1) * 100:+.3f} %)")
    if len(reports) > 1:
        steps = [b.t_us - a.t_us for a, b in zip(reports, reports[1:], strict=False)]
        click.echo(f"reports      {len(reports)}, spacing {min(steps)}..{max(steps)} us (MCU clock)")
    click.echo(f"error flags  0x{last.error_flags:02X} {describe_flags(last.error_flags)}")
    if abs(error) > tolerance:
        click.echo(f"FAIL: rate off by {error * 100:+.2f} % (tolerance {tolerance * 100:g} %)",
                   err=True)
        raise SystemExit(1)
    click.echo("OK")
