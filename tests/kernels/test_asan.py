"""The CPU C++ kernels (hash-grid encoders and rasterizer) built once with AddressSanitizer into a temporary
directory, with a small driver program (asan_driver.cpp) that feeds them NaN, ±inf, huge, tiny and ordinary
coordinates, bounds, conics, opacities and radii. The build takes the project's own flags from
`cuda_ext.build` (optimisation lowered to -O1 for readable reports) plus the sanitizer's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cuda_ext import build

DRIVER = Path(__file__).with_name("asan_driver.cpp")
SANITIZE = ["-fsanitize=address", "-fno-omit-frame-pointer"]


def _compiler() -> str:
    """The C++ compiler torch's JIT builds use (CXX, else c++), skipping the test when there is none."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx}) on PATH")
    return cxx


def _check_asan(cxx: str, workdir: Path) -> None:
    """Skips unless the compiler can link a sanitized program (libasan present)."""
    libasan = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    probe = workdir / "probe.cpp"
    probe.write_text("int main() { return 0; }\n")
    linked = subprocess.run([cxx, *SANITIZE, str(probe), "-o", str(workdir / "probe")], capture_output=True)
    if linked.returncode != 0:
        pytest.skip(f"{cxx} cannot link with -fsanitize=address (libasan: {libasan or 'not found'})")


def test_cpu_kernels_under_asan_with_hostile_inputs(tmp_path: Path) -> None:
    cxx = _compiler()
    _check_asan(cxx, tmp_path)
    flags = [f for f in build.CXX_FLAGS if not f.startswith("-O")]
    sources = [str(build.CSRC / s) for s in build.CPU_SOURCES]
    exe = tmp_path / "asan_driver"
    cmd = [cxx, "-O1", "-g", *flags, *SANITIZE, f"-I{build.CSRC}", str(DRIVER), *sources, "-o", str(exe),
           *build.LD_FLAGS]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"ASan build failed:\n{' '.join(cmd)}\n{built.stderr[-4000:]}"

    # Leak checking needs ptrace, which containers often forbid; the point here is out-of-bounds access.
    # Passive OpenMP waits: spinning threads slow a busy machine's run tenfold.
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:exitcode=86", "OMP_WAIT_POLICY": "passive"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    output = run.stdout + run.stderr
    assert "AddressSanitizer" not in output, output[-6000:]
    assert run.returncode == 0, f"driver exited {run.returncode}:\n{output[-6000:]}"
    assert "kernel calls returned" in run.stdout
