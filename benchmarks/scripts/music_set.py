"""Music without a voice, to measure what the lips do over it (`voice_rest.py`): four pieces of music21's corpus
and four generated band patterns (drums, bass and chords; alone, or under a saxophone, flute or synth lead),
rendered by FluidSynth through the FluidR3 General MIDI sound font at 16 kHz.

    python benchmarks/scripts/music_set.py OUT_DIR

Needs music21 and mido (PyPI; not the project's dependencies) and Debian's `fluidsynth` and `fluid-soundfont-gm`.
The set measured in `benchmarks/voice_activity_cpu.md` also held pygame 2.6.1's two example loops
(`pygame/examples/data/house_lo.wav`, `secosmic_lo.wav`, from its wheel): recorded music, not rendered.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path

import mido
from music21 import corpus

SOUND_FONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PIECES = {"bach": ("bach", 5), "beethoven": ("beethoven", 3), "joplin": ("joplin", 0), "mozart": ("mozart", 0)}
LEADS = {"pop_band": None, "pop_sax_lead": 65, "pop_flute_lead": 73, "pop_synth_lead": 81}  # GM programs
CHORDS = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]
BARS = 12
BEAT = 480  # ticks


def band(path: Path, lead_program: int | None, seed: int) -> None:
    """A MIDI file of BARS bars at 110 bpm: drums, bass on each beat, a chord a bar, and a random lead."""
    rng = random.Random(seed)
    mid = mido.MidiFile(ticks_per_beat=BEAT)
    drums, bass, keys, lead = [], [], [], []
    for b in range(BARS):
        bar, chord = b * 4 * BEAT, CHORDS[b % 4]
        for beat in range(4):
            t = bar + beat * BEAT
            drums += [(t, 42, 70), (t + BEAT // 2, 42, 50), (t, 36 if beat % 2 == 0 else 38, 100)]
            bass.append((t, chord[0] - 24, 90, 400))
        keys += [(bar, n, 60, 1900) for n in chord]
        t = bar
        while lead_program is not None and t < bar + 4 * BEAT:
            length = rng.choice([240, 240, 480, 720])
            lead.append((t, rng.choice(chord) + 12 + rng.choice([0, 2, -1, 0]), 85, length - 20))
            t += length
    parts = [(9, None, [(t, n, v, 100) for t, n, v in drums]), (0, 33, bass), (1, 4, keys)]
    if lead_program is not None:
        parts.append((2, lead_program, lead))
    for channel, program, notes in parts:
        track = mido.MidiTrack()
        mid.tracks.append(track)
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(110)))
        if program is not None:
            track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        events = sorted([(t, "note_on", n, v) for t, n, v, _ in notes] + [(t + d, "note_off", n, 0) for t, n, _, d in notes])
        now = 0
        for t, kind, note, velocity in events:
            track.append(mido.Message(kind, channel=channel, note=note, velocity=velocity, time=t - now))
            now = t
    mid.save(path)


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        midi = {}
        for name, (composer, k) in PIECES.items():
            midi[name] = Path(tmp) / f"{name}.mid"
            corpus.parse(corpus.getComposer(composer)[k]).write("midi", fp=midi[name])
        for seed, (name, program) in enumerate(LEADS.items()):
            midi[name] = Path(tmp) / f"{name}.mid"
            band(midi[name], program, seed)
        for name, path in midi.items():
            subprocess.run(["fluidsynth", "-ni", "-q", "-F", str(out / f"{name}.wav"), "-r", "16000", "-g", "0.8",
                            SOUND_FONT, str(path)], check=True, capture_output=True)
            print(out / f"{name}.wav")


if __name__ == "__main__":
    main(sys.argv[1])
