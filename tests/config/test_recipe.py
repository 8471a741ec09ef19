"""Recipes: strict loading into frozen dataclasses."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from instag.config import dump_recipe, from_dict, load_recipe
from instag.config.recipe import RECIPE_DIR, recipe_path
from instag.errors import InputError


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    levels: int = 12


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    backend: Literal["auto", "cpu"] = "auto"
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, ...] = (1, 2)
    seed: int | None = None


def test_round_trip(tmp_path):
    cfg = Outer(name="y", inner=Inner(lr=5e-3, levels=4), sizes=(3,), seed=7)
    dump_recipe(cfg, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml", Outer) == cfg


def test_int_is_accepted_for_float_and_defaults_fill_in():
    cfg = from_dict(Outer, {"inner": {"lr": 1}})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float) and cfg.inner.levels == 12


@pytest.mark.parametrize(
    "data, message",
    [
        ({"nmae": "typo"}, "unknown key"),
        ({"inner": {"levels": 2.5}}, "recipe.inner.levels: expected an integer"),
        ({"inner": {"lr": "fast"}}, "expected a number"),
        ({"backend": "gpu"}, "not one of"),
        ({"sizes": 3}, "expected a list"),
        ({"inner": {"levels": True}}, "expected an integer"),
    ],
)
def test_bad_values_are_refused_with_their_place(data, message):
    with pytest.raises(InputError, match=message):
        from_dict(Outer, data)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(InputError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml", Outer)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_recipe(bad, Outer)
    code = tmp_path / "code.yaml"
    code.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(InputError):
        load_recipe(code, Outer)


def test_a_recipe_argument_names_a_shipped_recipe_or_a_file(tmp_path):
    shipped = RECIPE_DIR / "adapt_quick_cpu.yaml"
    for name in ("adapt_quick_cpu", "adapt_quick_cpu.yaml", "recipes/adapt_quick_cpu.yaml"):
        assert recipe_path(name) == shipped
    mine = tmp_path / "adapt_quick_cpu.yaml"
    mine.write_text("seed: 3\n")
    assert recipe_path(mine) == mine
    with pytest.raises(InputError, match="no such recipe file"):
        recipe_path(tmp_path / "elsewhere" / "adapt_quick_cpu.yaml")  # a typo in a dir is not the shipped one
    with pytest.raises(InputError, match="adapt_5s, adapt_quick_cpu"):
        recipe_path("adapt_quick")
