"""Backend resolution: `auto` falls back with one warning, explicit unavailable choices fail loudly."""

import os
import subprocess
import sys
import warnings

import pytest
import torch

from cuda_ext import build
from instag.errors import BackendUnavailableError
from instag.kernels import backend

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


@pytest.fixture(autouse=True)
def _fresh_warnings():
    backend.reset_warnings()
    yield
    backend.reset_warnings()


@no_cuda
@pytest.mark.parametrize("op", backend.OPS)
def test_auto_without_cuda_picks_cpu_with_one_warning(op):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = backend.resolve(op, "auto", "cpu")
        second = backend.resolve(op, "auto", "cpu")
    assert first == second
    assert first.backend == "cpu" and first.impl == "instag-cpp"
    fallbacks = [w for w in caught if issubclass(w.category, backend.BackendFallbackWarning)]
    assert len(fallbacks) == 1
    assert op in str(fallbacks[0].message) and "no CUDA" in str(fallbacks[0].message)


@no_cuda
@pytest.mark.parametrize("op", backend.OPS)
def test_explicit_cuda_without_cuda_raises(op):
    with pytest.raises(BackendUnavailableError, match="cuda"):
        backend.resolve(op, "cuda", "cpu")


def test_explicit_choices_and_unknown_names():
    assert backend.resolve("rasterize", "torch", "cpu").impl == "torch-reference"
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        backend.resolve("rasterize", "metal", "cpu")
    with pytest.raises(BackendUnavailableError, match="needs tensors on the CPU"):
        backend.resolve("rasterize", "cpu", "cuda")
    with pytest.raises(ValueError, match="unknown op"):
        backend.available("fft", "cpu")


@no_cuda
def test_without_compiler_auto_uses_torch_and_cpu_fails(monkeypatch):
    monkeypatch.setattr(build, "compiler_available", lambda: False)
    with pytest.warns(backend.BackendFallbackWarning, match="torch-reference"):
        choice = backend.resolve("triplane_hash_encode", "auto", "cpu")
    assert choice.backend == "torch"
    with pytest.raises(BackendUnavailableError, match="compiler"):
        backend.resolve("triplane_hash_encode", "cpu", "cpu")


def test_importing_instag_builds_nothing(tmp_path):
    """Importing every public module must not compile: the extension cache stays empty."""
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    code = (
        "import instag, instag.kernels, instag.kernels.rasterize, instag.kernels.hash_encode, instag.cli.app\n"
        "from instag.kernels.hash_encode import TriplaneHashEncoder\n"
        "TriplaneHashEncoder()\n"  # constructing a module builds nothing either; the first forward does
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    built = list((tmp_path / "ext").rglob("*")) if (tmp_path / "ext").exists() else []
    assert built == []


def test_auto_never_picks_tinycudann(monkeypatch):
    """Even with tinycudann installed on a CUDA machine (simulated), `auto` and `cuda` run our own 3D kernel;
    tinycudann runs only when asked for by name, and only the 3D grid."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backend, "_has_module", lambda name: name in ("tinycudann", "gsplat"))
    monkeypatch.setattr(build, "nvcc_available", lambda: True)
    for requested in ("auto", "cuda"):
        assert backend.resolve("hash_encode", requested, "cuda").impl == "instag-cuda"
    assert backend.resolve("hash_encode", "tinycudann", "cuda").impl == "tinycudann"
    assert backend.resolve("rasterize", "tinycudann", "cuda").impl == "gsplat"
    assert backend.resolve("triplane_hash_encode", "tinycudann", "cuda").impl == "instag-cuda"
    with pytest.raises(BackendUnavailableError, match="CUDA device"):
        backend.resolve("hash_encode", "tinycudann", "cpu")


def test_each_kind_of_processor_builds_its_own_library():
    """Builds are -march=native, so a cache shared by two kinds of machine must keep one per kind; the clock and
    other lines that change between reads of /proc/cpuinfo must not make a new one."""
    epyc = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2450.000\nflags\t\t: fpu sse2 avx2 fma\n"
    assert build.processor_key(epyc) == build.processor_key(epyc.replace("2450.000", "3100.117"))
    assert build.processor_key(epyc) != build.processor_key(epyc.replace("avx2 fma", "avx2 fma avx512f"))
    assert build.processor_key(epyc) != build.processor_key(epyc.replace("AMD EPYC", "Intel(R) Xeon(R) Processor"))
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
    assert build.processor_key(arm) != build.processor_key(arm.replace("0xd40", "0xd0c"))
    assert build.processor_key(arm) == build.processor_key(arm.replace("50.00", "48.00"))
    assert build.cpu_library_name().startswith(build.CPU_LIBRARY + "_")
    assert build.cpu_library_name() != build.cuda_library_name()
