"""Audio features: frame alignment of log-mel, the transformers path with a tiny random HuBERT, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from instag.audio import features as af
from instag.errors import InputError

SR = 16000


def tone_bursts(seconds: float, fps: float, on_frames: range) -> np.ndarray:
    """Silence with a 440 Hz tone during the video frames `on_frames`."""
    audio = np.zeros(int(seconds * SR), np.float32)
    per = SR / fps
    t = np.arange(len(audio)) / SR
    for i in on_frames:
        a, b = int(i * per), int((i + 1) * per)
        audio[a:b] = 0.3 * np.sin(2 * np.pi * 440 * t[a:b])
    return audio


def test_mel_is_aligned_to_frames():
    fps, n = 25.0, 50
    audio = tone_bursts(2.0, fps, range(20, 30))
    mel = af.mel_features(audio, SR, fps, n)
    assert mel.shape == (n, af.MEL_SUBFRAMES, 80) and mel.dtype == np.float32
    loud = mel.max(axis=(1, 2))
    assert loud[21:29].min() > loud[:18].max() + 40  # tone frames stand far above silence (dB)
    assert loud[32:].max() < loud[21:29].min() - 40


def test_energy_envelope_follows_tone():
    fps, n = 30.0, 60
    env = af.energy_envelope(tone_bursts(2.0, fps, range(10, 20)), SR, fps, n)
    assert env.shape == (n,)
    assert env[11:19].min() > env[25:].max() + 30


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory):
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                       conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=16,
                       num_conv_pos_embedding_groups=2)
    path = tmp_path_factory.mktemp("hubert")
    HubertModel(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(path)
    return path


def test_hubert_from_local_dir(tiny_hubert):
    fps, n = 25.0, 40
    model = af.load_speech_model("hubert", tiny_hubert)
    feats = af.model_features(model, tone_bursts(1.6, fps, range(5, 15)), SR, fps, n)
    assert feats.shape == (n, af.MODEL_SUBFRAMES, 32) and np.isfinite(feats).all()
    assert feats.std(axis=0).mean() > 0


def test_hubert_through_preprocess_flags_refuses_wrong_kind(tiny_hubert):
    with pytest.raises(InputError, match="not the requested 'wav2vec2'"):
        af.load_speech_model("wav2vec2", tiny_hubert)


def test_missing_model_dir(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        af.load_speech_model("hubert", tmp_path / "none")
