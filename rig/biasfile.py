"""Metavision `.bias` files: the biases a Prophesee camera runs with, in the format Metavision writes.

Why a parser here: OpenEB's Python bindings expose no bias-file loader (`I_LL_Biases` binds only
`set`, `get`, `get_all_biases`, `get_bias_info`), and rig.yaml is checked before any camera is
opened, with errors that name the file and the line.

The format, as OpenEB reads it (`Biases::set_from_file` in 4.6, `I_LL_Biases::load_from_file` in 5.x)
and writes it (`save_to_file`: the value left-aligned in 5 columns, then `% ` and the name):

    % optional header lines, each starting with "% " (a Metavision GenericHeader)
    0    % bias_diff
    -10  % bias_diff_off
    0x14 % bias_hpf

A value is a decimal integer (an offset from the factory default on the IMX636, so it may be
negative) or hexadecimal with `0x`. OpenEB stops reading at the first empty line and would silently
drop what follows, so here that is an error. The same bias twice with different values is an error
in OpenEB too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: IMX636 (EVK4) biases and the range the HAL accepts for each (offsets from the factory default):
#: OpenEB `hal_psee_plugins/include/devices/imx636/imx636_bias_settings.h` (4.6.2 and 5.1.1),
#: the "recommended" range that `I_LL_Biases::set` enforces unless range checks are bypassed.
IMX636_BIAS_RANGES: dict[str, tuple[int, int]] = {
    "bias_diff": (-25, 23), "bias_diff_off": (-35, 190), "bias_diff_on": (-85, 140),
    "bias_fo": (-35, 55), "bias_hpf": (0, 120), "bias_refr": (-20, 235),
}
#: Sensors whose bias names and ranges are known before a camera is opened.
SENSOR_BIAS_RANGES: dict[str, dict[str, tuple[int, int]]] = {"IMX636": IMX636_BIAS_RANGES}
EXTENSION = ".bias"
_VALUE = re.compile(r"[+-]?(?:0x[0-9a-f]+|[0-9]+)\Z")


class BiasFileError(ValueError):
    """A `.bias` file that cannot be used; the message starts with `file:line`."""


@dataclass(frozen=True)
class BiasEntry:
    """One bias line of a file (1-based line number, for messages)."""

    name: str
    value: int
    line: int


@dataclass(frozen=True)
class BiasFile:
    """A parsed `.bias` file."""

    path: Path
    entries: tuple[BiasEntry, ...]

    def values(self) -> dict[str, int]:
        return {e.name: e.value for e in self.entries}

    def line_of(self, name: str) -> int | None:
        return next((e.line for e in self.entries if e.name == name), None)


def parse_bias_text(text: str, path: str | os.PathLike[str] = "<bias file>", *,
                    ranges: Mapping[str, tuple[int, int]] | None = None,
                    sensor: str = "sensor") -> BiasFile:
    """Parse `.bias` text; with `ranges`, also check each name and value against the sensor's."""
    where = Path(path)
    lines = text.splitlines()
    i = 0
    while i < len(lines) and lines[i].startswith("% "):  # GenericHeader lines
        i += 1
        if lines[i - 1][2:].split()[:1] == ["end"]:
            break
    entries: dict[str, BiasEntry] = {}
    blank_at: int | None = None
    for number, raw in enumerate(lines[i:], start=i + 1):
        line = raw.strip()
        if not line:
            blank_at = blank_at or number
            continue
        if blank_at is not None:
            raise BiasFileError(f"{where}:{number}: bias line after the empty line {blank_at}; Metavision "
                                "stops reading at an empty line, remove it")
        tokens = line.split()
        if len(tokens) != 3 or tokens[1] != "%":
            raise BiasFileError(f"{where}:{number}: expected '<value> % <bias_name>', got {raw.strip()!r}")
        value_text, name = tokens[0].lower(), tokens[2]
        if not _VALUE.match(value_text):
            raise BiasFileError(f"{where}:{number}: bias value {tokens[0]!r} is not an integer "
                                "(decimal, or hexadecimal with 0x)")
        value = int(value_text, 16 if "0x" in value_text else 10)
        if ranges is not None:
            check_bias(name, value, ranges, sensor, f"{where}:{number}")
        previous = entries.get(name)
        if previous is not None and previous.value != value:
            raise BiasFileError(f"{where}:{number}: {name} = {value} but line {previous.line} set it to "
                                f"{previous.value}")
        if previous is None:
            entries[name] = BiasEntry(name, value, number)
    return BiasFile(where, tuple(entries.values()))


def check_bias(name: str, value: int, ranges: Mapping[str, tuple[int, int]], sensor: str, where: str) -> None:
    """Raise `BiasFileError` (prefixed by `where`) unless `name` is one of the sensor's biases and
    `value` is inside its range."""
    if name not in ranges:
        raise BiasFileError(f"{where}: unknown bias {name!r} for the {sensor} (it has: "
                            f"{', '.join(sorted(ranges))})")
    lo, hi = ranges[name]
    if not lo <= value <= hi:
        raise BiasFileError(f"{where}: {name} = {value} is outside the {sensor}'s allowed range [{lo}, {hi}]")


def load_bias_file(path: str | os.PathLike[str], *, sensor: str | None = "IMX636") -> BiasFile:
    """Read and parse a `.bias` file; `sensor` (a key of SENSOR_BIAS_RANGES, or None for no check)
    selects the names and ranges the file is checked against."""
    path = Path(path)
    if path.suffix != EXTENSION:
        raise BiasFileError(f"{path}: a Metavision bias file must end in {EXTENSION} (as OpenEB requires)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BiasFileError(f"{path}: no such bias file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BiasFileError(f"{path}: cannot read: {exc}") from None
    ranges = SENSOR_BIAS_RANGES[sensor] if sensor is not None else None
    return parse_bias_text(text, path, ranges=ranges, sensor=sensor or "sensor")


def format_bias_file(values: Mapping[str, int]) -> str:
    """`.bias` text as OpenEB's `save_to_file` writes it (sorted by name, as its std::map is)."""
    return "".join(f"{value:<5}% {name}\n" for name, value in sorted(values.items()))
