"""Strict conversion between nested frozen dataclasses and plain YAML/JSON data, and the recipes shipped in the
package (`instag/recipes`), which a recipe argument may name instead of giving a path."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from instag.errors import InputError
from instag.package_data import package_dir

T = TypeVar("T")
RECIPE_DIR = package_dir("recipes")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except InputError:
                continue
        raise InputError(f"{where}: {value!r} does not fit {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise InputError(f"{where}: {value!r} is not one of {', '.join(map(repr, typing.get_args(tp)))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise InputError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        out = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str = "recipe") -> T:
    """Build dataclass `cls` from `data`, refusing unknown keys and wrongly typed values (message names `where`)."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    """A dataclass as plain data (tuples become lists) ready for YAML or JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped in the package (`adapt_quick_cpu`, …)."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(recipe: str | Path) -> Path:
    """A recipe file: `recipe` itself when it exists, else the shipped recipe it names: `adapt_quick_cpu`,
    `adapt_quick_cpu.yaml` or `recipes/adapt_quick_cpu.yaml` (the checkout's layout before recipes moved into the
    package). A missing path in any other directory is an error, never silently a shipped recipe."""
    p = Path(recipe)
    if p.exists():
        return p
    shipped = RECIPE_DIR / (p.stem + ".yaml")
    if p.parent in (Path("."), Path("recipes")) and p.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    raise InputError(f"{p}: no such recipe file, nor a shipped recipe ({', '.join(shipped_recipes())})")


def load_recipe(path: str | Path, cls: type[T]) -> T:
    """Read a YAML recipe (a path or a shipped recipe's name, `recipe_path`) into `cls`; a missing file, bad YAML
    or an unknown key is an `InputError`."""
    p = recipe_path(path)
    return from_dict(cls, read_recipe_yaml(p), where=str(p))


def read_recipe_yaml(path: Path) -> Any:
    """The YAML of the recipe file `path` as plain data ({} when empty); an unreadable file or bad YAML is an
    `InputError`."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise InputError(f"{path}: cannot read recipe ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc


def dump_recipe(obj: Any, path: str | Path) -> None:
    """Save the resolved recipe (so each run records exactly what it used)."""
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
