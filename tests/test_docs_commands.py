"""Docs that run: every `rig` / `rpea` / `cacd` command line in README.md and docs/*.md names a
subcommand that exists and only options that subcommand has (click introspection, nothing runs).

Command lines are taken from shell code blocks (a `$ ` prompt when the block has one, backslash
continuations joined, comments and `a -> b` diagram arrows cut) and from inline code spans (a span
may wrap across lines, as Markdown allows). `python -m rig.cli ...` and `torchrun ... -m model.cli`
count as the command they start. Placeholders (`DIR`, `<...>`, `...`, `[--optional X]`) are
arguments; `a|b` and `a/b` in a subcommand's place, and `--a/--b` in an option's, name each
alternative. The entry points come from pyproject.toml's [project.scripts].
"""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: Code block languages whose lines are shell commands (a python block's `rig = SimRig()` is not).
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "shell-session", "sh-session", "zsh", "text"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
ENV_PREFIX = r"(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*"
PLACEHOLDER = re.compile(r"<.*>|\.\.\.|…|\{.*\}|[A-Z][A-Z0-9_]*(?:[=:].*)?")
SUBCOMMAND_ALTERNATIVES = re.compile(r"[a-z][a-z0-9-]*(?:[|/][a-z][a-z0-9-]*)+")


def entry_points() -> dict[str, str]:
    """Command name -> "module:attribute" ([project.scripts])."""
    with open(REPO / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["project"]["scripts"])


def load_command(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class DocCommand:
    file: str
    line: int
    text: str  # starts with the program's name (`python -m x.cli` already replaced by it)
    partial: bool = False  # one option of a table, not a whole command line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: `{self.text}`"


def _command_start(programs: dict[str, str]) -> re.Pattern[str]:
    names = "|".join(re.escape(p) for p in programs)
    modules = "|".join(re.escape(t.partition(":")[0]) for t in programs.values())
    return re.compile(rf"^{ENV_PREFIX}(?:(?P<prog>{names})|(?:python3?|torchrun)\b[^#]*?\s-m\s+"
                      rf"(?P<module>{modules}))(?=\s|$)")


def _commands_in(text: str, file: str, line: int, programs: dict[str, str]) -> list[DocCommand]:
    """The command lines in one logical line of shell (or one inline code span)."""
    start = _command_start(programs)
    module_prog = {t.partition(":")[0]: p for p, t in programs.items()}
    text = re.sub(r"(^|\s)#.*$", "", text.replace("\\|", "|"))  # a comment; a table's escaped pipe
    found = []
    for part in re.split(r"&&|\|\||;|\s\|\s", text):
        part = part.strip()
        if part.startswith("$ "):
            part = part[2:].strip()
        m = start.match(part)
        if m:
            prog = m.group("prog") or module_prog[m.group("module")]
            found.append(DocCommand(file, line, f"{prog}{part[m.end():]}".strip()))
    return found


def _logical_lines(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Backslash continuations joined; (number of the first line, text)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in block:
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending = (number, stripped[:-1].rstrip())
            continue
        pending = None
        out.append((number, line.strip()))
    if pending is not None:
        out.append(pending)
    return out


def extract_commands(path: Path, programs: dict[str, str] | None = None,
                     name: str | None = None) -> list[DocCommand]:
    """Every command line of `programs` (default: the entry points) in the Markdown file."""
    programs = programs or entry_points()
    name = name or str(path.relative_to(REPO))
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[DocCommand] = []
    prose: list[str] = []  # code block lines blanked, so inline spans keep their line numbers
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        block = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            block.append((j + 1, lines[j]))
            j += 1
        prose.extend([""] * (j + 1 - i))
        i = j + 1
        if lang not in SHELL_LANGS:
            continue
        logical = _logical_lines(block)
        if any(text.startswith("$ ") for _, text in logical):  # prompts: the rest is output
            logical = [(n, text) for n, text in logical if text.startswith("$ ")]
        for number, text in logical:
            found += _commands_in(text, name, number, programs)
    text = "\n".join(prose)
    for m in INLINE.finditer(text):
        span = re.sub(r"\s*\n\s*", " ", m.group(2)).strip()
        found += _commands_in(span, name, text.count("\n", 0, m.start()) + 1, programs)
    found += _table_options(prose, name, programs)
    return sorted(found, key=lambda c: c.line)


def _table_options(prose: list[str], name: str, programs: dict[str, str]) -> list[DocCommand]:
    """Options in tables, as the command they belong to: in a row whose first cell names a
    command (README's "| `rig record --duration 60` | ...; `--out DIR`, `--rate HZ` |"), every
    option span of the row; under a heading that names one ("## Options of `rpea build`"), the
    option spans of a row's first cell ("| `--labels DIR`, `--label-ids label\\|train` | ... |")."""
    found = []
    heading: str | None = None
    for number, line in enumerate(prose, 1):
        if line.startswith("#"):
            named = [c for m in INLINE.finditer(line)
                     for c in _commands_in(m.group(2), name, number, programs)]
            heading = named[0].text if named else None
            continue
        if not line.lstrip().startswith("|"):
            continue
        pipes = [m.start() for m in re.finditer(r"(?<!\\)\|", line)]
        first_cell_end = pipes[1] if len(pipes) > 1 else len(line)
        spans = [(m.start(), m.group(2).replace("\\|", "|").strip()) for m in INLINE.finditer(line)]
        own = [c for start, span in spans if start < first_cell_end
               for c in _commands_in(span, name, number, programs)]
        context = own[0].text if own else heading
        if context is None:
            continue
        for start, span in spans:
            if _is_option(span) and (own or start < first_cell_end):
                found.append(DocCommand(name, number, f"{context} {span}", partial=True))
    return found


def table_pipe_problems(path: Path, programs: dict[str, str] | None = None,
                        name: str | None = None) -> list[str]:
    """Command or option spans in a table row with a bare `|` (`rig trigger status|ping`): GitHub
    splits the row's cells at it before it reads code spans, so the row renders broken; inside a
    table the alternatives are written `\\|`."""
    programs = programs or entry_points()
    name = name or str(path.relative_to(REPO))
    problems = []
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
        if in_code or not line.lstrip().startswith("|"):
            continue
        for m in INLINE.finditer(line):
            span = m.group(2)
            if re.search(r"(?<!\\)\|", span) and (_is_option(span.strip())
                                                  or _commands_in(span, name, number, programs)):
                problems.append(f"{name}:{number}: `{span}`: a bare | in a table row ends the cell "
                                "(write \\| inside the code span)")
    return problems


# -- checking one command line against the click commands -----------------------------------------


def _tokens(text: str) -> list[str]:
    text = re.split(r"\s(?:->|→|=>)\s", text)[0]  # `rig record -> session folder` (a diagram)
    try:
        tokens = shlex.split(text)
    except ValueError:  # an unbalanced quote: words are still words
        tokens = text.split()
    return [t.strip("[]") for t in tokens if t.strip("[]")]


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not re.match(r"-[\d.]", token)


def _takes_value(param: click.Parameter) -> bool:
    return not (isinstance(param, click.Option) and (param.is_flag or param.count))


def _unavailable(command: click.Command) -> str | None:
    """Why `common.lazycli` stood in a placeholder for the command (None: the real one)."""
    m = re.match(r"\(unavailable: (.*)\)", command.help or "")
    return m.group(1) if m else None


def _choice_problems(path: str, option: str, param: click.Parameter, value: str | None) -> list[str]:
    """`--window exposure`, `--split train|val`: each value one of the option's choices."""
    if not isinstance(param.type, click.Choice) or value is None or PLACEHOLDER.fullmatch(value):
        return []
    fold = (lambda v: v) if param.type.case_sensitive else str.lower
    choices = {fold(str(c)) for c in param.type.choices}
    return [f"`{path} {option}` has no choice {v!r} (it has: {', '.join(map(str, param.type.choices))})"
            for v in value.split("|") if v and fold(v) not in choices]


#: An option's help that opens with "(--hardware)" or "(--sim/--hardware)" says the option only
#: means something beside one of those (`rig calibrate --rig-config` without --hardware does not
#: record on the rig it configures).
NEEDS = re.compile(r"\((--[\w-]+(?:/--[\w-]+)*)\)")


def _requirement_problems(path: str, used: dict[str, click.Option], given: set[str]) -> list[str]:
    if given & {"--help", "-h"}:
        return []
    problems = []
    for typed, param in used.items():
        m = NEEDS.match(param.help or "")
        needs = m.group(1).split("/") if m else []
        if needs and not given & set(needs):
            problems.append(f"`{path} {typed}` needs {' or '.join(needs)} beside it "
                            f"(its help: {param.help!r})")
    return problems


def check_tokens(command: click.Command, path: str, tokens: list[str],
                 parent: click.Context | None = None, *, requirements: bool = True) -> list[str]:
    """Problems of `tokens` (what follows `path`, e.g. "rig trigger") against `command`:
    unknown subcommands, options and choices, and (with `requirements`) options whose help says
    they need another one that the line lacks."""
    why = _unavailable(command)
    if why is not None:  # a missing optional dependency is not the docs' fault; a missing module is
        return [f"{path}: {why}"] if why.startswith("not implemented") else []
    ctx = click.Context(command, info_name=path.split()[-1], parent=parent,
                        **command.context_settings)
    options = {opt: p for p in command.get_params(ctx) if isinstance(p, click.Option)
               for opt in (*p.opts, *p.secondary_opts)}
    problems: list[str] = []
    used: dict[str, click.Option] = {}  # typed option -> its parameter (at this level)
    given: set[str] = set()

    def finish() -> list[str]:
        return problems + (_requirement_problems(path, used, given) if requirements else [])

    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            break
        if _is_option(token):
            name, eq, _ = token.partition("=")
            alternatives = re.split(r"[|/](?=-)", name)  # `--sessions/--calib/--out`
            for alt in alternatives:
                if alt not in options:
                    problems.append(f"`{path}` has no option {alt} (it has: "
                                    f"{', '.join(sorted(o for o in options if o.startswith('--')))})")
                else:
                    used[alt] = options[alt]
                    given.add(alt)
            param = options.get(alternatives[0])
            if param is None or not _takes_value(param):
                continue
            value = token.partition("=")[2] if eq else (tokens[i] if i < len(tokens) else None)
            if not eq:
                i += param.nargs if param.nargs > 0 else 1
            problems += _choice_problems(path, alternatives[0], param, value)
            continue
        if not isinstance(command, click.Group):
            continue  # an argument (or a placeholder for one); options may still follow
        if PLACEHOLDER.fullmatch(token):
            return finish()  # `rig COMMAND --help`: which subcommand is not said
        names = re.split(r"[|/]", token) if SUBCOMMAND_ALTERNATIVES.fullmatch(token) else [token]
        for name in names:
            sub = command.get_command(ctx, name)
            if sub is None:
                problems.append(f"`{path}` has no subcommand {name!r} (it has: "
                                f"{', '.join(command.list_commands(ctx))})")
            else:
                problems += check_tokens(sub, f"{path} {name}", tokens[i:], ctx,
                                         requirements=requirements)
        return finish()
    return finish()


def check_command(doc: DocCommand, roots: dict[str, click.Command]) -> list[str]:
    tokens = _tokens(doc.text)
    return [f"{doc}: {p}" for p in check_tokens(roots[tokens[0]], tokens[0], tokens[1:],
                                                   requirements=not doc.partial)]


@pytest.fixture(scope="module")
def roots() -> dict[str, click.Command]:
    return {name: load_command(target) for name, target in entry_points().items()}


# -- the tests --------------------------------------------------------------------------------------


def test_every_documented_command_line_exists(roots) -> None:
    commands = [c for path in DOC_FILES for c in extract_commands(path)]
    assert len(commands) > 60, f"the extraction found only {len(commands)} command lines"
    assert {c.text.split()[0] for c in commands} == set(roots)
    problems = [p for c in commands for p in check_command(c, roots)]
    problems += [p for path in DOC_FILES for p in table_pipe_problems(path)]
    assert not problems, (f"{len(problems)} problem(s) with the documented command lines "
                          "(fix the doc, or the CLI where the doc is right):\n" + "\n".join(problems))


def _walk(command: click.Command, path: str, parent: click.Context | None = None):
    """(path, command) of `command` and every subcommand under it."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path.split()[-1], parent=parent)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from _walk(sub, f"{path} {name}", ctx)


def test_every_example_in_the_help_exists(roots) -> None:
    """The examples in each command's --help are docs too."""
    problems, seen = [], 0
    for prog, root in roots.items():
        for path, command in _walk(root, prog):
            block = list(enumerate((command.help or "").splitlines(), 1))
            for number, text in _logical_lines(block):
                for doc in _commands_in(text, f"`{path} --help`", number, entry_points()):
                    seen += 1
                    problems += check_command(doc, roots)
    assert seen > 30, f"only {seen} examples found in the help texts"
    assert not problems, f"{len(problems)} example(s) in --help do not match the CLI:\n" + \
        "\n".join(problems)


def test_entry_points_are_click_commands(roots) -> None:
    assert set(roots) == {"rig", "rpea", "cacd"}
    for name, command in roots.items():
        assert isinstance(command, click.Group), name
        assert command.list_commands(click.Context(command)), name


def test_extraction_forms(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Intro with `rig record --duration 60` and a wrapped `rig trigger test --rate 20\n"
        "   --width-us 1000` span; `rig.yaml` and `rig/` are not commands.\n"
        "\n"
        "```bash\n"
        "rig calibrate --checkerboard --frame-images 'a/*.png' \\\n"
        "              --event-images 'b/*.png'   # a comment -> with an arrow\n"
        "RPEA_X=1 rpea check data/ && cacd eval --data data/\n"
        "python -m rig.cli record --sim\n"
        "torchrun --nproc_per_node 2 -m model.cli train --out runs/ddp\n"
        "```\n"
        "```python\n"
        "rig = SimRig(SimConfig())\n"
        "```\n"
        "```console\n"
        "$ rpea stats data/\n"
        "rig trigger: this is output, not a command\n"
        "```\n"
        "| `rig trigger status\\|ping` | a table cell |\n")
    found = [(c.line, c.text) for c in extract_commands(doc, name="doc.md")]
    assert found == [
        (1, "rig record --duration 60"),
        (1, "rig trigger test --rate 20 --width-us 1000"),
        (5, "rig calibrate --checkerboard --frame-images 'a/*.png' --event-images 'b/*.png'"),
        (7, "rpea check data/"), (7, "cacd eval --data data/"),
        (8, "rig record --sim"), (9, "cacd train --out runs/ddp"),
        (15, "rpea stats data/"),
        (18, "rig trigger status|ping"),
    ]


@pytest.mark.parametrize(("line", "expected"), [
    ("rig trigger start --rate 20", ["no subcommand 'start'"]),
    ("rig record --no-such-flag --duration 5", ["`rig record` has no option --no-such-flag"]),
    ("rpea build --split train --sessions/--calibration/--out", ["no option --calibration"]),
    ("cacd eval/predict --checkpoint RUN --bogus", ["`cacd eval` has no option --bogus",
                                                   "`cacd predict` has no option --bogus"]),
    ("rig trigger status|ping|test --port /dev/ttyACM0", []),
    ("rig calibrate --checkerboard --hardware --rig-config rig.yaml --out calib/", []),
    ("rig calibrate --checkerboard --rig-config rig.yaml", ["`rig calibrate --rig-config` needs "
                                                            "--hardware beside it"]),
    ("rig calibrate --checkerboard --sim --views 20 --rate 10", []),
    ("rig calibrate --checkerboard --views 20 --rate 10", ["`rig calibrate --views` needs --sim",
                                                           "needs --sim or --hardware"]),
    ("rpea export --format cityscapes -o cityscapes/", []),
    ("cacd train [--data DIR] [--set key=value ...] [--resume]", []),
    ("rig COMMAND --help", []),
    ("rpea build --split train|val|everything --window=exposure", ["no choice 'everything'"]),
    ("rig record --sim --scenario night --mirror event|frame|none --out S", []),
    ("rig calibrate export --format kalibr calib_lr/ -o kalibr/camchain.yaml", []),
    ("rig --version", []),
    ("rig record -> session folder (--not-an-option)", []),
])
def test_checker(roots, line: str, expected: list[str]) -> None:
    problems = check_command(DocCommand("doc.md", 1, line), roots)
    assert len(problems) == len(expected), problems
    for problem, want in zip(problems, expected, strict=True):
        assert want in problem and problem.startswith("doc.md:1: "), problem


# -- a documented fact a user caught drifting -------------------------------------------------------

BLOSC_COMPRESSORS = {0: "BloscLZ", 1: "LZ4", 2: "LZ4HC", 3: "Snappy", 4: "Zlib", 5: "Zstd"}


def test_session_format_names_the_frames_compression(tmp_path: Path) -> None:
    """docs/session-format.md's `frames` row names the Blosc compressor FramesWriter uses."""
    import h5py

    from rig.session import FramesWriter

    FramesWriter(tmp_path / "frames.h5", 8, 6, "BayerRG8").close()
    with h5py.File(tmp_path / "frames.h5", "r") as f:
        filter_id, _, values, _ = f["frames"].id.get_create_plist().get_filter(0)
    assert filter_id == 32001  # Blosc
    used = BLOSC_COMPRESSORS[values[6]]
    doc = REPO / "docs" / "session-format.md"
    row = next(line for line in doc.read_text().splitlines() if line.startswith("| `frames` |"))
    named = re.findall(r"Blosc-(\w+)", row)
    assert [n.lower() for n in named] == [used.lower()], f"{doc.name}: {row}\n(code: Blosc-{used})"
