"""Would a second pass of the voice detector over the reversed track let a dub's lips rest sooner after a voice
stops? (Silero's belief in a voice lingers about a second into music, so gaps under about 3 s barely rest.) Not
taken: `benchmarks/voice_activity_cpu.md`.

    python benchmarks/scripts/voice_rest_backward.py MUSIC_DIR SPEECH_WAV... -- CLIP...

A chunk counts as voiced where the forward pass hears a voice (as shipped) and, for the variants, the backward pass
(the track reversed, its answers reversed back) hears one within k chunks. First each CLIP's own sound, clean and
under `voice_rest_noisy.py`'s degradations: frames a variant rests that the forward pass alone does not (speech
taken for nobody). Then each SPEECH_WAV's first 4 s, a gap of music (each file of MUSIC_DIR, as loud as the
speech) of 1.8–6 s, and its next 6 s: the share of the gap's frames at rest, and frames newly rested outside it.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from voice_rest_noisy import conditions

from instag.audio.voice import CHUNK, RATE, VOICE_THRESHOLD, frames_heard, voice_probability
from instag.avatar.rest import silent_frames, weights_over
from instag.media.audio import decode_audio

FPS = 25.0
NEAR = (6, 9, 12)  # chunks (32 ms each)
GAPS = (1.8, 2.2, 2.6, 3.0, 4.0, 6.0)  # seconds


def both_ways(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward speech probabilities [C] of `audio` [N], padded to whole chunks."""
    padded = np.zeros(-(-len(audio) // CHUNK) * CHUNK, np.float32)
    padded[: len(audio)] = audio
    return voice_probability(padded), voice_probability(padded[::-1].copy())[::-1]


def variants(forward: np.ndarray, backward: np.ndarray) -> dict[str, np.ndarray]:
    """Voiced chunks [C] bool: the forward pass alone, and with the backward pass within k chunks."""
    out = {"forward": forward > VOICE_THRESHOLD}
    back = backward > VOICE_THRESHOLD
    for k in NEAR:
        near = back.copy()
        for s in range(1, k + 1):
            near[s:] |= back[:-s]
            near[:-s] |= back[s:]
        out[f"backward within {k}"] = out["forward"] & near
    return out


def rest(audio: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Frames [T] at rest (weight over 0.5) where the frame is silent or no chunk of `voiced` [C] over it is true."""
    n = int(len(audio) / RATE * FPS)
    return weights_over(silent_frames(audio, RATE, FPS, n) | ~frames_heard(voiced, FPS, n), FPS) > 0.5


def music_files(music_dir: str) -> list[Path]:
    return sorted(p for p in Path(music_dir).iterdir() if p.suffix in (".wav", ".ogg"))


def gap_track(speech: np.ndarray, music_path: Path, gap: float) -> tuple[np.ndarray, int, int]:
    """`speech`'s [N] first 4 s, `gap` seconds of the music as loud as the speech, its next 6 s (16 kHz) → (the
    track, the gap's first frame, the frame after it)."""
    music = decode_audio(music_path).mono16k
    n = int(gap * RATE)
    start = min(len(music) - n, 10 * RATE) if len(music) > n else 0
    seg = np.resize(music[start:], n)
    seg = seg / (np.sqrt(np.mean(seg**2)) + 1e-9) * np.sqrt(np.mean(speech**2))
    track = np.concatenate([speech[: 4 * RATE], seg, speech[4 * RATE:]]).astype(np.float32)
    return track, int(4 * FPS), int((4 + gap) * FPS)


def clip_sounds(clips: list[str], quieter: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """(condition, sound [N] float32) of each clip's own sound: clean and under `voice_rest_noisy.py`'s
    degradations (noise drawn from a seed named after the clip); with `quieter`, also 20 dB quieter, alone and
    with white noise at 10 dB."""
    for clip in clips:
        clean = decode_audio(Path(clip)).mono16k.astype(np.float64)
        sounds = conditions(clean, np.random.default_rng(zlib.crc32(Path(clip).name.encode())))
        if quieter:
            sounds |= {"20 dB quieter": clean * 0.1, "white 10 dB, 20 dB quieter": sounds["white 10 dB"] * 0.1}
        for cond, x in sounds.items():
            yield cond, x.astype(np.float32)


def on_clips(clips: list[str]) -> None:
    newly: dict[tuple[str, str], int] = {}
    frames = 0
    for cond, x in clip_sounds(clips):
        rests = {name: rest(x, v) for name, v in variants(*both_ways(x)).items()}
        for name, r in rests.items():
            newly[cond, name] = newly.get((cond, name), 0) + int((r & ~rests["forward"]).sum())
        frames += int(len(x) / RATE * FPS) if cond == "clean" else 0
    counts_table(f"sound ({len(clips)} clips, {frames} frames)", newly, list(variants(np.zeros(1), np.zeros(1)))[1:])


def counts_table(title: str, counts: dict[tuple[str, str], int], names: list[str]) -> None:
    """A Markdown table of `counts` by (row, column name): a row per condition, a column per name."""
    print(f"| {title} | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for cond in dict.fromkeys(c for c, _ in counts):
        print(f"| {cond} | " + " | ".join(str(counts[cond, n]) for n in names) + " |")


def gap_table(music_dir: str, speech: list[str], gaps: tuple[float, ...],
              rests_of: Callable[[np.ndarray], dict[str, np.ndarray]]) -> None:
    """A Markdown table over each SPEECH's gap tracks (`gap_track`) with each piece of MUSIC_DIR: per variant of
    `rests_of(track)` (name → frames [T] at rest; the first as shipped), the mean share of the gap's frames at rest,
    and in brackets the frames outside the gaps it rests that the first does not."""
    names: list[str] = []
    for path in speech:
        s = decode_audio(Path(path)).mono16k[: 10 * RATE]
        for gap in gaps:
            rested: dict[str, list[float]] = {}
            outside: dict[str, int] = {}
            for m in music_files(music_dir):
                audio, i0, i1 = gap_track(s, m, gap)
                rests = rests_of(audio)
                if not names:
                    names = list(rests)
                    print("| speech | gap | " + " | ".join(names) + " |")
                    print("| --- | --- |" + " --- |" * len(names))
                for name, r in rests.items():
                    rested.setdefault(name, []).append(float(r[i0:i1].mean()))
                    new = r & ~rests[names[0]]
                    outside[name] = outside.get(name, 0) + int(new[:i0].sum() + new[i1:].sum())
            print(f"| {Path(path).stem} | {gap:g} s | " + " | ".join(
                f"{np.mean(v):.2f} ({outside[k]})" for k, v in rested.items()) + " |", flush=True)


def on_gaps(music_dir: str, speech: list[str]) -> None:
    gap_table(music_dir, speech, GAPS, lambda a: {name: rest(a, v) for name, v in variants(*both_ways(a)).items()})


if __name__ == "__main__":
    args = sys.argv[1:]
    cut = args.index("--")
    on_clips(args[cut + 1:])
    on_gaps(args[0], args[1:cut])
