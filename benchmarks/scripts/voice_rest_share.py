"""How much of a track's sound its lips rest through for want of a voice (`avatar.rest.resting_share`), which
`instag render` notes from half on (`dubbing.RESTING_NOTE_SHARE`): on speech (the given files and clips, and the
synthesised dubbing voice), on music (each file of MUSIC_DIR, its first minute) and on a synthesised sung voice
(vowels of 0.5–1 s at 220 Hz).

    python benchmarks/scripts/voice_rest_share.py MUSIC_DIR SPEECH_OR_CLIP...
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from instag.audio.synthetic_speech import DUB_VOICE, VoiceStyle, synthesize
from instag.avatar.rest import rest_weights, resting_share, silent_frames
from instag.media.audio import decode_audio

FPS = 25.0
RATE = 16000
SUNG = VoiceStyle(f0_hz=220.0, syllable_s=(0.5, 1.0), phrase_syllables=(3, 6), pause_s=(0.3, 0.6))


def share(audio: np.ndarray) -> float:
    n = int(len(audio) / RATE * FPS)
    return resting_share(rest_weights(audio, RATE, FPS, n), silent_frames(audio, RATE, FPS, n))


def main(music_dir: str, speech: list[str]) -> None:
    print("| sound | share of its sound at rest |\n| --- | --- |")
    shares = [share(decode_audio(Path(p)).mono16k) for p in speech]
    print(f"| speech: {len(speech)} files and clips | {min(shares):.2f}–{max(shares):.2f} |")
    for seed in range(3):
        print(f"| the synthesised dubbing voice, seed {seed} | "
              f"{share(synthesize(20.0, DUB_VOICE, seed=seed).samples.astype(np.float32)):.2f} |")
    for m in sorted(p for p in Path(music_dir).iterdir() if p.suffix in (".wav", ".ogg")):
        print(f"| music: {m.stem} | {share(decode_audio(m).mono16k[: 60 * RATE]):.2f} |")
    for seed in range(3):
        print(f"| a synthesised sung voice, seed {seed} | "
              f"{share(synthesize(20.0, SUNG, seed=seed).samples.astype(np.float32)):.2f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
