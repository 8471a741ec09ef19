"""The kernel sources compile with the project's own flags and no warning, even where no GPU can run them: nvcc
for the CUDA sources (device and host code), the C++ compiler for the CPU ones. Warnings are errors here only,
not in the JIT build, so that a newer compiler's new warning cannot stop a user's first run."""

import shutil
import subprocess

import pytest

from cuda_ext import build

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
# nvcc: every device-side diagnostic is an error; -Xcompiler: the same for the host compiler it drives.
NVCC_WERROR = ("-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror")
CXX_WERROR = ("-Wextra", "-Werror")


def nvcc(source, out, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["nvcc", *build.NVCC_FLAGS, *NVCC_WERROR, "-arch=sm_90", "-Xcompiler", "-fPIC", *extra,
           "-I", str(build.CSRC), str(source), "-o", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@needs_nvcc
@pytest.mark.parametrize("source", build.CUDA_SOURCES)
def test_cuda_source_compiles_for_hopper_without_warnings(source, tmp_path):
    out = tmp_path / "kernels.so"
    result = nvcc(build.CSRC / source, out, "-shared")
    assert result.returncode == 0, result.stderr
    symbols = subprocess.run(["nm", "-D", str(out)], capture_output=True, text=True).stdout
    # The launchers ctypes binds must be exported with C linkage.
    assert "instag_grid_encode_forward_cuda" in symbols and "instag_grid_encode_backward_cuda" in symbols


@needs_nvcc
def test_a_device_warning_fails_the_build(tmp_path):
    """The flags above do turn a warning into a failure (an unused variable in a kernel)."""
    source = tmp_path / "warn.cu"
    source.write_text("__global__ void k(float* x) { int unused; x[0] = 1.0f; }\n")
    result = nvcc(source, tmp_path / "warn.o", "-c")
    assert result.returncode != 0 and "unused" in result.stderr


@pytest.mark.skipif(not build.compiler_available(), reason="no C++ compiler")
@pytest.mark.parametrize("source", build.CPU_SOURCES)
def test_cpu_source_compiles_without_warnings(source):
    from torch.utils.cpp_extension import get_cxx_compiler

    cmd = [get_cxx_compiler(), "-fsyntax-only", *build.CXX_FLAGS, *CXX_WERROR, "-I", str(build.CSRC),
           str(build.CSRC / source)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
