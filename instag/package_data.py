"""Files shipped inside the package (recipes, pre-trained UMFs), found the same way from a checkout and from an
installed wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def package_dir(name: str) -> Path:
    """The directory `name` (e.g. "recipes", "assets/umf") inside the installed `instag` package."""
    return Path(str(resources.files("instag").joinpath(name)))
