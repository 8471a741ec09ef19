"""`instag adapt` then `instag eval` through the CLI on a tiny synthetic dataset: the avatar dir and the JSON."""

from __future__ import annotations

import json

import yaml
from instag_testing import run_instag

from instag.eval import EVAL_KEYS
from instag.train.synthetic import TINY_RECIPE, write_dataset


def test_adapt_then_eval_cli(tmp_path):
    ds = write_dataset(tmp_path / "ds", frames=10, test_from=7)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE,
                                      "stages": {"warmup": 2, "align": 2, "fuse": 1},
                                      "run": {"checkpoint_every": 0, "threads": 1}}))
    av = tmp_path / "av"
    res = run_instag("adapt", ds, "-o", av, "--recipe", recipe)
    assert res.returncode == 0, res.stderr
    assert (av / "avatar.json").is_file() and "wrote" in res.stdout
    again = run_instag("adapt", ds, "-o", av, "--recipe", recipe)
    assert again.returncode == 2 and "--resume" in again.stderr
    out = tmp_path / "metrics.json"
    res = run_instag("eval", av, ds, "--json", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert set(EVAL_KEYS) <= doc.keys() and doc["n_frames"] == 3
    assert 0 < doc["psnr_full"] < 100 and -1 <= doc["ssim_full"] <= 1
    bad = run_instag("eval", av, ds, "--split", "validation")
    assert bad.returncode == 2 and "split" in bad.stderr
