"""The x264 settings of the MP4s instag writes, in one place for the library, `instag render` and the benches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Encoding:
    crf: int = 18  # constant rate factor: 0 lossless … 51; 18 is about visually lossless
    # speed/size trade-off: `veryfast` keeps a 1080×1920 paste-back dub at or above real time on the 2-core CPU
    # (benchmarks/render_paste_back_cpu.md)
    preset: str = "veryfast"


PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
