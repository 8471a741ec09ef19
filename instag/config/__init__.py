"""Typed, frozen configuration: dataclasses filled from YAML recipes (yaml.safe_load; unknown keys are an error)."""

from instag.config.recipe import dump_recipe, from_dict, load_recipe, to_dict

__all__ = ["dump_recipe", "from_dict", "load_recipe", "to_dict"]
