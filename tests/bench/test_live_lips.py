"""`instag bench live-lips`: what it refuses before any work, and its table."""

from __future__ import annotations

import pytest
from e2e.conftest import tiny_avatar  # noqa: F401  (a fixture; tests/ is on sys.path)

from instag.bench import live_lips
from instag.errors import InputError


@pytest.mark.parametrize("lookaheads", [[], [-1], [0, -2]])
def test_a_negative_or_missing_look_ahead_is_refused(tmp_path, lookaheads):
    with pytest.raises(InputError, match="lookahead"):
        live_lips.run(tmp_path, [], lookaheads)


def test_a_negative_start_of_scoring_is_refused(tmp_path):
    with pytest.raises(InputError, match="score-from"):
        live_lips.run(tmp_path, [], [2], score_from_s=-1.0)


def test_an_avatar_without_a_lip_predictor_is_refused(tiny_avatar, tmp_path):  # noqa: F811
    with pytest.raises(InputError, match="articulation"):
        live_lips.run(tiny_avatar, [tmp_path], [0, 2])


def test_the_table_has_a_row_per_dataset_and_the_means():
    row = {"dataset": "a", "frames": 20, "in_umf_corpus": False, "file": {"mouth_open": 0.8},
           "lookahead_0": {"r": {"mouth_open": 0.4}, "r_vs_file": {"mouth_open": 0.6}},
           "lookahead_2": {"r": {"mouth_open": 0.7}, "r_vs_file": {"mouth_open": 0.9}}}
    seen = {**row, "dataset": "b", "in_umf_corpus": True, "file": {"mouth_open": 0.6},
            "lookahead_0": {"r": {"mouth_open": 0.2}, "r_vs_file": {"mouth_open": 0.5}},
            "lookahead_2": {"r": {"mouth_open": None}, "r_vs_file": {"mouth_open": 0.7}}}
    means = {group: live_lips._means([row, seen], [0, 2], ["mouth_open"], keep)
             for group, keep in (("new_people", False), ("all", None))}
    assert means["new_people"]["lookahead_2"]["r"]["mouth_open"] == 0.7
    assert means["all"]["lookahead_0"]["r"]["mouth_open"] == 0.3
    assert means["all"]["lookahead_2"]["r"]["mouth_open"] == 0.7  # a missing r is left out, not counted as 0
    table = live_lips.markdown_table({"lip_coeffs": ["mouth_open"], "lookaheads": [0, 2], "datasets": [row, seen],
                                      "mean": means})
    lines = table.splitlines()
    assert "| a | no | 0.8 | 0.4 | 0.7 |" in lines and "| b | yes | 0.6 | 0.2 | None |" in lines
    assert any(line.startswith("| mean, new people (1) |") for line in lines)
