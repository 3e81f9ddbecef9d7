"""Progress bars (issue 17, item 4): shown on a terminal, silent off one (logs, pipes, CI), and a
multi-stage job's bar follows its stages."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from common.progress import StageBar, progress_bar

REPO = Path(__file__).resolve().parents[1]


def test_bar_is_silent_off_a_terminal() -> None:
    err = io.StringIO()  # not a tty
    with progress_bar(range(5), desc="work", file=err) as bar:
        for _ in bar:
            pass
    assert err.getvalue() == ""


def test_bar_shows_on_a_terminal_and_quiet_hides_it() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, quiet = Tty(), Tty()
    for _ in progress_bar(range(5), desc="work", file=shown):
        pass
    for _ in progress_bar(range(5), desc="work", file=quiet, enabled=False):
        pass
    assert "work" in shown.getvalue() and "5/5" in shown.getvalue()
    assert quiet.getvalue() == ""


def test_stage_bar_restarts_per_stage(monkeypatch) -> None:
    made: list[dict] = []

    class FakeBar:
        def __init__(self, **kw) -> None:
            self.kw, self.n, self.closed = kw, 0, False
            made.append({"kw": kw, "bar": self})

        def update(self, k: int) -> None:
            self.n += k

        def close(self) -> None:
            self.closed = True

    import common.progress as cp

    monkeypatch.setattr(cp, "progress_bar", lambda **kw: FakeBar(**kw))
    stages = StageBar("drive01")
    stages("events", 100, 1000)
    stages("events", 1000, 1000)
    stages("pairs", 3, 20)
    stages.close()
    assert [m["kw"]["desc"] for m in made] == ["drive01: events", "drive01: pairs"]
    assert made[0]["kw"]["unit"] == "B" and made[0]["kw"]["total"] == 1000
    assert made[0]["bar"].n == 1000 and made[0]["bar"].closed
    assert made[1]["bar"].n == 3 and made[1]["bar"].closed


def _run_in_pty(argv: list[str], cwd: Path) -> str:
    """Output of a command run with a terminal as its stdout and stderr."""
    leader, follower = pty.openpty()
    # a window of 40 x 120: a terminal of size 0 (a bare pty's) hides every bar
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdout=follower, stderr=follower, cwd=cwd)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_a_command_shows_its_bar_on_a_terminal_only(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "model.cli", "synth", "--train", "2", "--val", "0",
            "--pairs", "2", "--height", "32", "--width", "32"]
    on_tty = _run_in_pty([*argv, "--out", str(tmp_path / "a")], REPO)
    piped = subprocess.run([*argv, "--out", str(tmp_path / "b")], cwd=REPO, capture_output=True,
                           text=True, timeout=120, check=True)
    assert "synth" in on_tty and "2/2" in on_tty
    assert "2/2" not in piped.stderr and "it/s" not in piped.stderr and "seq/s" not in piped.stderr
