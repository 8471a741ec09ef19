"""What sound a live frame hears (`instag.audio.live_context`): the span of a context, the hop's shared contexts and
a clip read as a stream reads it."""

from __future__ import annotations

import numpy as np

from instag.audio import live_context as lc
from instag.audio.whisper import TOKEN_SAMPLES


def test_a_context_ends_with_the_look_ahead_and_neighbours_share_it():
    assert [lc.context_end(k, 2, 1) for k in range(4)] == [2, 3, 4, 5]
    assert [lc.context_end(k, 2, 2) for k in range(4)] == [2, 4, 4, 6]  # frames 1 and 2 share one pass
    assert lc.context_frames(25.0, 8, 2, 2) == 25  # a second
    assert lc.context_frames(25.0, 24, 2, 2) == 27  # at least what a frame's windows read


def test_a_whisper_context_is_whole_states_ending_where_the_frame_ends():
    for last in (0, 7, 30):
        end, n, start_s = lc.context_span("whisper", last, 25, 25.0)
        assert end == lc.frame_end(last, 25.0) == (last + 1) * 640
        assert n % TOKEN_SAMPLES == 0 and n >= 25 * 640 and n - 25 * 640 < TOKEN_SAMPLES
        assert np.isclose(start_s, (n - 25 * 640) / lc.RATE)  # context frame 0 starts where the 25 frames do
    end, n, start_s = lc.context_span("mel", 30, 25, 25.0)
    assert (end, n, start_s) == (31 * 640, 25 * 640, 0.0)


def test_a_clip_reads_zeros_outside_it_as_a_stream_does_before_its_start():
    audio = np.arange(1, 11, dtype=np.float32)
    assert lc.clip_window(audio, 3, 5).tolist() == [0, 0, 1, 2, 3]
    assert lc.clip_window(audio, 12, 4).tolist() == [9, 10, 0, 0]
    assert lc.clip_window(audio, 7, 3).tolist() == [5, 6, 7]
