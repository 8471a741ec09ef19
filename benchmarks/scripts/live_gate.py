"""Does the live preview's silence gate tell speech from silence whatever the microphone's level and the room's noise?

    python benchmarks/scripts/live_gate.py SPEECH... [--seconds 15] [--json OUT.json]

Each speech file (its first SECONDS) is scaled so its voiced frames average LEVEL dBFS, framed by 3 s of nothing
before and after, and steady noise of NOISE dBFS (white, or pink: as much energy per octave, like a fan or a room)
laid under the whole. It is sent to a `LiveStream` in 10 ms chunks, as the page sends the microphone, and every
frame is judged as the preview judges it (`LiveStream.loud` over the smoothing's look-back of 4 frames and the
look-ahead, `LiveFeatures.voiced`) twice: with the stream's gate, and with the fixed GATE_DBFS gate it replaces.

- speech heard: the share of the file's voiced frames judged loud. Voiced: the clean file's speech-band energy
  within `audio.silence.SILENCE_DB` of its loudest (the rule a dub's pauses are read with). Also with the speech
  from the stream's first frame, no silence before it ("at once"): the noise floor is then learnt from speech;
- silence gated: the share of the frames of the 3 s after the speech, from its second 1.0 s on (the look-back and
  the noise floor have settled), judged quiet;
- rests: whether the last frame ends a silence long enough to rest the lips (`LiveStream.quiet`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from instag.audio.features import energy_envelope
from instag.audio.silence import silent_mask
from instag.avatar.rest import REST_AFTER_S
from instag.bench.record import header
from instag.media.audio import decode_audio
from instag.viewer import live
from instag.viewer.config import LIVE_LOOKAHEAD_FRAMES

FPS = 25.0
LOOK_BACK = 4  # the shipped avatars' smoothing window (8) halved, as `LiveFeatures.voiced` passes it
LOOK_AHEAD = LIVE_LOOKAHEAD_FRAMES
PAD_S = 3.0
CHUNK = 160  # 10 ms
LEVELS = (-45.0, -35.0, -25.0)
NOISES = (None, -65.0, -55.0, -45.0)


def noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise [n]: white, or pink (1/f power from 50 Hz up, shaped in the frequency domain: a microphone
    and the browser's capture pass nothing much lower, and 1/f power all the way down would make the level itself
    wander by many dB over seconds)."""
    x = rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(x)
        f = np.fft.rfftfreq(n, 1 / live.RATE)
        spec[f < 50.0] = 0
        spec[f >= 50.0] /= np.sqrt(f[f >= 50.0] / 50.0)
        x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x**2))


def judge(audio: np.ndarray, fixed: bool) -> tuple[np.ndarray, bool]:
    """Each frame judged loud [T − LOOK_AHEAD] (the last ones are never drawn), and whether the last one rests, by a
    LiveStream fed `audio` [N]."""
    stream = live.LiveStream(FPS)
    if fixed:
        stream.gate = lambda k: live.GATE_DBFS
    loud: list[bool] = []
    for i, start in enumerate(range(0, len(audio), CHUNK)):  # each frame judged once it can be drawn, as the preview
        stream.push(live.to_chunk(audio[start : start + CHUNK]), (i + 1) * CHUNK / live.RATE)
        loud += [stream.loud(k, LOOK_BACK, LOOK_AHEAD) for k in range(len(loud), stream.newest_frame() + 1 - LOOK_AHEAD)]
    rest = stream.quiet(len(loud) - 1, int(np.ceil(REST_AFTER_S * FPS)))
    return np.array(loud), rest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("speech", nargs="+", type=Path)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for path in args.speech:
        clean = decode_audio(path).mono16k[: int(args.seconds * live.RATE)].astype(np.float64)
        n_speech = int(len(clean) * FPS / live.RATE)
        voiced = ~silent_mask(energy_envelope(clean, live.RATE, FPS, n_speech))
        frame_rms = np.sqrt(np.mean(clean[: n_speech * 640].reshape(n_speech, 640) ** 2, axis=1))
        active = np.sqrt(np.mean(frame_rms[voiced] ** 2))
        pad = int(PAD_S * live.RATE)
        lead = int(PAD_S * FPS)
        for level in LEVELS:
            speech = np.concatenate([np.zeros(pad), clean * 10 ** (level / 20) / active, np.zeros(pad)])
            for kind in ("white", "pink"):
                for nl in NOISES:
                    if nl is not None and nl > level - 10:
                        continue
                    if nl is None and kind == "pink":
                        continue
                    audio = speech + (0 if nl is None else noise(len(speech), kind, rng) * 10 ** (nl / 20))
                    row = {"file": path.name, "level_dbfs": level, "noise": "none" if nl is None else kind,
                           "noise_dbfs": nl}
                    for name, fixed in (("adaptive", False), ("fixed", True)):
                        loud, rest = judge(audio.astype(np.float32), fixed)
                        tail = loud[lead + n_speech + int(FPS) : lead + n_speech + lead]
                        at_once, _ = judge(audio[pad:].astype(np.float32), fixed)  # talking from the first frame
                        row[name] = {"speech_heard": round(float(loud[lead : lead + n_speech][voiced].mean()), 3),
                                     "speech_heard_at_once": round(float(at_once[:n_speech][voiced].mean()), 3),
                                     "silence_gated": round(float(1 - tail.mean()), 3), "rests": bool(rest)}
                    rows.append(row)
                    print(f"{path.name[:28]:28s} speech {level:5.0f} {row['noise']:5s} {nl!s:>6}  "
                          + "  ".join(f"{k}: heard {row[k]['speech_heard']:.2f} (at once {row[k]['speech_heard_at_once']:.2f}) "
                                      f"gated {row[k]['silence_gated']:.2f} rests {row[k]['rests']!s:5}"
                                      for k in ("adaptive", "fixed")), flush=True)
    doc = {**header("live_gate"), "command": "python benchmarks/scripts/live_gate.py SPEECH...",
           "files": [str(p) for p in args.speech], "seconds": args.seconds, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
