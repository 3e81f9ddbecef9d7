"""Backend registry: devices chosen by name, their modules imported only when asked for.

A backend whose SDK is not installed raises `BackendUnavailable` with one line that says what to
install, never an ImportError traceback.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


class BackendUnavailable(RuntimeError):
    """The backend's SDK (or a package it needs) is not installed."""


@dataclass(frozen=True)
class BackendSpec:
    kind: str  # "event_camera" | "frame_camera" | "trigger" | "rig" (a whole simulated rig)
    name: str
    target: str  # "package.module:ClassName"
    install_hint: str


_BACKENDS: dict[tuple[str, str], BackendSpec] = {}


def register_backend(kind: str, name: str, target: str, install_hint: str) -> None:
    _BACKENDS[(kind, name)] = BackendSpec(kind, name, target, install_hint)


def backend_names(kind: str) -> list[str]:
    return sorted(name for (k, name) in _BACKENDS if k == kind)


def backend_spec(kind: str, name: str) -> BackendSpec:
    try:
        return _BACKENDS[(kind, name)]
    except KeyError:
        known = ", ".join(backend_names(kind)) or "none"
        raise BackendUnavailable(f"unknown {kind} backend {name!r} (known: {known})") from None


def load_backend_class(kind: str, name: str) -> Any:
    """Import the backend's module now and return its class (or factory function)."""
    spec = backend_spec(kind, name)
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BackendUnavailable:
        raise
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise BackendUnavailable(
            f"{kind} backend {name!r} needs {missing!r}, which is not installed: {spec.install_hint}"
        ) from None
    return getattr(module, attr)


def create_device(kind: str, name: str, **kwargs: Any) -> Any:
    """Instantiate a backend by name (not opened yet); the target may be a class or a factory."""
    return load_backend_class(kind, name)(**kwargs)


# The built-in table. Each backend module is imported only by `load_backend_class`. The
# simulated rig is a whole rig (its three devices share one simulated world): kind "rig".
register_backend("rig", "sim", "rig.sim.world:create_sim_rig", "part of this package")
register_backend("event_camera", "sim", "rig.sim.devices:SimEventCamera", "part of this package")
register_backend("frame_camera", "sim", "rig.sim.devices:SimFrameCamera", "part of this package")
register_backend("trigger", "sim", "rig.sim.mcu:SimTrigger", "part of this package")
register_backend("trigger", "serial", "rig.trigger:SerialTrigger", "pip install pyserial")
register_backend(
    "event_camera",
    "metavision",
    "rig.backends.metavision:MetavisionEventCamera",
    "install OpenEB (metavision_hal Python bindings), see docs/hardware.md",
)
register_backend(
    "frame_camera",
    "pyspin",
    "rig.backends.pyspin:SpinnakerFrameCamera",
    "install FLIR Spinnaker SDK and its PySpin wheel, see docs/hardware.md",
)
register_backend(
    "frame_camera",
    "aravis",
    "rig.backends.aravis:AravisFrameCamera",
    "apt install gir1.2-aravis-0.8 libaravis-0.8-0 and pip install 'PyGObject<3.51'",
)
