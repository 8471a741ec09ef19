"""Whether anyone speaks (`instag.audio.voice`): Silero VAD per chunk and per video frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instag.audio.synthetic_speech import SAMPLE_VOICE, synthesize
from instag.audio.voice import CHUNK, RATE, VOICE_THRESHOLD, VoiceStream, voice_probability, voiced_frames
from instag.avatar.rest import quiet_frames, silent_frames, weights_over
from instag.media.audio import decode_audio

FPS = 25.0


def test_loading_the_detector_keeps_the_processs_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        voice_probability(np.zeros(RATE, np.float32))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_one_probability_per_chunk_and_one_flag_per_frame():
    voice = synthesize(3.0, SAMPLE_VOICE, seed=0).samples.astype(np.float32)
    p = voice_probability(voice)
    assert p.shape == (int(np.ceil(len(voice) / CHUNK)),) and p.min() >= 0 and p.max() <= 1
    assert p.max() > 0.9 and p[:5].max() < 0.05  # its syllables; its 0.3 s of silence before them
    frames = voiced_frames(voice, RATE, FPS, 80)
    assert frames.shape == (80,) and frames[10:60].mean() > 0.8
    assert not voiced_frames(voice[: RATE // 2], RATE, FPS, 80)[20:].any()  # past the audio's end nobody speaks
    assert voice_probability(np.zeros(0, np.float32)).shape == (0,)
    # the same sound, the same answer: the detector's state starts afresh on every track
    assert np.array_equal(voice_probability(voice), p)


@pytest.mark.parametrize("name", ["TMElyralab_MuseTalk_eng.wav", "yerfor_GeneFacePlusPlus_MacronSpeech.wav",
                                  "OpenTalker_SadTalker_chinese_news.wav", "yerfor_Real3DPortrait_Obama_5s.wav"])
def test_real_speech_in_any_language_is_never_rested_for_want_of_a_voice(real_data, name):
    """English, French, Mandarin: every quiet run of REST_AFTER_S is silent by loudness too."""
    _rests_only_in_silence(decode_audio(real_data / name).mono16k)


def _rests_only_in_silence(audio: np.ndarray) -> None:
    """Speech `audio` [N] at 16 kHz rests where loudness alone rests it, and through most of it not at all."""
    n = int(len(audio) / RATE * FPS)
    by_loudness = weights_over(silent_frames(audio, RATE, FPS, n), FPS)
    assert np.array_equal(weights_over(quiet_frames(audio, RATE, FPS, n), FPS), by_loudness)
    assert (by_loudness == 0).mean() > 0.8


def test_how_loud_a_track_was_recorded_does_not_decide_whether_anyone_speaks():
    voice = synthesize(3.0, SAMPLE_VOICE, seed=2).samples.astype(np.float32)
    frames = voiced_frames(voice, RATE, FPS, 75)
    assert frames[10:60].mean() > 0.8
    for gain in (0.001, 0.01, 0.1, 1.2):
        assert np.array_equal(voiced_frames(voice * gain, RATE, FPS, 75), frames), gain


@pytest.mark.parametrize("gain", [1.0, 0.1, 0.01])
def test_a_voice_over_a_livestreams_sound_is_heard_at_any_level(real_data, gain):
    """`KwaiVGI_LivePortrait_d12`, a man talking over a livestream's sound, recorded at full scale: as recorded no
    quiet run rests his lips for want of a voice; heard as recorded, 20 dB quieter, 103 of his 182 frames did."""
    clip = real_data.parent / "corpus" / "KwaiVGI_LivePortrait_d12.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not present (the corpus beside the real clips)")
    _rests_only_in_silence(decode_audio(clip).mono16k * gain)


def test_a_stream_decides_each_chunk_as_the_whole_track_does_and_says_nothing_of_what_it_lacks():
    voice = synthesize(3.0, SAMPLE_VOICE, seed=1).samples.astype(np.float32)
    sound = np.concatenate([np.zeros(RATE, np.float32), voice])
    whole = voice_probability(sound) > VOICE_THRESHOLD
    stream = VoiceStream(keep=60)
    rng = np.random.default_rng(0)
    at = 0
    while at < len(sound):  # pieces of any size, as the page's messages come
        step = int(rng.integers(1, 3000))
        stream.push(sound[at:at + step])
        at += step
    assert stream.chunks == len(sound) // CHUNK
    kept = range(stream.chunks - 60, stream.chunks)
    assert all(stream.voiceless(c * CHUNK, (c + 1) * CHUNK) == (not whole[c]) for c in kept)
    assert not stream.voiceless(0, CHUNK)  # dropped: not known any more
    assert not stream.voiceless(stream.chunks * CHUNK, len(sound))  # still filling: nothing decided in it
    # the chunk still filling at the head is left to later frames: the decided ones before it answer
    assert stream.voiceless((stream.chunks - 1) * CHUNK, len(sound)) == (not whole[stream.chunks - 1])
    assert not stream.voiceless(len(sound) - CHUNK, len(sound) - CHUNK)  # an empty span
    quiet = VoiceStream(keep=60)
    quiet.push(np.zeros(RATE, np.float32))
    assert quiet.voiceless(0, RATE // CHUNK * CHUNK)
