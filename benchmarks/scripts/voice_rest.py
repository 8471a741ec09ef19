"""Where a dub's lips rest, by loudness alone (before) and by loudness or no voice (`avatar.rest.quiet_frames`):
on people talking (each dataset's own sound, against its tracked opening), and on tracks with music between and
under speech.

    python benchmarks/scripts/voice_rest.py MUSIC_DIR SPEECH_WAV DATASET...

First, for the music, each dataset's sound and SPEECH_WAV: the share of 1.6 s windows (REST_AFTER_S) in which no
32 ms chunk reaches a speech probability of 0.02 … 0.5, so that a threshold there would rest it. Then, for each dataset: the share of frames rested (weight > 0.5) before and now, and of the frames where the person's
mouth is open beyond their own median (they are talking), the share rested. MUSIC_DIR's `.wav`/`.ogg`/`.mp3` files
(music without voice, only measured, never fitted) each make two tracks with SPEECH_WAV's first 20 s: 5 s of
speech, 6 s of the music, 5 s of speech, then the music as a bed 10 dB under that speech; for each, the share of
frames rested over the music alone, over the speech newly rested, and over the speech on the bed, and the UMF's predicted opening
(standardised) over the music alone, which a dub draws where nothing rests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from instag.audio import features as af
from instag.audio.voice import CHUNK, voice_probability
from instag.avatar.rest import REST_AFTER_S, quiet_frames, weights_over
from instag.data.dataset import load_dataset
from instag.media.audio import decode_audio
from instag.motion.umf_file import predict_opening

FPS = 25.0
RATE = af.FEATURE_RATE


def weights(audio: np.ndarray, rate: int, fps: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rest weights [n] before (loudness alone) and now."""
    before = weights_over(quiet_frames(audio, rate, fps, n, without_voice=False), fps)
    return before, weights_over(quiet_frames(audio, rate, fps, n), fps)


THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def unheard_windows(audio: np.ndarray) -> list[float]:
    """For each of THRESHOLDS, the share of REST_AFTER_S windows of 16 kHz `audio` all below it."""
    p = voice_probability(audio)
    w = int(REST_AFTER_S * RATE / CHUNK)
    top = np.lib.stride_tricks.sliding_window_view(p, w).max(1) if len(p) >= w else p.max(keepdims=True)
    return [float((top < q).mean()) for q in THRESHOLDS]


def on_windows(music_dir: str, speech_wav: str, paths: list[str]) -> None:
    print("| sound | " + " | ".join(f"below {q:g}" for q in THRESHOLDS) + " |")
    print("| --- |" + " --- |" * len(THRESHOLDS))
    sounds = [(p.name, decode_audio(p).mono16k) for p in _music(music_dir)]
    sounds += [(Path(p).name, _audio16k(p)) for p in paths]
    sounds.append((Path(speech_wav).name, decode_audio(Path(speech_wav)).mono16k))
    for name, audio in sounds:
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in unheard_windows(audio)) + " |")


def _audio16k(dataset: str) -> np.ndarray:
    audio, rate = load_dataset(Path(dataset)).audio()
    assert rate == RATE, f"{dataset}: {rate} Hz"
    return audio


def _music(music_dir: str) -> list[Path]:
    return sorted(p for p in Path(music_dir).iterdir() if p.suffix in (".wav", ".ogg", ".mp3"))


def on_datasets(paths: list[str]) -> None:
    print("| dataset | frames | rested before / now | talking frames rested before / now |")
    print("| --- | --- | --- | --- |")
    totals = np.zeros(5)
    for path in paths:
        ds = load_dataset(Path(path))
        audio, rate = ds.audio()
        opening = np.asarray(ds.tracks["mouth_open"], float)
        n = len(opening)
        before, now = weights(audio, rate, ds.fps, n)
        talking = opening > np.median(opening)
        row = [n, (before > 0.5).sum(), (now > 0.5).sum(), (before[talking] > 0.5).sum(), (now[talking] > 0.5).sum()]
        totals += row
        print(f"| {Path(path).name} | {n} | {row[1] / n:.3f} / {row[2] / n:.3f} | "
              f"{row[3] / talking.sum():.3f} / {row[4] / talking.sum():.3f} |")
    print(f"| all | {int(totals[0])} | {totals[1] / totals[0]:.3f} / {totals[2] / totals[0]:.3f} | "
          f"{int(totals[3])} / {int(totals[4])} frames |")


def on_music(music_dir: str, speech_wav: str) -> None:
    speech = decode_audio(Path(speech_wav)).mono16k
    s1, s2 = speech[: 5 * RATE], speech[5 * RATE: 10 * RATE]
    bed_speech = speech[10 * RATE: 20 * RATE]
    print("| music | rested over the music alone, before / now | speech frames rested now, not before | over speech "
          "on a bed 10 dB under it, now | predicted opening over the music alone: mean (sd); over speech |")
    print("| --- | --- | --- | --- | --- |")
    for path in _music(music_dir):
        music = decode_audio(path).mono16k
        music = np.tile(music, int(np.ceil(10 * RATE / len(music))))
        gap = music[: 6 * RATE] * (np.std(s1) / max(np.std(music[: 6 * RATE]), 1e-9))
        bed = music[: len(bed_speech)] * (np.std(bed_speech) / max(np.std(music[: len(bed_speech)]), 1e-9)) / 10 ** 0.5
        track = np.concatenate([s1, gap, s2, bed_speech + bed]).astype(np.float32)
        n = int(len(track) / RATE * FPS)
        before, now = weights(track, RATE, FPS, n)
        frame = lambda sec: int(sec * FPS)  # noqa: E731
        music_part = slice(frame(5.5), frame(10.5))  # inside the gap, clear of the easing at its edges
        speech_part = np.r_[frame(0.5):frame(4.5), frame(11.5):frame(15.5)]
        bed_part = slice(frame(16.5), frame(25.5))
        feats = af.compute_features("whisper", af.load_front_end("whisper", None), track, FPS, n, 80)
        opening = predict_opening(feats, "whisper")
        print(f"| {path.name} | {(before[music_part] > 0.5).mean():.2f} / {(now[music_part] > 0.5).mean():.2f} | "
              f"{((now[speech_part] > 0.5) & (before[speech_part] <= 0.5)).mean():.2f} | "
              f"{(now[bed_part] > 0.5).mean():.2f} | {opening[music_part].mean():.2f} ({opening[music_part].std():.2f}); "
              f"{opening[speech_part].mean():.2f} ({opening[speech_part].std():.2f}) |")


if __name__ == "__main__":
    on_windows(sys.argv[1], sys.argv[2], sys.argv[3:])
    on_music(sys.argv[1], sys.argv[2])
    on_datasets(sys.argv[3:])
