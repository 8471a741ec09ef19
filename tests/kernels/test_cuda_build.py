"""The CUDA sources compile with the project's own nvcc flags, even where no GPU can run them."""

import shutil
import subprocess

import pytest

from cuda_ext import build


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("source", build.CUDA_SOURCES)
def test_cuda_source_compiles_for_hopper(source, tmp_path):
    out = tmp_path / "kernels.so"
    cmd = [
        "nvcc", *build.NVCC_FLAGS, "-arch=sm_90", "-Xcompiler", "-fPIC", "-shared",
        "-I", str(build.CSRC), str(build.CSRC / source), "-o", str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    symbols = subprocess.run(["nm", "-D", str(out)], capture_output=True, text=True).stdout
    # The launchers ctypes binds must be exported with C linkage.
    assert "instag_grid_encode_forward_cuda" in symbols and "instag_grid_encode_backward_cuda" in symbols
