"""`instag doctor`: always exit 0, JSON that names a backend and a reason for every op."""

import json

from typer.testing import CliRunner

from instag.cli.app import app
from instag.kernels.backend import OPS


def test_doctor_json_names_each_op():
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["torch"]
    for op in OPS:
        entry = info["kernels"]["ops"][op]
        assert entry["auto"] in ("cuda", "cpu", "torch") and entry["why"]
        assert entry["available"]["torch"] is True
    assert set(info["packages"]) >= {"gsplat", "tinycudann", "mediapipe"}


def test_doctor_table():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "rasterize" in result.output and "gsplat" in result.output
