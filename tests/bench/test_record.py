"""Every benchmark's JSON says which command made it."""

from __future__ import annotations

import json

from instag_testing import run_instag


def test_a_bench_json_records_its_command_line(tmp_path):
    out = tmp_path / "kernels.json"
    res = run_instag("bench", "kernels", "--quick", "--json", out)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["command"] == f"instag bench kernels --quick --json {out}"
