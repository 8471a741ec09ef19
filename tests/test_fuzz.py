"""A short coverage-guided fuzz (atheris) of the avatar and manifest loaders, run in CI for a bounded time: each
target runs in a subprocess (libFuzzer owns the process) for FUZZ_SECONDS with a fixed seed, and must end without
a finding. The targets live in tests/fuzz_loaders.py, which also runs them by hand for longer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e.conftest import tiny_avatar  # noqa: F401  (a fixture; tests/ is on sys.path)

pytest.importorskip("atheris", reason="atheris is not installed (dev extra; Linux x86_64 wheels only)")

HARNESS = Path(__file__).with_name("fuzz_loaders.py")
FUZZ_SECONDS = 10  # a smoke run that keeps `make test` within its time; longer by hand (fuzz_loaders.py)
MANIFEST_SEEDS = [
    b"audio,output,paste_back,voice_rest\na.wav,de.mp4,1\nsub/b.flac,fr/x.mp4,no,0\nc.m4a,c\n",
    b"# jobs\n/abs/a.wav,x\n\n\"q,uoted.wav\",\"out,put\",yes\n",
    b"a.wav,../x.mp4\n",
]


def fuzz(target: str, work: Path, corpus: Path, max_len: int) -> None:
    findings = work / "findings"
    findings.mkdir()
    cmd = [sys.executable, str(HARNESS), target, str(work), f"-max_total_time={FUZZ_SECONDS}", "-seed=1",
           f"-max_len={max_len}", "-timeout=20", "-rss_limit_mb=4096", f"-artifact_prefix={findings}/",
           "-print_final_stats=1", str(corpus)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(HARNESS.parent), str(HARNESS.parents[1]), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=FUZZ_SECONDS + 240, env=env, cwd=work)
    output = run.stdout + run.stderr
    found = sorted(p.name for p in findings.iterdir())
    assert run.returncode == 0 and not found, f"fuzzing {target} found {found} (rc {run.returncode}):\n{output[-6000:]}"
    assert "Done" in output and "stat::number_of_executed_units" in output, output[-3000:]


def test_fuzz_manifest_loader(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(MANIFEST_SEEDS):
        (corpus / f"seed-{i}").write_bytes(seed)
    fuzz("manifest", tmp_path, corpus, max_len=512)


def test_fuzz_avatar_loader(tmp_path, request):
    source = request.getfixturevalue("tiny_avatar")
    shutil.copytree(source, tmp_path / "avatar")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    files = ("avatar.json", "drive.npz", "model.safetensors", "background.png")  # fuzz_loaders.FILES
    for i, name in enumerate(files):
        (corpus / f"seed-{i}").write_bytes(bytes([i]) + (source / name).read_bytes())
    max_len = max(p.stat().st_size for p in corpus.iterdir()) + 4096
    fuzz("avatar", tmp_path, corpus, max_len=max_len)
