"""`rig.yaml`: which backends drive the real rig, their serials, the wiring and every setting.

Why a file: a recording on hardware depends on facts the software cannot discover safely (which
FLIR line the MCU drives, which EVK4 trigger channel, whether ExposureActive is wired back), so they
are written down once, checked against each other here, and stored in every session manifest.
Example: `configs/rig.example.yaml`. Every error names the file and the key (and, for a file that
rig.yaml points to, that file and its line). The event camera is taken to be the EVK4's IMX636: bias
names and ranges, the anti-flicker band and the hot-pixel mask are checked against it here, and
again against the camera itself by the metavision backend.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rig.biasfile import SENSOR_BIAS_RANGES, BiasFileError, check_bias, load_bias_file
from rig.devices import AntiFlickerSettings, EventCameraSettings, FrameCameraSettings, TriggerSettings, Wiring

#: Keys a device section may carry besides `backend` and `settings` (passed to the backend).
DEVICE_ARGS = {
    "event_camera": ("serial",),
    "frame_camera": ("serial", "address"),
    "trigger": ("port",),
}
SETTINGS_CLASSES = {"event_camera": EventCameraSettings, "frame_camera": FrameCameraSettings,
                    "trigger": TriggerSettings}
WIRING_KEYS = ("trigger_to", "event_trigger_channel", "exposure_active_to_event")

# The EVK4's sensor, as OpenEB's IMX636 plugin describes it (OpenEB 4.6.2 and 5.1.1 sources).
EVENT_SENSOR = "IMX636"
EVENT_SENSOR_SIZE = (1280, 720)
#: Digital event mask slots: Gen41DigitalEventMask::NUM_MASK_REGISTERS_ (IMX636 devices use it).
PIXEL_MASK_SLOTS = 64
#: AntiFlickerFilter::get_min/max_supported_frequency, get_max_supported_{start,stop}_threshold.
ANTIFLICKER_BAND_HZ = (50, 520)
ANTIFLICKER_THRESHOLD_MAX = 7
ANTIFLICKER_MODES = ("band_stop", "band_pass")
#: I_ErcModule::set_cd_event_rate takes a uint32_t (events per second).
ERC_RATE_MAX_EV_S = 2**32 - 1
#: Event-camera settings rig.yaml may not give: filled in from the file a setting names.
EVENT_DERIVED = ("biases_from_file",)
#: Event-camera settings read here rather than by the generic type check.
EVENT_SPECIAL = ("biases_file", "antiflicker", "hot_pixels", "hot_pixels_file")


class RigConfigError(ValueError):
    """A rig.yaml that cannot be used; the message names the file and the key."""


@dataclass
class DeviceSection:
    """One device of the rig: backend name, constructor arguments, settings."""

    backend: str
    args: dict[str, Any] = field(default_factory=dict)
    settings: Any = None


@dataclass
class RigConfig:
    path: Path
    event_camera: DeviceSection
    frame_camera: DeviceSection
    trigger: DeviceSection
    wiring: Wiring
    # optics.reflected_arm: the camera behind the beam splitter's reflected arm, which sees a
    # mirror image ("event" as in the README's rig, "frame", or "none"); calibration detects a
    # mirrored pair itself and uses this only to say which of the two is the mirrored one
    reflected_arm: str = "event"

    @property
    def event_settings(self) -> EventCameraSettings:
        return self.event_camera.settings

    @property
    def frame_settings(self) -> FrameCameraSettings:
        return self.frame_camera.settings

    @property
    def trigger_settings(self) -> TriggerSettings:
        return self.trigger.settings

    def create_devices(self) -> tuple[Any, Any, Any]:
        """(event_camera, frame_camera, trigger), created through the backend registry, not opened."""
        from rig.registry import create_device

        devices = []
        for kind in ("event_camera", "frame_camera", "trigger"):
            section: DeviceSection = getattr(self, kind)
            args = {k: v for k, v in section.args.items() if v is not None}
            devices.append(create_device(kind, section.backend, **args))
        return devices[0], devices[1], devices[2]

    def to_dict(self) -> dict[str, Any]:
        """For the session manifest."""
        out: dict[str, Any] = {"path": str(self.path), "wiring": dataclasses.asdict(self.wiring),
                               "optics": {"reflected_arm": self.reflected_arm}}
        for kind in ("event_camera", "frame_camera", "trigger"):
            section: DeviceSection = getattr(self, kind)
            out[kind] = {"backend": section.backend, **section.args,
                         "settings": dataclasses.asdict(section.settings)}
        return out


def load_rig_config(path: str | os.PathLike[str]) -> RigConfig:
    """Read and check a rig.yaml (see `configs/rig.example.yaml`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RigConfigError(f"{path}: no such rig config (copy configs/rig.example.yaml to start)") from None
    except OSError as exc:
        raise RigConfigError(f"{path}: cannot read: {exc}") from None
    except UnicodeDecodeError:
        raise RigConfigError(f"{path}: not a rig config (binary data, not YAML text); copy "
                             "configs/rig.example.yaml to start") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RigConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_rig_config(data, path)


def parse_rig_config(data: Any, path: str | os.PathLike[str] = "<rig config>") -> RigConfig:
    path = Path(path)
    if not isinstance(data, dict):
        raise RigConfigError(f"{path}: expected a mapping with event_camera, frame_camera, trigger, wiring")
    _no_unknown(data, ("event_camera", "frame_camera", "trigger", "wiring", "optics"), path, "")
    sections = {kind: _device(data.get(kind), kind, path) for kind in SETTINGS_CLASSES}
    wiring = _wiring(data.get("wiring") or {}, path)
    config = RigConfig(path, sections["event_camera"], sections["frame_camera"], sections["trigger"],
                       wiring, _reflected_arm(data.get("optics") or {}, path))
    explicit = "trigger_in_channel" in ((data.get("event_camera") or {}).get("settings") or {})
    _check_wiring(config, explicit_event_channel=explicit)
    return config


def _no_unknown(mapping: dict[str, Any], allowed: tuple[str, ...], path: Path, where: str) -> None:
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise RigConfigError(f"{path}: unknown key {where}{unknown[0]} (allowed: {', '.join(allowed)})")


def _device(section: Any, kind: str, path: Path) -> DeviceSection:
    if section is None:
        raise RigConfigError(f"{path}: missing section {kind} (with at least `backend:`)")
    if not isinstance(section, dict):
        raise RigConfigError(f"{path}: {kind} must be a mapping")
    _no_unknown(section, ("backend", "settings", *DEVICE_ARGS[kind]), path, f"{kind}.")
    backend = section.get("backend")
    if not isinstance(backend, str) or not backend:
        example = {"event_camera": "metavision", "frame_camera": "pyspin", "trigger": "serial"}[kind]
        raise RigConfigError(f"{path}: {kind}.backend must name a backend (e.g. {example})")
    from rig.registry import backend_names

    if backend not in backend_names(kind):
        raise RigConfigError(f"{path}: {kind}.backend {backend!r} is not a known backend "
                             f"(known: {', '.join(backend_names(kind))})")
    args = {}
    for key in DEVICE_ARGS[kind]:
        value = section.get(key)
        if value is not None and not isinstance(value, str | int):
            raise RigConfigError(f"{path}: {kind}.{key} must be a string")
        args[key] = None if value is None else str(value)
    if kind == "event_camera":
        settings = _event_settings(section.get("settings") or {}, path)
    else:
        settings = _settings(SETTINGS_CLASSES[kind], section.get("settings") or {}, path, f"{kind}.settings")
    if hasattr(settings, "serial") and settings.serial is None:
        settings.serial = args.get("serial")
    return DeviceSection(backend, args, settings)


def _settings(cls: type, values: Any, path: Path, where: str) -> Any:
    if not isinstance(values, dict):
        raise RigConfigError(f"{path}: {where} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _no_unknown(values, tuple(fields), path, f"{where}.")
    defaults = cls()
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(value, getattr(defaults, name), fields[name].type, path, f"{where}.{name}")
    return cls(**kwargs)


def _event_settings(values: Any, path: Path) -> EventCameraSettings:
    """The event camera's settings: the generic keys by type, then the bias file, the anti-flicker
    filter and the hot pixels, each checked against the IMX636."""
    where = "event_camera.settings"
    if not isinstance(values, dict):
        raise RigConfigError(f"{path}: {where} must be a mapping")
    allowed = tuple(f.name for f in dataclasses.fields(EventCameraSettings) if f.name not in EVENT_DERIVED)
    _no_unknown(values, allowed, path, f"{where}.")
    generic = {k: v for k, v in values.items() if k not in EVENT_SPECIAL}
    settings: EventCameraSettings = _settings(EventCameraSettings, generic, path, where)
    ranges = SENSOR_BIAS_RANGES[EVENT_SENSOR]
    for name, value in settings.biases.items():
        try:
            check_bias(name, value, ranges, EVENT_SENSOR, f"{path}: {where}.biases.{name}")
        except BiasFileError as exc:
            raise RigConfigError(str(exc)) from None
    if values.get("biases_file") is not None:
        file = _file(values["biases_file"], path, f"{where}.biases_file")
        try:
            settings.biases_from_file = load_bias_file(file, sensor=EVENT_SENSOR).values()
        except BiasFileError as exc:
            raise RigConfigError(f"{path}: {where}.biases_file: {exc}") from None
        settings.biases_file = str(file)
    settings.antiflicker = _antiflicker(values.get("antiflicker"), path, f"{where}.antiflicker")
    if settings.erc_rate_ev_s is not None and not 0 < settings.erc_rate_ev_s <= ERC_RATE_MAX_EV_S:
        raise RigConfigError(f"{path}: {where}.erc_rate_ev_s must be above 0 and at most {ERC_RATE_MAX_EV_S} "
                             f"events/s, got {settings.erc_rate_ev_s:g}")
    pixels = _pixel_list(values.get("hot_pixels"), path, f"{where}.hot_pixels")
    if values.get("hot_pixels_file") is not None:
        file = _file(values["hot_pixels_file"], path, f"{where}.hot_pixels_file")
        try:
            from_file = load_hot_pixels(file)
        except RigConfigError as exc:
            raise RigConfigError(f"{path}: {where}.hot_pixels_file: {exc}") from None
        settings.hot_pixels_file = str(file)
        pixels += [p for p in from_file if p not in pixels]
    if len(pixels) > PIXEL_MASK_SLOTS:
        raise RigConfigError(f"{path}: {where}.hot_pixels: {len(pixels)} pixels (with hot_pixels_file) but "
                             f"the {EVENT_SENSOR}'s digital event mask has {PIXEL_MASK_SLOTS} slots")
    settings.hot_pixels = pixels
    return settings


def _file(value: Any, path: Path, where: str) -> Path:
    """A file named in rig.yaml, relative to the rig.yaml's folder."""
    if not isinstance(value, str) or not value:
        raise RigConfigError(f"{path}: {where} must be a file path")
    file = Path(value).expanduser()
    return file if file.is_absolute() else path.parent / file


def _antiflicker(value: Any, path: Path, where: str) -> AntiFlickerSettings | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RigConfigError(f"{path}: {where} must be a mapping (enabled, low_hz, high_hz, mode, ...)")
    fields = {f.name: f for f in dataclasses.fields(AntiFlickerSettings)}
    _no_unknown(value, tuple(fields), path, f"{where}.")
    defaults = AntiFlickerSettings()
    kwargs: dict[str, Any] = {}
    for name, v in value.items():
        if name == "enabled":
            if not isinstance(v, bool):
                raise RigConfigError(f"{path}: {where}.enabled must be true or false")
            kwargs[name] = v
        elif name == "mode":
            if v not in ANTIFLICKER_MODES:
                raise RigConfigError(f"{path}: {where}.mode must be one of {', '.join(ANTIFLICKER_MODES)}, "
                                     f"got {v!r}")
            kwargs[name] = v
        else:
            kwargs[name] = _coerce(v, getattr(defaults, name), fields[name].type, path, f"{where}.{name}")
    afk = AntiFlickerSettings(**kwargs)
    lo, hi = ANTIFLICKER_BAND_HZ
    if not lo <= afk.low_hz <= afk.high_hz <= hi:
        raise RigConfigError(f"{path}: {where}: the band low_hz {afk.low_hz} .. high_hz {afk.high_hz} must "
                             f"lie within the {EVENT_SENSOR}'s {lo}..{hi} Hz, low_hz <= high_hz")
    if afk.duty_cycle_percent is not None and not 0 < afk.duty_cycle_percent <= 100:
        raise RigConfigError(f"{path}: {where}.duty_cycle_percent must be above 0 and at most 100, got "
                             f"{afk.duty_cycle_percent:g}")
    for name in ("start_threshold", "stop_threshold"):
        t = getattr(afk, name)
        if t is not None and not 0 <= t <= ANTIFLICKER_THRESHOLD_MAX:
            raise RigConfigError(f"{path}: {where}.{name} must be 0..{ANTIFLICKER_THRESHOLD_MAX}, got {t}")
    return afk


def _check_pixel(x: Any, y: Any, where: str) -> tuple[int, int]:
    w, h = EVENT_SENSOR_SIZE
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y)):
        raise RigConfigError(f"{where}: a hot pixel is [x, y] (integers), got [{x!r}, {y!r}]")
    if not (0 <= x < w and 0 <= y < h):
        raise RigConfigError(f"{where}: hot pixel [{x}, {y}] outside the {EVENT_SENSOR}'s {w}x{h} pixels")
    return x, y


