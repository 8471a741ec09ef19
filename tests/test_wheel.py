"""The package as a user installs it (`pip install .`, not editable): the wheel carries the recipes, the shipped
UMFs and the kernel sources, and `instag` works from a directory far from the checkout.

The fresh venv borrows the test venv's dependencies through a .pth line (reinstalling torch and the rest would
take minutes and a network) but has its own copy of instag from the wheel, which the test checks is the one
imported."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from instag.motion.umf_file import SHIPPED_UMFS
from instag.train.synthetic import tiny_adapt_recipe, write_dataset

REPO = Path(__file__).resolve().parents[1]


def _run(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's bin dir, a working directory outside the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # build from a copy: an in-tree build would leave build/ and egg-info in the checkout
    tracked = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout.split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist", src,
         cwd=root)
    wheel = next((root / "dist").glob("instag-*.whl"))
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", wheel,
         cwd=root)
    work = root / "elsewhere"
    work.mkdir()
    return venv / "bin", work


def test_the_wheel_holds_the_recipes_umfs_and_kernel_sources(installed):
    bin_dir, work = installed
    probe = ("import instag, cuda_ext\n"
             "from instag.config.recipe import load_recipe, shipped_recipes\n"
             "from instag.motion.umf_file import shipped_umf, umf_paths\n"
             "from instag.train.recipe import AdaptRecipe\n"
             "from instag.train.umf import choose_umf\n"
             "print(instag.__file__); print(cuda_ext.__file__)\n"
             "print(','.join(shipped_recipes()))\n"
             "recipe = load_recipe('adapt_quick_cpu', AdaptRecipe)\n"
             "print(choose_umf(None, True, recipe.model, recipe.audio_feature)[0])\n")
    lines = _run(bin_dir / "python", "-c", probe, cwd=work).stdout.splitlines()
    venv = bin_dir.parent.resolve()
    assert all(Path(p).resolve().is_relative_to(venv) for p in (lines[0], lines[1], lines[3])), lines
    assert {"adapt_quick_cpu", "adapt_5s", "pretrain"} <= set(lines[2].split(","))
    assert lines[3].endswith(f"{SHIPPED_UMFS['whisper']}.safetensors")


def test_doctor_and_a_tiny_adaptation_run_from_the_installed_package(installed):
    bin_dir, work = installed
    doctor = _run(bin_dir / "instag", "doctor", cwd=work)
    assert "hash_encode" in doctor.stdout
    ds = write_dataset(work / "ds")
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny_adapt_recipe(2, 1, 1)))
    _run(bin_dir / "instag", "adapt", "ds", "-o", "av", "--recipe", "tiny.yaml", "--no-umf", cwd=work)
    assert (work / "av" / "avatar.json").is_file() and ds.is_dir()
