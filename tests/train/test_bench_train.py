"""`instag bench train` machinery on a tiny recipe: one case per size with a positive median."""

from __future__ import annotations

import yaml

from instag.bench import train as bench_train
from instag.train.synthetic import TINY_INIT, TINY_MODEL


def test_bench_train_times_each_size(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"model": TINY_MODEL, "init": TINY_INIT,
                                      "stages": {"warmup": 1, "align": 1, "fuse": 1}, "run": {"threads": 1}}))
    seen = []
    doc = bench_train.run(recipe, runs=3, progress=seen.append, sizes=(32, 64))
    assert [c["size"] for c in doc["cases"]] == ["32x32", "64x64"] == [c["size"] for c in seen]
    assert all(c["s_per_it"] > 0 and c["stage"] == "align" for c in doc["cases"])
    assert doc["benchmark"] == "train" and doc["threads"] == 1 and "machine" in doc
