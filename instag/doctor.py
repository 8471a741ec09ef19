"""What this machine can run: versions, the backend `auto` picks for each kernel op and why, optional packages.

Builds nothing and loads no model: it only looks.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
from typing import Any

import torch

from cuda_ext import build
from instag.audio import whisper
from instag.kernels import backend


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(dist: str, module: str, needs_cuda: bool) -> dict[str, Any]:
    version = _version(dist)
    installed = version is not None and importlib.util.find_spec(module) is not None
    if not installed:
        return {"installed": False, "usable": False, "why": f"{dist} is not installed"}
    if needs_cuda and not torch.cuda.is_available():
        return {"installed": True, "version": version, "usable": False, "why": "needs CUDA, which torch does not see"}
    return {"installed": True, "version": version, "usable": True, "why": "importable"}


def _media() -> dict[str, Any]:
    out: dict[str, Any] = {"ffmpeg": shutil.which("ffmpeg"), "ffprobe": shutil.which("ffprobe")}
    try:
        import av

        encoders = {}
        for name in ("libx264", "h264", "aac"):
            try:
                av.codec.Codec(name, "w")
                encoders[name] = True
            except (av.codec.codec.UnknownCodecError, ValueError):
                encoders[name] = False
        out["pyav"] = {"version": av.__version__, "encoders": encoders, "usable": encoders["aac"] and (encoders["libx264"] or encoders["h264"])}
    except ImportError:
        out["pyav"] = {"version": None, "usable": False}
    return out


def report() -> dict[str, Any]:
    """Everything `instag doctor` shows, as plain data."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ops = {}
    for op in backend.OPS:
        choice = backend.resolve(op, "auto", device, quiet=True)
        ops[op] = {
            "auto": choice.backend,
            "impl": choice.impl,
            "why": choice.reason,
            "available": {b: backend.available(op, b)[0] is not None for b in ("cuda", "cpu", "torch")},
        }
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": {
            "available": torch.cuda.is_available(),
            "torch_cuda_version": torch.version.cuda,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "nvcc": build.nvcc_available(),
        },
        "threads": torch.get_num_threads(),
        "kernels": {
            "cpu_compiler": build.compiler_available(),
            "cpu_library_built": build.is_built(build.cpu_library_name()),
            "cuda_library_built": build.is_built(build.cuda_library_name()),
            "ops": ops,
        },
        "packages": {
            "gsplat": _package("gsplat", "gsplat", needs_cuda=True),
            # Only on the explicit backend: its grid's state is its own, so `auto` never picks it.
            "tinycudann": _package("tinycudann", "tinycudann", needs_cuda=True) | {"note": "backend 'tinycudann' only"},
            "mediapipe": _package("mediapipe", "mediapipe", needs_cuda=False),
            "transformers": _package("transformers", "transformers", needs_cuda=False),
            "silero-vad": _package("silero-vad", "silero_vad", needs_cuda=False),  # where the lips rest: audio.voice
            **{pkg: _package(pkg.replace("_", "-"), pkg, needs_cuda=False) for pkg in whisper.PACKAGES},
        },
        "media": _media(),
    }
