"""Which sequence goes to which split: whole sequences only, deterministic.

Either a YAML file (`split name: [session folder names]`) or a seeded, stratified assignment:
sessions are grouped by (time of day, scene), each group is put in a hash order fixed by the seed,
and a running quota spreads the val/test share evenly over the groups, so every condition appears
on both sides and similar scenes (same group, same recording) never straddle the split
(paper section 3: split by video).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.2, "test": 0.0}


class SplitError(ValueError):
    """A splits file is malformed (the message names the file)."""


@dataclass(frozen=True)
class SessionKey:
    name: str
    time_of_day: str
    scene: str


def load_splits_file(path: str | Path) -> dict[str, str]:
    """session name -> split, from YAML `{train: [...], val: [...], test: [...]}`."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SplitError(f"{path}: cannot read ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise SplitError(f"{path}: expected a mapping 'split name: [session names]'")
    out: dict[str, str] = {}
    for split, names in data.items():
        if split not in SPLITS:
            raise SplitError(f"{path}: unknown split {split!r} (use {', '.join(SPLITS)})")
        if names is None:
            continue
        if not isinstance(names, list):
            raise SplitError(f"{path}: {split} must list session folder names")
        for name in names:
            name = str(name)
            if name in out and out[name] != split:
                raise SplitError(f"{path}: session {name!r} is in both {out[name]} and {split}")
            out[name] = split
    return out


def dump_splits(assignment: dict[str, str]) -> str:
    import yaml

    data = {s: sorted(n for n, v in assignment.items() if v == s) for s in SPLITS}
    return yaml.safe_dump({k: v for k, v in data.items() if v}, sort_keys=False)


def _hash_order(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def assign_splits(sessions: list[SessionKey], seed: int = 0,
                  fractions: dict[str, float] | None = None,
                  existing: dict[str, str] | None = None) -> dict[str, str]:
    """Stratified, seeded assignment of whole sessions; stable for a given list and seed.

    `existing` (session -> split) are sessions assigned by an earlier build: they keep their
    split and count toward the quotas, so sessions recorded later fill what the held-out splits
    still lack. Each non-zero split other than train gets at least one session when there are
    enough sessions (old and new) for every non-zero split to have one; only new sessions move.
    """
    existing = dict(existing or {})
    fr = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    if any(v < 0 for v in fr.values()) or sum(fr.values()) <= 0:
        raise SplitError(f"bad split fractions {fr}")
    total = sum(fr.values())
    fr = {k: v / total for k, v in fr.items()}
    groups: dict[tuple[str, str], list[SessionKey]] = {}
    for s in sessions:
        groups.setdefault((s.time_of_day, s.scene), []).append(s)
    ordered: list[SessionKey] = []
    for key in sorted(groups):  # interleave groups by position so quotas spread over groups
        groups[key].sort(key=lambda s: _hash_order(s.name, seed))
    depth = max((len(g) for g in groups.values()), default=0)
    for i in range(depth):
        for key in sorted(groups):
            if i < len(groups[key]):
                ordered.append(groups[key][i])
    held = [k for k in ("val", "test") if fr.get(k, 0) > 0]
    out: dict[str, str] = {}
    given = {k: sum(v == k for v in existing.values()) for k in held}
    quota = {k: fr[k] * len(existing) for k in held}
    for s in ordered:
        split = "train"
        for k in held:
            quota[k] += fr[k]
            if quota[k] - given[k] >= 1.0 - 1e-9:
                split = k
        if split != "train":
            given[split] += 1
        out[s.name] = split
    # every held-out split with a non-zero share gets a session if enough exist
    n_needed = len(held) + (1 if fr.get("train", 0) > 0 else 0)
    if len(ordered) + len(existing) >= n_needed:
        for k in held:
            if given[k] == 0:
                for s in reversed(ordered):
                    trains = sum(v == "train" for v in (*out.values(), *existing.values()))
                    if out[s.name] == "train" and trains > 1:
                        out[s.name] = k
                        given[k] += 1
                        break
    return out
