"""`instag bench preprocess CLIP`: wall time per preprocessing stage and the process's peak RSS."""

from __future__ import annotations

import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instag.bench.record import header
from instag.config import to_dict
from instag.config.preprocess import PreprocessConfig


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(clip: str | Path, cfg: PreprocessConfig, runs: int = 1,
        progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Preprocess `clip` `runs` times into a temporary dir; medians of the total and of each stage."""
    from instag.data.preprocess import preprocess_clip

    clip = Path(clip)
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    n_frames = 0
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="instag-bench-") as tmp:
        for r in range(runs):
            out = Path(tmp) / f"run{r}"
            t0 = time.perf_counter()
            res = preprocess_clip(clip, out, cfg, progress=progress)
            totals.append(time.perf_counter() - t0)
            for k, v in res.timings_s.items():
                stages.setdefault(k, []).append(v)
            n_frames, warnings = res.n_frames, res.warnings
            shutil.rmtree(out, ignore_errors=True)
    doc = header("preprocess")
    doc.update({
        "clip": str(clip),
        "config": to_dict(cfg),
        "runs": runs,
        "frames": n_frames,
        "total_s": round(statistics.median(totals), 3),
        "stages_s": {k: round(statistics.median(v), 3) for k, v in stages.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "warnings": warnings,
    })
    return doc
