"""The training loop's behaviour, pinned bit for bit against a reference commit: tiny fixed-seed runs of both
workflows (`tiny_training.py`: pre-training, its exported UMF, adaptations from it and from scratch) must leave
exactly the tensors that the reference commit's code leaves on the same machine.

Bits depend on the processor (torch and our `-march=native` kernels pick vector code by what it has, and sum in
another order), so no record of digests holds on every machine. Both trees run here, each in a process of its
own, and only their outputs are compared: the working tree's, and the commit named in `same_weights.json`,
unpacked from git with `git archive`. A refactor must leave the bits as they are.

A change that moves training on purpose commits the change, then a second commit that names the first as the
reference (`same_weights.json`, with a line on why training moved)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from instag.machine import cpu_model

ROOT = Path(__file__).resolve().parents[2]
RECORD = Path(__file__).with_name("same_weights.json")
RUNNER = Path(__file__).resolve().relative_to(ROOT).with_name("tiny_training.py")
RUN_TIMEOUT_S = 900  # the runs take about 10 s; the reference may first build its own kernels
FETCH_TIMEOUT_S = 120


# A checkout owned by another user (a CI container's) is otherwise refused as of "dubious ownership".
GIT = ["git", "-c", f"safe.directory={ROOT}", "-C", str(ROOT)]


def _git(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*GIT, *args], capture_output=True, text=True, timeout=timeout)


def _have(commit: str) -> bool:
    return _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def _reference_tree(commit: str, dest: Path) -> Path:
    """The reference commit's code and runner, unpacked under `dest`; a shallow clone first fetches its history."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the reference commit's code cannot be had")
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout: the reference commit's code cannot be had")
    if not _have(commit) and _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        _git("fetch", "--quiet", "--unshallow", timeout=FETCH_TIMEOUT_S)
    assert _have(commit), (f"the reference commit {commit} is not in this checkout's history "
                           "(`git fetch --unshallow`, or a full clone, brings it)")
    archive = subprocess.run([*GIT, "archive", commit, "instag", "cuda_ext", str(RUNNER)],
                             capture_output=True, timeout=60)
    assert archive.returncode == 0, f"git archive {commit} failed: {archive.stderr.decode(errors='replace')}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _start(tree: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(tree / RUNNER), str(out)], cwd=tree,
                            env={**os.environ, **env, "PYTHONPATH": str(tree)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, out: Path, tree: Path, what: str) -> dict[str, dict[str, str]]:
    log, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"the tiny runs of {what} failed:\n{log[-4000:]}"
    result = json.loads(out.read_text())
    assert Path(result["instag"]) == (tree / "instag").resolve(), f"{what} ran {result['instag']}, not its own code"
    return result["weights"]


def _moved(weights: dict[str, dict[str, str]], reference: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """Per run, the tensors whose digests differ from the reference's (a missing or extra tensor counts)."""
    assert weights.keys() == reference.keys()
    return {run: sorted(k for k in tensors.keys() | weights[run].keys() if weights[run].get(k) != tensors.get(k))
            for run, tensors in reference.items()}


def test_training_gives_the_reference_commits_weights_bit_for_bit(tmp_path):
    commit = json.loads(RECORD.read_text())["reference"]
    tree = _reference_tree(commit, tmp_path / "reference")
    # A reference whose kernel sources differ builds them apart, so it does not replace this tree's build.
    kernels_differ = _git("diff", "--quiet", commit, "--", "cuda_ext").returncode != 0
    ref_env = {"TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")} if kernels_differ else {}
    # The two run side by side, one thread each.
    ref_proc = _start(tree, tmp_path / "reference.json", ref_env)
    here_proc = _start(ROOT, tmp_path / "here.json", {})
    reference = _finish(ref_proc, tmp_path / "reference.json", tree, f"the reference commit {commit}")
    here = _finish(here_proc, tmp_path / "here.json", ROOT, "the working tree")
    differ = {run: keys for run, keys in _moved(here, reference).items() if keys}
    assert not differ, (f"training moved from the reference commit {commit} (on {cpu_model()}): "
                        + "; ".join(f"{run}: {len(k)} tensors differ, e.g. {k[:3]}" for run, k in differ.items()))