def _pixel_list(value: Any, path: Path, where: str) -> list[tuple[int, int]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise RigConfigError(f"{path}: {where} must list pixels as [x, y] pairs, e.g. [[12, 40], [700, 3]]")
    pixels: list[tuple[int, int]] = []
    for p in value:
        pixel = _check_pixel(p[0], p[1], f"{path}: {where}")
        if pixel not in pixels:
            pixels.append(pixel)
    return pixels


def load_hot_pixels(file: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """A hot-pixel list: one `x y` (or `x, y`) a line; `#` or `%` starts a comment."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RigConfigError(f"{file}: no such hot-pixel file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RigConfigError(f"{file}: cannot read: {exc}") from None
    pixels: list[tuple[int, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split("%", 1)[0].replace(",", " ").split()
        if not line:
            continue
        if len(line) != 2 or not all(t.isdigit() for t in line):
            raise RigConfigError(f"{file}:{number}: expected 'x y' (two non-negative integers), got "
                                 f"{raw.strip()!r}")
        pixel = _check_pixel(int(line[0]), int(line[1]), f"{file}:{number}")
        if pixel not in pixels:
            pixels.append(pixel)
    return pixels


def _coerce(value: Any, default: Any, annotation: Any, path: Path, where: str) -> Any:
    """Check a YAML value against the setting's type (from its annotation and default)."""
    text = str(annotation)
    if value is None:
        if "None" in text:
            return None
        raise RigConfigError(f"{path}: {where} may not be empty")
    if "tuple" in text:
        if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) for v in value)):
            raise RigConfigError(f"{path}: {where} must be [x, y, width, height] (integers)")
        return tuple(value)
    if "dict" in text:
        if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
            raise RigConfigError(f"{path}: {where} must map names to integers")
        return {str(k): int(v) for k, v in value.items()}
    if "float" in text:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RigConfigError(f"{path}: {where} must be a number, got {value!r}")
        return float(value)
    if "int" in text:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RigConfigError(f"{path}: {where} must be an integer, got {value!r}")
        return value
    if "str" in text:
        if not isinstance(value, str | int):
            raise RigConfigError(f"{path}: {where} must be a string, got {value!r}")
        return str(value)
    return value


