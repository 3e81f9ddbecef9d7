"""One rule for every `rig`, `rpea` and `cacd` command: a failure is one line, never a traceback.

    Error: <file>: <problem>; <what to do>

Usage errors (a bad option value, a missing argument) are click's own and exit 2; anything that
goes wrong while a command runs exits 1. `--debug` on the top-level command (`rig --debug record
...`) or RPEA_DEBUG=1 in the environment lets the exception through with its traceback.

`CommandGroup` is the top-level group of the three commands; it catches what a subcommand
raises. The errors the project raises on bad input (ValueError subclasses, OSError, the
readers' errors of h5py, OpenCV and safetensors) are said as they are; anything else is a bug and
says so, with the hint to rerun with --debug. (`common.atomic.removed_on_failure` takes back the
output folder of a failed command.)
"""

from __future__ import annotations

import errno
import os

import click

from common.lazycli import LazyGroup

DEBUG_ENV = "RPEA_DEBUG"
_DEBUG_KEY = "rpea.debug"
#: Packages whose exception classes are the project's own (their messages are written for users).
PROJECT_PACKAGES = ("common", "rig", "calibration", "dataset", "model")
#: Third-party errors raised on bad input files: their message is said as it is.
_READER_ERRORS = ("SafetensorError", "error", "HDF5ExtError", "YAMLError", "UnpicklingError")
_ERRNO_HINTS = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "give a folder, not a file",
    errno.ENOSPC: "free some disk space",
    errno.EEXIST: "choose another name or remove it",
}


def debug_enabled(ctx: click.Context | None = None) -> bool:
    """--debug on the command line (any enclosing context) or RPEA_DEBUG=1."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    while ctx is not None:
        if ctx.meta.get(_DEBUG_KEY):
            return True
        ctx = ctx.parent
    return False


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_DEBUG_KEY] = True


def one_line(text: str) -> str:
    """A message on one line (multi-line messages of libraries joined with spaces)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk is full: ENOSPC (or EDQUOT, a quota), also as HDF5 reports it
    (h5py's OSError carries the errno only in its text)."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return f"errno = {errno.ENOSPC}," in text or os.strerror(errno.ENOSPC) in text


def describe(exc: BaseException) -> tuple[str, bool]:
    """(the one-line message for `exc`, whether it is an expected error rather than a bug)."""
    if isinstance(exc, OSError):
        if exc.filename is not None and exc.strerror:
            hint = _ERRNO_HINTS.get(exc.errno or -1)
            return f"{exc.filename}: {exc.strerror}" + (f"; {hint}" if hint else ""), True
        message = one_line(str(exc) or type(exc).__name__)
        if is_disk_full(exc) and "free some disk space" not in message:
            message += "; free some disk space"
        return message, True
    message = one_line(str(exc))
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        message = one_line(str(exc.args[0]))
    root = type(exc).__module__.partition(".")[0]
    expected = (isinstance(exc, ValueError) or root in PROJECT_PACKAGES
                or type(exc).__name__ in _READER_ERRORS and root in ("cv2", "safetensors", "h5py",
                                                                     "yaml", "tables", "pickle"))
    if expected:
        return message or type(exc).__name__, True
    return f"unexpected {type(exc).__name__}" + (f": {message}" if message else ""), False


def error_for(exc: BaseException) -> click.ClickException:
    """The ClickException (exit 1) that says `exc` on one line."""
    message, expected = describe(exc)
    if not expected:
        message += f"; this looks like a bug: rerun with --debug (or {DEBUG_ENV}=1) for the traceback"
    return click.ClickException(message)


class CommandGroup(LazyGroup):
    """The top-level group of `rig`, `rpea` and `cacd`: lazy subcommands, a --debug flag, and
    every failure of a subcommand said in one line (see the module's docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(
            ["--debug"], is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
            help=f"Show the full traceback when a command fails (also: {DEBUG_ENV}=1)."))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as exc:
            setattr(exc, "message", one_line(exc.message))  # noqa: B010 (Final in click's stubs)
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            raise error_for(exc) from None


class Number(click.ParamType):
    """An option's number: an int or a finite float within bounds (NaN never; infinity only when
    `allow_inf`), refused with what the option expects (`unit`: how the bound is said)."""

    def __init__(self, kind: type = float, *, min: float | None = None, max: float | None = None,
                 min_open: bool = False, allow_inf: bool = False, unit: str = "") -> None:
        self.kind, self.min, self.max, self.min_open = kind, min, max, min_open
        self.allow_inf, self.unit = allow_inf, unit
        self.name = "integer" if kind is int else "float"

    def convert(self, value, param, ctx):
        import math

        what = "a whole number" if self.kind is int else "a number"
        if isinstance(value, bool):
            self.fail(f"{value!r} is not {what}", param, ctx)
        number: float
        if isinstance(value, int | float):  # a default, or a value given from Python
            if self.kind is int and not (isinstance(value, int) or float(value).is_integer()):
                self.fail(f"{value!r} is not {what}", param, ctx)
            number = self.kind(value)
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not {what}", param, ctx)
        if self.kind is float:
            if math.isnan(number):
                self.fail("NaN is not a value here", param, ctx)
            if math.isinf(number) and not self.allow_inf:
                self.fail(f"{value} is not a finite number", param, ctx)
        unit = f" {self.unit}" if self.unit else ""
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            self.fail(f"must be {'above' if self.min_open else 'at least'} {self.min:g}{unit}, "
                      f"got {value}", param, ctx)
        if self.max is not None and number > self.max:
            self.fail(f"must be at most {self.max:g}{unit}, got {value}", param, ctx)
        return number


def positive(kind: type = float, unit: str = "", **kw) -> Number:
    """A number above 0 (an int: at least 1)."""
    if kind is int:
        return Number(int, min=1, unit=unit, **kw)
    return Number(float, min=0, min_open=True, unit=unit, **kw)


def pulse_indices(ctx: click.Context, param: click.Parameter, text: str | None) -> list[int] | None:
    """Option callback: comma-separated trigger pulse indices (0, 1, ...), e.g. --drop-frames 3,7."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise click.BadParameter(f"{text!r}: expected pulse indices (whole numbers from 0), comma-"
                                 "separated, e.g. 3,7,12", ctx, param)
    return values
