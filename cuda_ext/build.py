"""JIT builds of the kernel libraries, with the one set of build flags the project uses.

The kernels are plain C++/CUDA on raw pointers with an `extern "C"` API (no torch headers), so a first
build takes seconds rather than minutes; `torch.utils.cpp_extension` compiles and caches them (it rebuilds
when a source or a flag changes) and `ctypes` binds the functions. Nothing is built at import time.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import time
from pathlib import Path

from instag.errors import KernelBuildError

log = logging.getLogger("instag.kernels")

CSRC = Path(__file__).resolve().parent / "csrc"

CPU_LIBRARY = "instag_cpu_kernels"
CPU_SOURCES = ("cpu/rasterize.cpp", "cpu/project.cpp", "cpu/hash_encode.cpp", "cpu/blur.cpp")
CUDA_LIBRARY = "instag_cuda_kernels"
CUDA_SOURCES = ("cuda/hash_encode.cu",)

# -march=native, with a cache entry per kind of processor (the CUDA library's host code too), so that a cache
# shared by several machines (a home directory on a cluster) never hands one of them another's instructions.
# OpenMP for the CPU kernels' threads.
# Tuples: torch's `cpp_extension.load` appends its own libraries to the lists it is given, which would leak
# into every later user of these flags (the sanitizer build of tests/kernels/test_asan.py linked libtorch_python).
CXX_FLAGS = ("-O3", "-std=c++17", "-march=native", "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas")
LD_FLAGS = ("-fopenmp",)
NVCC_FLAGS = ("-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo")


@functools.cache  # the toolchain does not change within a process; the ninja check runs a subprocess (~3 ms)
def compiler_available() -> bool:
    """Whether a C++ compiler and ninja are on PATH (what a CPU build needs)."""
    from torch.utils.cpp_extension import get_cxx_compiler, is_ninja_available

    return shutil.which(get_cxx_compiler()) is not None and is_ninja_available()


@functools.cache  # asked on every kernel call that resolves its backend
def nvcc_available() -> bool:
    """Whether nvcc can be found (what a CUDA build needs besides a CUDA build of torch)."""
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is not None and Path(CUDA_HOME, "bin", "nvcc").exists():
        return True
    return shutil.which("nvcc") is not None


def build_directory(name: str) -> Path:
    """Where the cached build of library `name` lives (torch's extension cache unless overridden)."""
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(name, verbose=False))


def is_built(name: str) -> bool:
    """Whether a cached build of `name` exists (it may still be rebuilt if a source changed)."""
    return (build_directory(name) / f"{name}.so").exists()


def _headers_digest() -> str:
    """A digest of the shared headers: torch rebuilds when a source or a flag changes, but never looks at the
    headers the sources include, so their digest rides along as a define."""
    digest = hashlib.sha256()
    for header in sorted(CSRC.glob("*.h")):
        digest.update(header.read_bytes())
    return digest.hexdigest()[:16]


# The /proc/cpuinfo fields that say what a processor is and which instructions it has (x86; Arm).
PROCESSOR_FIELDS = ("model name", "flags", "CPU implementer", "CPU part", "Features")


def processor_key(cpuinfo: str) -> str:
    """What a processor is and can do, from /proc/cpuinfo's text: a digest of the first core's PROCESSOR_FIELDS
    (not of what changes from read to read, such as its clock)."""
    first: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name = line.split(":", 1)[0].strip()
        if name in PROCESSOR_FIELDS:
            first.setdefault(name, line)
    lines = [first[f] for f in PROCESSOR_FIELDS if f in first] or [platform.processor(), platform.machine()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


@functools.cache  # the processor does not change within a process
def _processor_key() -> str:
    try:
        return processor_key(Path("/proc/cpuinfo").read_text())
    except OSError:
        return processor_key("")


def cpu_library_name() -> str:
    """The CPU library's name, which is also its cache entry: one per kind of processor."""
    return f"{CPU_LIBRARY}_{_processor_key()}"


def cuda_library_name() -> str:
    """The CUDA library's name and cache entry, one per kind of processor (its host code is built for it)."""
    return f"{CUDA_LIBRARY}_{_processor_key()}"


def _build(name: str, sources: tuple[str, ...], cuda: bool) -> ctypes.CDLL:
    from torch.utils import cpp_extension

    paths = [str(CSRC / s) for s in sources]
    headers = f"-DINSTAG_HEADERS={_headers_digest()}"
    started = time.perf_counter()
    first = not is_built(name)
    if first:
        log.info("building %s (first use, cached afterwards)", name)
    try:
        path = cpp_extension.load(
            name=name,
            sources=paths,
            extra_cflags=[*CXX_FLAGS, headers],
            extra_cuda_cflags=[*NVCC_FLAGS, headers] if cuda else None,
            extra_ldflags=list(LD_FLAGS),
            extra_include_paths=[str(CSRC)],
            with_cuda=cuda,
            is_python_module=False,
            verbose=os.environ.get("INSTAG_BUILD_VERBOSE") == "1",
        )
    except (RuntimeError, OSError, ImportError, FileNotFoundError) as exc:
        raise KernelBuildError(f"building {name} from {', '.join(sources)} failed: {exc}") from exc
    if first:
        log.info("%s built in %.1f s", name, time.perf_counter() - started)
    return ctypes.CDLL(path)


@functools.cache
def cpu_library() -> ctypes.CDLL:
    """The CPU kernel library (rasterizer, hash encoders), built on first call."""
    return _build(cpu_library_name(), CPU_SOURCES, cuda=False)


@functools.cache
def cuda_library() -> ctypes.CDLL:
    """The CUDA kernel library (hash encoders), built on first call on a CUDA machine."""
    return _build(cuda_library_name(), CUDA_SOURCES, cuda=True)
