"""Helpers shared by test modules: the real-clip folder and running the `instag` CLI as a user would.

A plain module with a unique name (not `conftest`), so that importing it works whichever conftest.py files
pytest collected first.
"""


from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    """`INSTAG_REAL_DATA` or ../shared/data/real beside the repository, when it exists."""
    env = os.environ.get("INSTAG_REAL_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "real"
    return path if path.is_dir() else None


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_instag(*args: str) -> CliResult:
    """Run `instag ARGS…` through the console-script entry point in this process (exit code, stdout, stderr)."""
    from instag.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["instag", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return CliResult(code, out.getvalue(), err.getvalue())


def run_instag_subprocess(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `instag ARGS…` in a fresh interpreter, exactly as a user's shell would."""
    code = "import sys; from instag.cli.app import main; sys.argv[0] = 'instag'; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