def _reflected_arm(optics: Any, path: Path) -> str:
    from rig.geometry import MIRROR_CHOICES

    if not isinstance(optics, dict):
        raise RigConfigError(f"{path}: optics must be a mapping (e.g. reflected_arm: event)")
    _no_unknown(optics, ("reflected_arm",), path, "optics.")
    arm = optics.get("reflected_arm", "event")
    if arm not in MIRROR_CHOICES:
        raise RigConfigError(f"{path}: optics.reflected_arm must be one of "
                             f"{', '.join(MIRROR_CHOICES)}, got {arm!r}")
    return str(arm)


def _wiring(wiring: Any, path: Path) -> Wiring:
    if not isinstance(wiring, dict):
        raise RigConfigError(f"{path}: wiring must be a mapping")
    _no_unknown(wiring, WIRING_KEYS, path, "wiring.")
    trigger_to = wiring.get("trigger_to", ["frame:Line3", "event:TRIG_IN"])
    if not isinstance(trigger_to, list) or not all(isinstance(t, str) and ":" in t for t in trigger_to):
        raise RigConfigError(f"{path}: wiring.trigger_to must list targets like frame:Line3, event:TRIG_IN")
    channel = wiring.get("event_trigger_channel", 0)
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)):
        raise RigConfigError(f"{path}: wiring.event_trigger_channel must be an integer channel id")
    ea = wiring.get("exposure_active_to_event", False)
    if not isinstance(ea, bool):
        raise RigConfigError(f"{path}: wiring.exposure_active_to_event must be true or false")
    return Wiring(list(trigger_to), channel, ea)


