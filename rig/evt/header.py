"""The Prophesee RAW text header: `% key value` lines in front of the binary event words.

Why a module of its own: both EVT3 and EVT2 files carry it, the writer must produce one that
Metavision/OpenEB tools accept, and the reader must survive files whose "header" is garbage.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

#: A header larger than this is not a header (protects against garbage files that start with "% ").
MAX_HEADER_BYTES = 1 << 20
#: One header line longer than this ends the header (a real line is well under 200 bytes).
MAX_LINE_BYTES = 4096

# Sensor size by plugin name for old files without `format`/`geometry` keys (facts from OpenEB's
# plugin names: Gen3 VGA, Gen3.1 VGA, Gen4.1 and IMX636 HD, GenX320 320x320).
_PLUGIN_GEOMETRY = (
    ("imx636", (1280, 720)),
    ("evk4", (1280, 720)),
    ("gen41", (1280, 720)),
    ("gen4", (1280, 720)),
    ("imx8", (320, 320)),
    ("genx320", (320, 320)),
    ("gen31", (640, 480)),
    ("gen3", (640, 480)),
)


@dataclass
class RawHeader:
    """A parsed RAW header: its keys (in file order), its size in bytes, and derived facts."""

    fields: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    has_end: bool = False

    @property
    def evt_format(self) -> str | None:
        """'EVT3', 'EVT2', 'EVT21' or None when the header does not say."""
        fmt = self.fields.get("format", "")
        if fmt:
            name = fmt.split(";", 1)[0].strip().upper().replace(".", "").replace(" ", "")
            if name in ("EVT3", "EVT30"):
                return "EVT3"
            if name in ("EVT2", "EVT20"):
                return "EVT2"
            if name in ("EVT21",):
                return "EVT21"
        evt = self.fields.get("evt", "").strip()
        return {"3.0": "EVT3", "3": "EVT3", "2.0": "EVT2", "2": "EVT2", "2.1": "EVT21"}.get(evt)

    @property
    def geometry(self) -> tuple[int, int] | None:
        """(width, height) from `format` (width=/height=) or `geometry` (WxH), else None."""
        fmt = self.fields.get("format", "")
        opts: dict[str, str] = {}
        for part in fmt.split(";")[1:]:
            if "=" in part:
                k, v = part.split("=", 1)
                opts[k.strip().lower()] = v.strip()
        try:
            if "width" in opts and "height" in opts:
                w, h = int(opts["width"]), int(opts["height"])
                if w > 0 and h > 0:
                    return w, h
        except ValueError:
            pass
        geo = self.fields.get("geometry", "").lower().replace(" ", "")
        if "x" in geo:
            try:
                w, h = (int(v) for v in geo.split("x", 1))
                if w > 0 and h > 0:
                    return w, h
            except ValueError:
                pass
        return None

    @property
    def plugin_geometry(self) -> tuple[int, int] | None:
        """Sensor size guessed from `plugin_name` (old files that state no geometry)."""
        plugin = self.fields.get("plugin_name", "").lower()
        for key, size in _PLUGIN_GEOMETRY:
            if key in plugin:
                return size
        return None


def parse_header(data: bytes) -> RawHeader:
    """Parse the `% ` lines at the start of `data` (never raises).

    The header runs up to the first line that does not start with `% ` (or `%\\n`), or through
    `% end`. A line without a newline, an over-long line or a header over MAX_HEADER_BYTES ends
    the header before that line, so garbage never swallows the data.
    """
    fields: dict[str, str] = {}
    pos = 0
    has_end = False
    limit = min(len(data), MAX_HEADER_BYTES)
    while pos < limit and data[pos : pos + 1] == b"%":
        nl = data.find(b"\n", pos, min(limit, pos + MAX_LINE_BYTES))
        if nl < 0:
            break
        line = data[pos + 1 : nl].rstrip(b"\r")
        if line and not line.startswith(b" "):
            break  # "%x..." is not a header line
        pos = nl + 1
        text = line.decode("utf-8", errors="replace").strip()
        if text == "end":
            has_end = True
            break
        if not text:
            continue
        key, _, value = text.partition(" ")
        fields[key] = value.strip()
    return RawHeader(fields=fields, size_bytes=pos, has_end=has_end)


#: First read of `read_header`: far more than a real header, far less than MAX_HEADER_BYTES.
_FIRST_READ_BYTES = 1 << 14


def read_header(path) -> RawHeader:
    """Parse the header of the file at `path` (reads at most MAX_HEADER_BYTES).

    Reads 64 KiB first and the full MAX_HEADER_BYTES only when the header may go on past that,
    so the result is the same as parsing the first MAX_HEADER_BYTES, without reading them.
    """
    with open(path, "rb") as f:
        head = f.read(_FIRST_READ_BYTES)
        hdr = parse_header(head)
        if len(head) == _FIRST_READ_BYTES and not hdr.has_end and hdr.size_bytes + MAX_LINE_BYTES > len(head):
            head += f.read(MAX_HEADER_BYTES - len(head))
            hdr = parse_header(head)
    return hdr


def default_fields(width: int, height: int, evt: str = "3.0") -> dict[str, str]:
    """Keys a Metavision EVK4 recording carries, with this toolkit's plausible values."""
    fmt = {"3": "EVT3", "2.1": "EVT21"}.get(evt.removesuffix(".0"), "EVT2")
    return {
        "camera_integrator_name": "Prophesee",
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "evt": evt,
        "format": f"{fmt};height={height};width={width}",
        "generation": "4.2",
        "geometry": f"{width}x{height}",
        "integrator_name": "Prophesee",
        "plugin_integrator_name": "Prophesee",
        "plugin_name": "hal_plugin_imx636_evk4",
        "sensor_generation": "4.2",
        "serial_number": "00000000",
        "system_ID": "49",
    }


def format_header(fields: dict[str, str]) -> bytes:
    """`% key value` lines in key order, ending with `% end` (what Metavision writes)."""
    lines = []
    for key in sorted(fields):
        value = str(fields[key])
        if not key or any(c in key for c in " \r\n%") or any(c in value for c in "\r\n"):
            raise ValueError(f"bad RAW header entry {key!r}: {value!r} (no spaces in keys, no newlines)")
        lines.append(f"% {key} {value}\n")
    lines.append("% end\n")
    return "".join(lines).encode("utf-8")
