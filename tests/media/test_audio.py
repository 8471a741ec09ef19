"""Decoding hostile audio: long silence that compresses to almost nothing (a decompression bomb), with and without
its length in the header, non-finite samples, and paths that are not regular files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
from hostile import peak_rss_growth, silent_flac

from instag.errors import InputError
from instag.media.audio import AudioTooLong, decode_audio


@pytest.mark.parametrize("header", [True, False])
def test_long_audio_is_refused_before_it_is_all_decoded(tmp_path, header):
    bomb = silent_flac(tmp_path / "bomb.flac", 3600, header=header)
    assert bomb.stat().st_size < 64 << 10
    err, grown = peak_rss_growth(lambda: decode_audio(bomb, max_seconds=60))
    assert isinstance(err, AudioTooLong) and isinstance(err, InputError), err
    assert str(bomb) in str(err) and "60 s" in str(err)
    # Decoding it all took ~1 GB (an hour at 8 kHz kept, and again at 16 kHz); the limit bounds it.
    assert grown < 150 << 20, grown


def test_audio_within_the_limit_decodes(tmp_path):
    ok = silent_flac(tmp_path / "ok.flac", 5, header=False)
    audio = decode_audio(ok, max_seconds=60)
    assert abs(audio.duration_s - 5) < 0.01 and audio.mono16k.shape[0] == 5 * 16000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_one_clear_error(tmp_path, bad):
    x = np.zeros(8000, np.float32)
    x[100] = bad
    path = tmp_path / "nan.wav"
    soundfile.write(path, x, 8000, subtype="FLOAT")
    with pytest.raises(InputError, match="non-finite") as exc:
        decode_audio(path)
    assert str(path) in str(exc.value)


def test_paths_that_are_not_regular_files_are_named_for_what_they_are(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        decode_audio(tmp_path)
    fifo = tmp_path / "line.wav"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        decode_audio(fifo)  # opening a FIFO would wait for a writer forever
    with pytest.raises(InputError, match="no such file"):
        decode_audio(tmp_path / "missing.wav")
