"""Imports run one way: each package of `instag` may import its own modules and the layers below it, never a
layer above nor a sibling in its own layer (docs/architecture.md draws the same order). Every import counts,
those inside functions too: a deferred import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "instag"

# Lowest first. A top-level module (instag/x.py) is its own unit, like a package.
LAYERS: list[set[str]] = [
    {"errors"},
    {"atomic", "versioned", "stats", "machine", "plot", "package_data"},
    {"config", "media", "kernels"},
    {"audio", "gaussians"},
    {"motion"},
    {"render"},
    {"data"},
    {"avatar"},
    {"train", "eval", "viewer"},
    {"demo", "bench", "doctor"},
    {"cli"},
]
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str:
    """The layered unit of a dotted module name under instag: its first component."""
    return module.split(".")[1]


def _imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, instag module) of every import in `path` (a file under `package`), relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = ["instag", *path.relative_to(package).with_suffix("").parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("instag.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level])
                if node.module is None:
                    found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
                    continue
                name = f"{base}.{node.module}"
            else:
                name = node.module or ""
            if name == "instag":
                found += [(node.lineno, f"instag.{a.name}") for a in node.names]
            elif name.startswith("instag."):
                found.append((node.lineno, name))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_unit_has_a_layer():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _sources()}
    assert units <= LAYER_OF.keys(), f"not placed in LAYERS: {sorted(units - LAYER_OF.keys())}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down(path):
    unit = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = [f"line {line}: {module} ({_unit(module)} is layer {LAYER_OF.get(_unit(module))}, {unit} is "
              f"layer {LAYER_OF[unit]})"
              for line, module in _imports(path)
              if _unit(module) != unit and LAYER_OF.get(_unit(module), len(LAYERS)) >= LAYER_OF[unit]]
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk itself: an upward import (data → train) inside a function is found."""
    fake = tmp_path / "instag"
    (fake / "data").mkdir(parents=True)
    module = fake / "data" / "x.py"
    module.write_text("def f():\n    from instag.train.adapt import adapt\n    from . import dataset\n")
    assert _imports(module, fake) == [(2, "instag.train.adapt"), (3, "instag.data.dataset")]
