"""Helpers shared by test modules: the real-clip folder, running the `instag` CLI as a user would, and a guard
that sees code read the device back.

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

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import instag
from instag.config.model import (
    AlignerConfig,
    AudioConfig,
    HashGridConfig,
    HookConfig,
    ModelConfig,
    MotionFieldConfig,
    TriplaneConfig,
)

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


def tiny_model_config() -> ModelConfig:
    """A model small enough for unit tests of the motion fields and the renderer (hash tables of 2^10)."""
    plane = TriplaneConfig(
        n_levels=4, n_features=1, log2_table_size=10, base_resolution=4, max_resolution=32, bound=1.0
    )
    return ModelConfig(
        audio=AudioConfig(
            feature_dim=8, window=4, hidden_dim=16, code_dim=8, smooth_window=8, attention_hidden=8,
            feature_shift=-50.0, feature_scale=25.0,
        ),
        expression_dim=2,
        articulation=False,  # tests that need the head turn it on
        lip_coeffs=("mouth_open",),
        umf=MotionFieldConfig(triplane=plane, hidden_dim=16, n_layers=2),
        personalized=MotionFieldConfig(triplane=plane, hidden_dim=8, n_layers=1),
        aligner=AlignerConfig(
            grid=HashGridConfig(n_levels=4, log2_table_size=10, max_resolution=32, bound=1.0), hidden_dim=8
        ),
        hook=HookConfig(code_dim=4, hidden_dim=8),
    )


def post_upload(url: str, data: bytes, name: str = "x.wav", timeout: float = 120) -> tuple[int, dict]:
    """POST `data` to a preview server's upload endpoint as file `name` → (HTTP status, JSON body)."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url + "api/upload", data=data, method="POST",
                                 headers={"X-Filename": name, "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


aten = torch.ops.aten
# Ops that make the host wait for the device (on the CPU they cost nothing, so such reads creep back unseen).
READS_BACK = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.item.default, aten.nonzero.default,
              aten.masked_select.default, aten._unique2.default, aten.unique_dim.default,
              aten.unique_consecutive.default, aten.equal.default, aten.bincount.default}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
PACKAGE = Path(instag.__file__).parent
_TORCH = Path(torch.__file__).parent


def _reads_back(func, args, kwargs) -> bool:
    if func in READS_BACK:
        return True
    if func is aten.repeat_interleave.Tensor:  # its size is data unless the caller gives it
        return kwargs.get("output_size") is None
    if func in (aten._to_copy.default, aten.copy_.default):  # a device tensor copied to the host
        src = args[1] if func is aten.copy_.default else args[0]
        dst = args[0].device if func is aten.copy_.default else kwargs.get("device", src.device)
        return src.device.type != "cpu" and torch.device(dst).type == "cpu"
    # A boolean mask as an index: its number of True entries sizes the result, so it is read back first.
    return func in INDEXING and any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])


def _call_site(this_file: str) -> tuple[Path, int] | None:
    """File and line of the code that called the op: the first frame outside torch (its Python wrappers of tensor
    methods, dynamo's wrappers) and this module. None for torch.optim's own ops: the reads there are of the step
    counts, which a (not capturable) optimiser keeps on the host."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(_TORCH / "optim"):
            return None
        if str(path) != this_file and not path.is_relative_to(_TORCH):
            return path, frame.f_lineno
        frame = frame.f_back
    return None


class DeviceReads(TorchDispatchMode):
    """Records "op at file:line" for each op that reads the device back, called from one of the `watched` files
    (paths inside the instag package)."""

    def __init__(self, watched: set[Path]) -> None:
        super().__init__()
        self.watched = watched
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _reads_back(func, args, kwargs):
            site = _call_site(__file__)
            if site is not None and site[0] in self.watched:
                self.seen.append(f"{func} at {site[0].relative_to(PACKAGE.parent)}:{site[1]}")
        return func(*args, **kwargs)
