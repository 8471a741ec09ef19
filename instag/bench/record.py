"""What every benchmark JSON carries: the machine, the commit, versions; and median timing of a callable."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from instag.atomic import write_text_atomic
from instag.machine import cpu_model


def _commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "unknown"


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on (CPU, cores, threads, GPU if any) and the software versions."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def header(kind: str) -> dict[str, Any]:
    """The common head of a benchmark JSON document."""
    return {
        "benchmark": kind,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": machine_info(),
    }


def median_ms(fn: Callable[[], Any], runs: int = 10, warmup: int = 2, sync: Callable[[], None] | None = None) -> float:
    """Median wall time of `fn()` in milliseconds over `runs` calls after `warmup` calls.

    `sync` (e.g. torch.cuda.synchronize) is called around each run so asynchronous work is counted.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def write_json(doc: dict[str, Any], path: str | Path) -> None:
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