def _check_wiring(config: RigConfig, *, explicit_event_channel: bool) -> None:
    """The wiring and the device settings must describe the same cables."""
    path, wiring = config.path, config.wiring
    frame, event = config.frame_settings, config.event_settings
    frame_lines = [t.split(":", 1)[1] for t in wiring.trigger_to if t.startswith("frame:")]
    event_in = any(t.startswith("event:") for t in wiring.trigger_to)
    if frame_lines:
        if frame.trigger_source is None:
            raise RigConfigError(f"{path}: wiring.trigger_to drives frame:{frame_lines[0]} but "
                                 "frame_camera.settings.trigger_source is empty (free running)")
        if frame.trigger_source not in frame_lines:
            raise RigConfigError(f"{path}: frame_camera.settings.trigger_source is {frame.trigger_source} "
                                 f"but wiring.trigger_to drives frame:{frame_lines[0]}")
    if wiring.exposure_active_to_event:
        if frame.strobe_line is None:
            raise RigConfigError(f"{path}: wiring.exposure_active_to_event is true but "
                                 "frame_camera.settings.strobe_line names no output line (e.g. Line1)")
        if event_in:
            raise RigConfigError(f"{path}: the EVK4 trigger-in has one source: drop event:TRIG_IN from "
                                 "wiring.trigger_to when ExposureActive drives it")
    needs_event_channel = event_in or wiring.exposure_active_to_event
    channel = wiring.event_trigger_channel
    if needs_event_channel:
        if channel is None:
            raise RigConfigError(f"{path}: wiring.event_trigger_channel is empty but a signal drives the "
                                 "event camera's trigger-in")
        if explicit_event_channel and event.trigger_in_channel != channel:
            raise RigConfigError(f"{path}: event_camera.settings.trigger_in_channel is "
                                 f"{event.trigger_in_channel} but wiring.event_trigger_channel is {channel}")
        event.trigger_in_channel = channel
    elif not explicit_event_channel:
        event.trigger_in_channel = None  # nothing wired: do not enable a floating input


