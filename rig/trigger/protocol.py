"""The trigger MCU's line protocol as data: one table that the firmware, the simulated MCU and the
host client all follow (see `firmware/PROTOCOL.md`).

The C firmware does not import Python, so its copy of the table, `firmware/src/proto_spec.h`, is
generated from this module (`python -m rig.trigger.protocol > firmware/src/proto_spec.h`) and a
test fails when the two differ. The timer arithmetic (rate/width -> Timer1 prescaler and compare
values) is written here and in `firmware/src/timing.c` with the same integer steps; both are
checked against `firmware/tests/timing_vectors.txt`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

PROTOCOL_NAME = "rpea-trigger"
PROTOCOL_VERSION = "1.0"  # major.minor: a client accepts any minor of its major
FIRMWARE_VERSION = "1.0.0"
F_CPU_HZ = 16_000_000
CYCLES_PER_US = F_CPU_HZ // 1_000_000
BAUD = 115200

MAX_LINE = 96  # request bytes per line, CR and LF not counted
MAX_ECHO = 16  # characters of an offending key echoed in an ERR message
UINT32_MAX = 0xFFFF_FFFF

# Timer1 clock-select prescalers of the ATmega328P, tried smallest first (finest resolution).
PRESCALERS = (1, 8, 64, 256, 1024)
TIMER_MAX_TICKS = 65536  # a 16-bit counter in CTC mode: TOP = ticks - 1 <= 0xFFFF

# Inclusive limits of the numeric CONFIG fields.
LIMITS: dict[str, tuple[int, int]] = {
    "rate_mhz": (250, 10_000_000),  # 0.25 Hz (Timer1 at /1024 reaches 4.19 s) .. 10 kHz
    "width_us": (20, 4_000_000),  # 20 us keeps the two edge interrupts apart
    "count": (0, UINT32_MAX),  # 0 = run until STOP
    "report": (0, 1),  # 1 = send asynchronous PULSE lines
}
MIN_LOW_US = 20  # the output stays idle at least this long between two pulses
POLARITIES = ("high", "low")

DEFAULTS: dict[str, int | str] = {
    "rate_mhz": 20_000,
    "width_us": 1000,
    "count": 0,
    "polarity": "high",
    "report": 0,
}
CONFIG_KEYS = ("rate_mhz", "width_us", "count", "polarity", "report")

COMMANDS = ("PING", "VERSION", "CONFIG", "START", "STOP", "STATUS", "CLEAR")

# Error codes: `ERR <code> <message>`; messages marked ": <key>" name the offending key.
ERR_UNKNOWN_COMMAND = 1
ERR_BAD_ARGUMENT = 2
ERR_LINE_TOO_LONG = 3
ERR_BAD_CHARACTER = 4
ERR_UNKNOWN_KEY = 5
ERR_BAD_VALUE = 6
ERR_OUT_OF_RANGE = 7
ERR_WIDTH_TOO_LONG = 8
ERR_BUSY = 9
ERR_DUPLICATE_KEY = 10

ERRORS: dict[int, str] = {
    ERR_UNKNOWN_COMMAND: "unknown command",
    ERR_BAD_ARGUMENT: "bad argument",
    ERR_LINE_TOO_LONG: "line too long",
    ERR_BAD_CHARACTER: "bad character",
    ERR_UNKNOWN_KEY: "unknown key",
    ERR_BAD_VALUE: "bad value",
    ERR_OUT_OF_RANGE: "out of range",
    ERR_WIDTH_TOO_LONG: "width too long for rate",
    ERR_BUSY: "busy",
    ERR_DUPLICATE_KEY: "duplicate key",
}

# Sticky error flags in STATUS (`err=0x..`), cleared by CLEAR and by START.
FLAG_RX_OVERFLOW = 0x01  # the receive ring was full, request bytes were lost
FLAG_REPORT_OVERFLOW = 0x02  # PULSE reports were dropped (serial link too slow for the rate)
FLAG_UART_ERROR = 0x04  # framing error or hardware overrun on the UART
FLAGS: dict[int, str] = {
    FLAG_RX_OVERFLOW: "rx_overflow",
    FLAG_REPORT_OVERFLOW: "report_overflow",
    FLAG_UART_ERROR: "uart_error",
}

STATES = ("idle", "running", "done")


def err_line(code: int, key: str | None = None) -> str:
    """The exact `ERR` line both implementations send."""
    text = ERRORS[code]
    if key is not None:
        text = f"{text}: {key[:MAX_ECHO]}"
    return f"ERR {code} {text}"


def banner(name: str = PROTOCOL_NAME) -> str:
    return f"READY {name} {PROTOCOL_VERSION}"


@dataclass(frozen=True)
class TimerPlan:
    """Timer1 settings for one pulse train, and what they achieve at F_CPU exactly.

    Timer1 runs in CTC mode with TOP = OCR1A; COMPA (counter reaches TOP) raises the pulse and
    COMPB (counter reaches OCR1B after the wrap) ends it, so a pulse lasts OCR1B + 1 ticks.
    """

    prescaler: int
    top: int  # OCR1A
    ocrb: int  # OCR1B
    period_cyc: int  # CPU cycles per period: the achieved rate is F_CPU_HZ / period_cyc exactly
    width_cyc: int

    @property
    def achieved_rate_mhz(self) -> int:
        """Rounded to the nearest mHz (the exact rate is F_CPU_HZ / period_cyc)."""
        return (F_CPU_HZ * 1000 + self.period_cyc // 2) // self.period_cyc

    @property
    def achieved_width_us(self) -> int:
        return (self.width_cyc + CYCLES_PER_US // 2) // CYCLES_PER_US

    @property
    def period_us(self) -> float:
        return self.period_cyc / CYCLES_PER_US


def plan_timer(rate_mhz: int, width_us: int) -> TimerPlan | int:
    """Prescaler and compare values for a rate and width, or an ERR code (C twin: timing.c).

    Both inputs must already lie in LIMITS. Period and width are each rounded to the nearest tick
    of the smallest prescaler whose period fits the 16-bit counter.
    """
    num = F_CPU_HZ * 1000
    for prescaler in PRESCALERS:
        den = rate_mhz * prescaler
        ticks = (num + den // 2) // den
        if ticks <= TIMER_MAX_TICKS:
            break
    else:
        return ERR_OUT_OF_RANGE
    width_ticks = (width_us * CYCLES_PER_US + prescaler // 2) // prescaler
    width_ticks = max(width_ticks, 1)
    period_cyc = ticks * prescaler
    width_cyc = width_ticks * prescaler
    if width_cyc + MIN_LOW_US * CYCLES_PER_US > period_cyc:
        return ERR_WIDTH_TOO_LONG
    return TimerPlan(prescaler, ticks - 1, width_ticks - 1, period_cyc, width_cyc)


def parse_kv(words: list[str]) -> dict[str, str]:
    """`key=value` words of a reply line as a dict (words without '=' are skipped)."""
    return dict(w.split("=", 1) for w in words if "=" in w)


@dataclass(frozen=True)
class VectorBlock:
    """One request of `firmware/tests/vectors.txt` and the reply lines it must produce."""

    lineno: int
    source: str
    request: bytes
    replies: tuple[str, ...]


def load_vectors(path: str | os.PathLike[str]) -> list[VectorBlock]:
    """Parse a conformance vector file (format in its header comment)."""
    blocks: list[VectorBlock] = []
    current: tuple[int, str, bytes] | None = None
    replies: list[str] = []
    with open(path, encoding="ascii") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n")
            if line.startswith("<"):
                if current is None:
                    raise ValueError(f"{path}:{lineno}: a reply before any request")
                replies.append(line[2:])
                continue
            if not line.startswith(">"):
                continue
            if current is not None:
                blocks.append(VectorBlock(*current, tuple(replies)))
            replies = []
            if line.startswith(">hex "):
                try:
                    data = bytes.fromhex(line[5:])
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: bad hex bytes") from None
            else:
                data = (line[2:] if line.startswith("> ") else line[1:]).encode("ascii") + b"\n"
            current = (lineno, line, data)
    if current is not None:
        blocks.append(VectorBlock(*current, tuple(replies)))
    return blocks


def reply_matches(expected: str, actual: str) -> bool:
    """Token-wise equality where an expected `*` or `key=*` matches any value."""
    exp, act = expected.split(), actual.split()
    if len(exp) != len(act):
        return False
    for e, a in zip(exp, act, strict=True):
        if e == "*":
            continue
        if e.endswith("=*"):
            if not a.startswith(e[:-1]):
                return False
        elif e != a:
            return False
    return True


def emit_c_header() -> str:
    """The C copy of this table (`firmware/src/proto_spec.h`)."""
    out = [
        "/* GENERATED by `python -m rig.trigger.protocol` from rig/trigger/protocol.py.",
        " * Do not edit: change the Python table and regenerate (a test checks they agree). */",
        "#ifndef PROTO_SPEC_H",
        "#define PROTO_SPEC_H",
        "",
        f'#define PROTO_NAME "{PROTOCOL_NAME}"',
        f'#define PROTO_VERSION "{PROTOCOL_VERSION}"',
        f'#define PROTO_FIRMWARE_VERSION "{FIRMWARE_VERSION}"',
        f"#define PROTO_F_CPU_HZ {F_CPU_HZ}UL",
        f"#define PROTO_CYCLES_PER_US {CYCLES_PER_US}U",
        f"#define PROTO_BAUD {BAUD}UL",
        f"#define PROTO_MAX_LINE {MAX_LINE}U",
        f"#define PROTO_MAX_ECHO {MAX_ECHO}U",
        f"#define PROTO_TIMER_MAX_TICKS {TIMER_MAX_TICKS}UL",
        f"#define PROTO_N_PRESCALERS {len(PRESCALERS)}U",
        "#define PROTO_PRESCALERS {" + ", ".join(f"{p}U" for p in PRESCALERS) + "}",
        f"#define PROTO_MIN_LOW_US {MIN_LOW_US}UL",
    ]
    for key, (lo, hi) in LIMITS.items():
        out.append(f"#define PROTO_{key.upper()}_MIN {lo}UL")
        out.append(f"#define PROTO_{key.upper()}_MAX {hi}UL")
    for key, value in DEFAULTS.items():
        if isinstance(value, int):
            out.append(f"#define PROTO_DEFAULT_{key.upper()} {value}UL")
    out.append(f"#define PROTO_DEFAULT_POLARITY_HIGH {int(DEFAULTS['polarity'] == 'high')}")
    out.append("")
    for code, text in ERRORS.items():
        name = text.upper().replace(" ", "_")
        out.append(f"#define PROTO_ERR_{name} {code}")
    out.append("#define PROTO_ERR_MESSAGES { \\")
    out.append('    "", \\')
    for code in range(1, max(ERRORS) + 1):
        out.append(f'    "{ERRORS[code]}", \\')
    out.append("}")
    out.append("")
    for bit, name in FLAGS.items():
        out.append(f"#define PROTO_FLAG_{name.upper()} 0x{bit:02X}U")
    out += ["", "#endif /* PROTO_SPEC_H */", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(emit_c_header())
