"""The device a command runs on (`--device`, `run.device`), and names for the hardware a run used, for benchmark
JSON and model cards alike."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from instag.errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """`name` (auto: CUDA when torch sees one) as a torch device; an unknown name, or cuda without CUDA, is an
    `InputError` naming `option`, the setting it came from."""
    if name not in DEVICES:
        raise InputError(f"{option} {name}: must be one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{option} cuda: torch sees no CUDA device")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    """One line naming the hardware that `device` runs on, for records such as a model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads (CPU)"
