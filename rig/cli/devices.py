"""`rig devices`: what each installed backend sees (cameras by serial, trigger MCU serial ports).

Why its own command: before a first recording the user needs to know that OpenEB, Spinnaker or
Aravis are installed and find the cameras' serials for rig.yaml. A backend whose SDK is missing
prints one line saying what to install. For Aravis this is device discovery (GigE Vision
broadcasts on every network interface), so it only ever runs when a user asks.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import click

from rig.registry import BackendUnavailable, backend_spec

#: (kind, backend) pairs that can list devices, in the order shown.
LISTABLE = (("event_camera", "metavision"), ("frame_camera", "pyspin"), ("frame_camera", "aravis"),
            ("trigger", "serial"))


def _list_serial_ports() -> list[dict[str, str]]:
    try:
        from serial.tools import list_ports
    except ImportError as exc:
        raise BackendUnavailable(f"listing serial ports needs pyserial ({exc}): "
                                 "pip install pyserial") from None
    return [{"port": p.device, "description": p.description or "", "hwid": p.hwid or ""}
            for p in list_ports.comports()]


def list_backend(kind: str, name: str) -> list[dict[str, Any]]:
    """Devices one backend sees; `BackendUnavailable` (one line) when its SDK is missing."""
    if (kind, name) == ("trigger", "serial"):
        return _list_serial_ports()
    module_name = backend_spec(kind, name).target.partition(":")[0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"{name}: cannot import {module_name} ({exc})") from None
    return module.list_cameras()


def _describe(dev: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in dev.items() if v not in ("", None))


@click.command("devices")
@click.option("--backend", "backends", multiple=True,
              type=click.Choice([name for _, name in LISTABLE]),
              help="Only these backends (repeatable). Default: all of them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def devices(backends: tuple[str, ...], as_json: bool) -> None:
    """List the cameras and trigger ports each installed backend sees.

    A backend whose SDK is missing gets one line saying what to install. Note: the aravis
    backend discovers cameras, which broadcasts GigE Vision discovery packets on every network
    interface; use --backend to skip it.

    \b
    Examples:
      rig devices                         # every backend
      rig devices --backend pyspin        # only FLIR cameras through Spinnaker
      rig devices --backend metavision --json
    """
    report: dict[str, Any] = {}
    for kind, name in LISTABLE:
        if backends and name not in backends:
            continue
        key = f"{kind}/{name}"
        try:
            found = list_backend(kind, name)
        except BackendUnavailable as exc:
            report[key] = {"available": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - an SDK failing at runtime: report, go on
            report[key] = {"available": True, "error": f"{type(exc).__name__}: {exc}", "devices": []}
        else:
            report[key] = {"available": True, "devices": found}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, entry in report.items():
        if not entry["available"]:
            click.echo(f"{key}: not installed: {entry['error']}")
        elif "error" in entry:
            click.echo(f"{key}: error: {entry['error']}")
        elif not entry["devices"]:
            click.echo(f"{key}: no devices found")
        else:
            click.echo(f"{key}: {len(entry['devices'])} found")
            for dev in entry["devices"]:
                click.echo(f"  {_describe(dev)}")
