"""The import rules of docs/architecture.md, checked on the source (every `import`, also those
inside functions): arrows only go down the layers, and the simulator is reached through the
device registry, never imported by the code that records, calibrates or builds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "rig", "calibration", "dataset", "model")
#: package -> toolkit packages it may import (docs/architecture.md, "Layers").
ALLOWED = {
    "common": set(),
    "rig": {"common"},
    "calibration": {"common", "rig"},
    "dataset": {"common", "rig", "calibration"},
    "model": {"common", "dataset"},
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            out.append((".".join(path.relative_to(REPO).with_suffix("").parts), path))
    return out


def imported_modules(path: Path) -> set[str]:
    """Absolute module names `path` imports (`from a.b import c` counts as a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _is_cli(module: str) -> bool:
    """A command-line module: the top floor of its package (docs/architecture.md)."""
    parts = module.split(".")
    return parts[-1] == "cli" or parts[-1].startswith("cli_") or ".cli." in f".{module}."


MODULES = _modules()


def test_the_rules_see_every_package() -> None:
    found = {m.split(".")[0] for m, _ in MODULES}
    assert found == set(PACKAGES)
    assert len(MODULES) > 60


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_only_go_down_the_layers(module: str, path: Path) -> None:
    own = module.split(".")[0]
    bad = sorted(name for name in imported_modules(path)
                 if name.split(".")[0] in PACKAGES and name.split(".")[0] != own
                 and name.split(".")[0] not in ALLOWED[own])
    assert not bad, f"{path.relative_to(REPO)} ({own}) imports {bad}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_only_the_simulator_and_the_clis_import_it(module: str, path: Path) -> None:
    if module.startswith("rig.sim") or _is_cli(module):
        return
    sim = sorted(n for n in imported_modules(path) if n == "rig.sim" or n.startswith("rig.sim."))
    assert not sim, (f"{path.relative_to(REPO)} imports the simulator ({sim}); reach it through "
                     "rig.registry (kind 'rig', backend 'sim')")


def test_the_registry_names_the_simulator_without_importing_it() -> None:
    from rig.registry import backend_spec

    assert backend_spec("rig", "sim").target.startswith("rig.sim.")
    assert not any(n.startswith("rig.sim") for n in imported_modules(REPO / "rig" / "registry.py"))


def test_the_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from rig.sim.world import SimRig\n    import calibration.io\n")
    assert {"rig.sim.world", "rig.sim.world.SimRig", "calibration.io"} <= imported_modules(bad)
