"""The dub's own delay after each onset of page runs recorded before `instag bench preview --live` reported it
(`versus_file_mode.onsets`): the avatar dubs the microphone's sound as a file, and `onsets_in_file` reads, for every
onset the run timed, how long the dub's mouth takes to open and the live latency less that.

    python benchmarks/scripts/page_onsets.py AVATAR AUDIO SECONDS RUN.json...

AUDIO and SECONDS as the runs were given them (`--audio`, `--seconds`); each RUN.json must come from AVATAR.
Prints one JSON line per run: the file's delay and the live latency less it, per opening level.
"""

from __future__ import annotations

import json
import sys

from instag.avatar.bundle import load_avatar
from instag.bench.dub import rendered_openings
from instag.bench.preview_live import RATE, onsets_in_file, with_pauses
from instag.media.audio import decode_audio


def main(avatar_path: str, audio: str, seconds: str, *runs: str) -> None:
    sound = with_pauses(decode_audio(audio).mono16k, float(seconds))
    avatar = load_avatar(avatar_path)
    file_open, _ = rendered_openings(avatar, sound)
    for run in runs:
        doc = json.load(open(run))
        offset = round(doc["versus_file_mode"]["offset_in_file_s"] * RATE)
        onsets = onsets_in_file(file_open, float(avatar.meta["fps"]), offset, len(sound), doc["live"])
        print(json.dumps({"run": run, "onsets": onsets, "live_latency_ms": doc["live"]["latency_ms"]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
