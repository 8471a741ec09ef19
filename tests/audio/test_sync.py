"""The sound-to-picture offset: the window and the wider search, estimate on the training frames only, and the audio
shift."""

import numpy as np
import pytest

from instag.audio import sync


def test_candidate_lags_follow_the_detectability_window():
    assert sync.candidate_lags(25.0) == [-1, 0, 1, 2, 3]  # 45 ms early … 125 ms late
    assert sync.candidate_lags(30.0) == [-1, 0, 1, 2, 3]
    assert sync.candidate_lags(50.0) == [-2, -1, 0, 1, 2, 3, 4, 5, 6]
    assert sync.search_lags(25.0) == list(range(-12, 13))  # half a second either way
    assert sync.search_lags(30.0) == list(range(-15, 16))


def _speech_like(n: int, seed: int) -> np.ndarray:
    """A smooth random opening [n] (syllable-rate wiggles)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n + 20)
    return np.convolve(x, np.hanning(7), mode="same")[10 : 10 + n]


@pytest.mark.parametrize("late", [-1, 0, 2, 3, -3, 5, 9])
def test_a_known_offset_is_found(late):
    n, fps = 300, 25.0
    tracked = _speech_like(n, 1)
    # The sound `late` frames behind the picture: what is said at t shows on the lips at t - late.
    predicted = np.roll(tracked, late) + 0.5 * np.random.default_rng(2).standard_normal(n)
    est = sync.estimate_lag(predicted, tracked, np.arange(n), fps)
    assert est.lag_frames == late
    assert set(est.correlations) == set(sync.search_lags(fps))
    assert est.correlations[late] > 0.5


def _curve(peak: int, height: float, width: float = 2.5) -> dict[int, float]:
    """Correlation by lag as a clip's looks: a bump of `height` at `peak`."""
    return {k: height * float(np.exp(-0.5 * ((k - peak) / width) ** 2)) for k in sync.search_lags(25.0)}


def test_outside_the_window_only_a_clear_strong_peak_is_taken():
    n, n_eff = 125, 40.0  # a 5 s clip's smooth opening: about a third of its frames are independent
    pick = lambda c: sync.pick_lag(c, 25.0, n_eff)  # noqa: E731
    assert pick(_curve(6, 0.6)) == 6 and pick(_curve(-4, 0.6)) == -4
    # Just outside the window, the window's edge is nearly as good: within OUTSIDE_MARGIN it is kept.
    assert pick(_curve(4, 0.6)) == 3
    # A rival bump far out must beat the one inside by the margin.
    near = _curve(1, 0.5)
    for gain, want in ((sync.OUTSIDE_MARGIN - 0.01, 1), (sync.OUTSIDE_MARGIN + 0.01, 8)):
        assert pick({k: max(v, _curve(8, 0.5 + gain)[k]) for k, v in near.items()}) == want
    # A peak out there that clears 2/√n but not OUTSIDE_Z standard errors of the smooth series is not taken.
    weak = _curve(8, 0.9 * sync.OUTSIDE_Z / np.sqrt(n_eff))
    assert max(weak.values()) > 2 / np.sqrt(n) and pick(weak) == 0
    assert sync.pick_lag(weak, 25.0, effective_frames=n) == 8  # as strong as that over independent frames
    # Inside the window too, the evidence is counted in independent pairs, not frames.
    faint = _curve(2, 0.25)
    assert 2 / np.sqrt(n) < faint[2] < 2 / np.sqrt(n_eff) and pick(faint) == 0
    assert sync.pick_lag(faint, 25.0, effective_frames=n) == 2
    # Still rising at the edge of the search: no peak, so the best inside the window (its edge) stands.
    assert pick(_curve(20, 0.95, width=12.0)) == 3
    # Correlations of the window alone (datasets written before the wider search) read as before.
    assert pick({k: v for k, v in _curve(2, 0.4).items() if k in sync.candidate_lags(25.0)}) == 2


def test_held_out_frames_do_not_steer_it():
    n, fps = 300, 25.0
    tracked = _speech_like(n, 3)
    predicted = np.concatenate([np.roll(tracked, 2)[:150], np.roll(tracked, -1)[150:]])  # test half says -1
    assert sync.estimate_lag(predicted, tracked, np.arange(150), fps).lag_frames == 2
    assert sync.estimate_lag(predicted, tracked, np.arange(150, n), fps).lag_frames == -1


def test_no_evidence_means_in_sync():
    n, fps = 200, 25.0
    tracked = _speech_like(n, 4)
    assert sync.estimate_lag(-tracked, tracked, np.arange(n), fps).lag_frames == 0
    assert sync.estimate_lag(np.zeros(n), tracked, np.arange(n), fps).lag_frames == 0
    # A faint relation (the synthetic demo speech: r <= 0.08 over 150 frames) is no evidence of an offset.
    weak = np.roll(tracked, 3) + 12.0 * np.random.default_rng(8).standard_normal(n)
    est = sync.estimate_lag(weak, tracked, np.arange(n), fps)
    assert 0 < max(est.correlations.values()) < 2 / np.sqrt(n) and est.lag_frames == 0
    with pytest.raises(ValueError):
        sync.estimate_lag(np.zeros(n - 1), tracked, np.arange(n - 1), fps)


def test_shift_audio_moves_the_samples_and_keeps_the_length():
    sr, fps = 16000, 25.0
    audio = np.arange(4000, dtype=np.float32)
    late = sync.shift_audio(audio, sr, 1, fps)  # one frame = 640 samples earlier
    assert late.shape == audio.shape and late[0] == 640 and late[-1] == 0 and late[4000 - 641] == 3999
    early = sync.shift_audio(audio, sr, -2, fps)
    assert early[:1280].sum() == 0 and early[1280] == 0 and early[1281] == 1 and early[-1] == 4000 - 1281
    assert np.array_equal(sync.shift_audio(audio, sr, 0, fps), audio)
    assert not sync.shift_audio(audio, sr, 10, fps).any()  # more than the clip: silence
