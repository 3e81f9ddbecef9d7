"""Progress bars, one rule for every command: a bar on anything that can take more than two
seconds, on stderr, and only when stderr is a terminal (tqdm's `disable=None`), so logs, pipes
and CI stay clean. `--quiet` turns it off everywhere."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, desc: str, total: float | None = None,
                 unit: str = "it", enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar that shows itself only on a terminal; `enabled=False` (quiet) hides it always."""
    return tqdm(iterable, desc=desc, total=total, unit=unit,
                disable=None if enabled else True, **kwargs)


class StageBar:
    """One bar that follows a job through its stages, fed by `progress(stage, done, total)`
    callbacks (the builder's: "events" in bytes, then "pairs"): each new stage restarts the bar
    with its own total and unit, so a long single job never sits at 0/1."""

    UNITS = {"events": ("B", True), "pairs": ("pair", False)}

    def __init__(self, name: str, *, enabled: bool = True, position: int | None = None) -> None:
        self.name = name
        self.enabled = enabled
        self.position = position
        self._bar: tqdm | None = None
        self._stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self.close()
            unit, scale = self.UNITS.get(stage, ("it", False))
            self._bar = progress_bar(desc=f"{self.name}: {stage}", total=total, unit=unit,
                                     unit_scale=scale, enabled=self.enabled, leave=False,
                                     position=self.position)
            self._stage = stage
        assert self._bar is not None
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None
