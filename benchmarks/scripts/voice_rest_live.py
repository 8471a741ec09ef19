"""Where the live microphone mode rests the lips (`LiveFeatures.shows`), its stream fed 10 ms at a time as the page
sends it: over music between two lines, and over people talking.

    python benchmarks/scripts/voice_rest_live.py AVATAR MUSIC_DIR SPEECH_WAV DATASET...

For each music (MUSIC_DIR's `.wav`/`.ogg`/`.mp3`): SPEECH_WAV's first 5 s, 6 s of the music as loud as the speech,
its next 5 s; the share of frames shown at rest over the music (from 0.5 s into it) and over the speech, and how
long after the voice returns the first frame shows it again. For each dataset: the share of its frames shown at
rest, and of those where its sound is louder than the gate (the rest comes from no voice, not from silence).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.data.dataset import load_dataset
from instag.media.audio import decode_audio
from instag.viewer.live import RATE, LiveFeatures, LiveStream, to_chunk

PIECE = RATE // 100  # the page's 10 ms messages


def shown(live: LiveFeatures, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What each live frame of `audio` [N] shows, and whether it is louder than the gate."""
    stream = LiveStream(live.fps)
    what, loud = [], []
    for start in range(0, len(audio), PIECE):  # at the pace of real time, each frame asked as soon as it can be
        stream.push(to_chunk(audio[start:start + PIECE]), (start + PIECE) / RATE)
        for k in range(len(what), live.newest(stream) + 1):
            what.append(live.shows(stream, k))
            loud.append(live.voiced(stream, k))
    return np.array(what), np.array(loud)


def main(avatar_path: str, music_dir: str, speech_wav: str, *datasets: str) -> None:
    live = LiveFeatures(load_avatar(Path(avatar_path)), torch.device("cpu"))
    fps = live.fps
    speech = decode_audio(Path(speech_wav)).mono16k
    s1, s2 = speech[: 5 * RATE], speech[5 * RATE:10 * RATE]
    print("| music | rest over the music | rest over the speech | the voice back on the lips after |")
    print("| --- | --- | --- | --- |")
    for path in sorted(p for p in Path(music_dir).iterdir() if p.suffix in (".wav", ".ogg", ".mp3")):
        music = decode_audio(path).mono16k
        music = np.tile(music, int(np.ceil(6 * RATE / len(music))))[:6 * RATE]
        track = np.concatenate([s1, music * np.std(s1) / np.std(music), s2]).astype(np.float32)
        what, _ = shown(live, track)
        back = int(11 * fps)
        woke = next((k for k in range(back, len(what)) if what[k] == "voice"), None)
        speech_frames = np.r_[int(0.5 * fps):int(4.5 * fps), int(11.5 * fps):min(int(15.5 * fps), len(what))]
        print(f"| {path.name} | {(what[int(5.5 * fps):back] == 'rest').mean():.2f} | "
              f"{(what[speech_frames] == 'rest').mean():.2f} | "
              f"{'never' if woke is None else f'{(woke - back) / fps * 1e3:.0f} ms'} |")
    print("\n| dataset | frames | shown at rest | at rest while louder than the gate |")
    print("| --- | --- | --- | --- |")
    for path in datasets:
        audio, rate = load_dataset(Path(path)).audio()
        assert rate == RATE, f"{path}: {rate} Hz"
        what, loud = shown(live, audio.astype(np.float32))
        print(f"| {Path(path).name} | {len(what)} | {(what == 'rest').mean():.3f} | "
              f"{((what == 'rest') & loud).mean():.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
