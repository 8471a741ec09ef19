"""The x264 settings of the MP4s instag writes, in one place for the library, `instag render` and the benches."""

from __future__ import annotations

from dataclasses import dataclass

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


@dataclass(frozen=True)
class Encoding:
    crf: int = 18  # constant rate factor: 0 lossless … 51; 18 is about visually lossless
    preset: str = "veryfast"  # speed/size trade-off of a 256² dub (its encoding costs little beside rendering)
    # of a paste-back dub, whose full-size frames make the encoder the second cost after rendering: the preset that
    # came nearest real time on the busy 2-core CPU (benchmarks/render_paste_back_cpu.md)
    paste_back_preset: str = "ultrafast"

    def preset_for(self, paste_back: bool) -> str:
        return self.paste_back_preset if paste_back else self.preset