# ---- which rig a command records on ---------------------------------------------------------
#: What `rig record` and `rig calibrate` say when they choose the simulated rig by themselves.
NO_HARDWARE_NOTE = "No hardware configured: recording on the simulated rig (--sim)."
RIG_CONFIG_FILE = "rig.yaml"


@dataclasses.dataclass(frozen=True)
class RigChoice:
    """The rig a recording command uses, and the line that tells the user why."""

    sim: bool
    rig_config: Path | None
    note: str


def choose_rig(sim: bool | None, rig_config: Path | None, *, backends_named: bool,
               workspace_root: Path) -> RigChoice:
    """`--sim/--hardware` as given, else the hardware when it is configured (a `--rig-config`,
    backends named on the command line, or a rig.yaml in the workspace root), else the simulated
    rig. The same rule for every command that records."""
    if rig_config is None and (workspace_root / RIG_CONFIG_FILE).is_file():
        rig_config = workspace_root / RIG_CONFIG_FILE
    configured = rig_config is not None or backends_named
    if sim is None:
        if not configured:
            return RigChoice(True, None, NO_HARDWARE_NOTE)
        return RigChoice(False, rig_config,
                         f"Recording on the hardware of {rig_config}." if rig_config else
                         "Recording on the backends named on the command line.")
    return RigChoice(sim, None if sim else rig_config, "")
