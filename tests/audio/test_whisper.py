"""The Whisper front end: the CTranslate2 reader, the rebuild into our encoder and its parity with transformers'
WhisperEncoder (a tiny random one and the packaged weights), local directories and their refusals, long audio in
windows, the short context."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from instag.audio import features as af
from instag.audio import whisper
from instag.audio.ct2 import read_ct2_variables
from instag.audio.whisper_encoder import EncoderShape, WhisperEncoderNet
from instag.audio.whisper_mel import mel_filters
from instag.errors import InputError

SR = whisper.SAMPLE_RATE
# Our encoder against transformers' on the same weights. Both run the attention through torch's SDPA and agreed
# exactly with torch 2.13 on the CPU; the margin is for other torch versions and kernels. States are O(1).
PARITY = {"rtol": 1e-4, "atol": 1e-4}


def speechlike(seconds: float, seed: int) -> np.ndarray:
    from instag.audio.synthetic_speech import DUB_VOICE, synthesize

    return synthesize(seconds, DUB_VOICE, seed).samples.astype(np.float32)


def _ct2_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path, spec: str, variables: dict[str, np.ndarray], version: int = 6) -> None:
    """A model.bin in CTranslate2's binary layout (what the packaged weights are)."""
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
           np.dtype(np.float16): 4}
    out = [struct.pack("<I", version), _ct2_string(spec), struct.pack("<I", 1), struct.pack("<I", len(variables))]
    for name, a in variables.items():
        out += [_ct2_string(name), struct.pack("<B", a.ndim), *(struct.pack("<I", d) for d in a.shape),
                struct.pack("<B", ids[a.dtype]), struct.pack("<I", a.nbytes), a.tobytes()]
    out.append(struct.pack("<I", 0))  # no aliases
    path.write_bytes(b"".join(out))


TINY = EncoderShape(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=24, num_mel_bins=80,
                    max_source_positions=whisper.WINDOW_TOKENS)


def transformers_encoder(shape: EncoderShape) -> torch.nn.Module:
    """transformers' own WhisperEncoder of `shape`, the reference ours is held to."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder(WhisperConfig(**vars(shape))).eval()


def transformers_states(encoder: torch.nn.Module, mel: torch.Tensor, layer: int) -> torch.Tensor:
    """[F/2, D]: transformers' hidden_states[layer] of `mel` [1, n_mels, 3000], through the norm that reads them
    (transformers' last hidden state has been through the final norm already)."""
    with torch.inference_mode():
        hidden = encoder(mel, output_hidden_states=True).hidden_states[layer]
        return (hidden if layer == len(encoder.layers) else encoder.layers[layer].self_attn_layer_norm(hidden))[0]


def as_ct2(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, np.ndarray]:
    """A WhisperEncoder state dict in CTranslate2's WhisperSpec naming (q, k, v fused; k's bias zero)."""
    s = {k: v.numpy().astype(np.float16) for k, v in state.items()}
    out = {"encoder/conv1/weight": s["conv1.weight"], "encoder/conv1/bias": s["conv1.bias"],
           "encoder/conv2/weight": s["conv2.weight"], "encoder/conv2/bias": s["conv2.bias"],
           "encoder/position_encodings/encodings": s["embed_positions.weight"],
           "encoder/layer_norm/gamma": s["layer_norm.weight"], "encoder/layer_norm/beta": s["layer_norm.bias"],
           "decoder/embeddings/weight": np.ones((3, 4), np.float16)}
    for i in range(n_layers):
        a, p = f"layers.{i}.", f"encoder/layer_{i}/"
        k_b = np.zeros_like(s[a + "self_attn.q_proj.bias"])
        out |= {
            p + "self_attention/linear_0/weight": np.concatenate([s[a + f"self_attn.{x}_proj.weight"] for x in "qkv"]),
            p + "self_attention/linear_0/bias": np.concatenate([s[a + "self_attn.q_proj.bias"], k_b,
                                                                s[a + "self_attn.v_proj.bias"]]),
            p + "self_attention/linear_1/weight": s[a + "self_attn.out_proj.weight"],
            p + "self_attention/linear_1/bias": s[a + "self_attn.out_proj.bias"],
            p + "self_attention/layer_norm/gamma": s[a + "self_attn_layer_norm.weight"],
            p + "self_attention/layer_norm/beta": s[a + "self_attn_layer_norm.bias"],
            p + "ffn/linear_0/weight": s[a + "fc1.weight"], p + "ffn/linear_0/bias": s[a + "fc1.bias"],
            p + "ffn/linear_1/weight": s[a + "fc2.weight"], p + "ffn/linear_1/bias": s[a + "fc2.bias"],
            p + "ffn/layer_norm/gamma": s[a + "final_layer_norm.weight"],
            p + "ffn/layer_norm/beta": s[a + "final_layer_norm.bias"],
        }
    return out


def test_ct2_reader_round_trip_and_split_parts(tmp_path):
    v = {"encoder/a": np.arange(6, dtype=np.float16).reshape(2, 3), "decoder/b": np.array([7], np.int32),
         "encoder/scalar": np.array(3, np.int8)}
    write_ct2(tmp_path / "m.bin", "WhisperSpec", v)
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "p1").write_bytes(data[:37])
    (tmp_path / "p2").write_bytes(data[37:])
    spec, got = read_ct2_variables([tmp_path / "p1", tmp_path / "p2"], lambda n: n.startswith("encoder/"))
    assert spec == "WhisperSpec" and set(got) == {"encoder/a", "encoder/scalar"}
    np.testing.assert_array_equal(got["encoder/a"], v["encoder/a"])
    assert got["encoder/a"].dtype == np.float16 and got["encoder/scalar"].shape == ()


def test_ct2_reader_refuses_truncated_and_unknown_versions(tmp_path):
    write_ct2(tmp_path / "m.bin", "WhisperSpec", {"encoder/a": np.zeros((4, 4), np.float32)})
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-20])
    with pytest.raises(InputError, match="truncated"):
        read_ct2_variables([tmp_path / "cut.bin"], lambda n: True)
    write_ct2(tmp_path / "v5.bin", "WhisperSpec", {}, version=5)
    with pytest.raises(InputError, match="binary version 5"):
        read_ct2_variables([tmp_path / "v5.bin"], lambda n: True)


@pytest.mark.parametrize("layer", [1, 2])
def test_rebuild_maps_ct2_names_onto_an_encoder_that_matches_transformers(layer):
    torch.manual_seed(0)
    original = transformers_encoder(TINY)
    # float16 round trip first, as the packaged weights are stored
    state = {k: v.half().float() for k, v in original.state_dict().items()}
    original.load_state_dict(state)
    rebuilt = whisper._rebuild_state(as_ct2(state, TINY.encoder_layers), TINY.encoder_layers)
    encoder = WhisperEncoderNet(TINY)
    whisper._load_strict(encoder, {k: torch.from_numpy(a.astype(np.float32)) for k, a in rebuilt.items()}, "test")
    assert encoder.state_dict().keys() == original.state_dict().keys()
    mel = torch.randn(1, 80, 3000)
    front = whisper.WhisperFrontEnd(encoder.eval(), mel_filters(80, SR), "test", layer=layer)
    torch.testing.assert_close(whisper.encoder_states(front, mel), transformers_states(original, mel, layer), **PARITY)


def test_rebuild_refuses_a_key_bias():
    v = as_ct2(WhisperEncoderNet(TINY).state_dict(), 2)
    v["encoder/layer_1/self_attention/linear_0/bias"][20] = 1.0  # inside the key part (16..31)
    with pytest.raises(InputError, match="key projection has a bias"):
        whisper._rebuild_state(v, 2)


@pytest.fixture(scope="module")
def packaged() -> whisper.WhisperFrontEnd:
    return whisper.load_whisper()


@pytest.mark.parametrize("layer", [whisper.DEFAULT_LAYER, 6])
def test_packaged_weights_match_transformers_encoder(packaged, layer):
    """Strict load, the pinned hash, and our encoder's states equal to transformers' WhisperEncoder's own hidden
    states on the same weights, on speech-like audio."""
    assert packaged.source.startswith("packaged") and packaged.layer == whisper.DEFAULT_LAYER
    reference = transformers_encoder(whisper.BASE_SHAPE)
    reference.load_state_dict(packaged.encoder.state_dict(), strict=True)
    mel = whisper.log_mel(packaged, speechlike(3.0, seed=0), pad_to_window=True)
    assert mel.shape == (1, 80, 3000)
    front = whisper.WhisperFrontEnd(packaged.encoder, packaged.filters, packaged.source, layer=layer)
    torch.testing.assert_close(whisper.encoder_states(front, mel), transformers_states(reference, mel, layer), **PARITY)


@pytest.mark.parametrize("seconds", [0.05, 3.0, 31.0])
def test_log_mel_matches_transformers_feature_extractor(packaged, seconds):
    """Our log-mel equals transformers' WhisperFeatureExtractor's, padded to the 30 s window (a shorter and a
    longer file) and in the short-context mode (no padding)."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=SR, hop_length=160, chunk_length=30, n_fft=400)
    audio = speechlike(seconds, seed=1)
    want = extractor(audio, sampling_rate=SR, return_tensors="np").input_features
    torch.testing.assert_close(whisper.log_mel(packaged, audio, pad_to_window=True), torch.from_numpy(want),
                               rtol=1e-5, atol=1e-5)
    if seconds <= 30:
        n = max(len(audio) // whisper.TOKEN_SAMPLES, 1) * whisper.TOKEN_SAMPLES
        clip = np.pad(audio[:n], (0, n - min(len(audio), n)))
        want = extractor(clip, sampling_rate=SR, return_tensors="np", padding="do_not_pad",
                         truncation=False).input_features[..., : n // 160]
        got = whisper.log_mel(packaged, audio, pad_to_window=False)
        assert got.shape[-1] == 2 * (len(audio) // whisper.TOKEN_SAMPLES or 1)
        torch.testing.assert_close(got, torch.from_numpy(want), rtol=1e-5, atol=1e-5)


def test_mel_filters_match_transformers_slaney_bank():
    from transformers.audio_utils import mel_filter_bank

    want = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                           sampling_rate=SR, norm="slaney", mel_scale="slaney")
    torch.testing.assert_close(mel_filters(80, SR), torch.from_numpy(want.astype(np.float32)), rtol=1e-5, atol=1e-7)


def test_packaged_weights_refused_when_altered(monkeypatch):
    monkeypatch.setattr(whisper, "PACKAGED_SHA256", "0" * 64)
    with pytest.raises(InputError, match="not the pinned"):
        whisper.load_whisper()



# Whisper's absolute positions give each state a per-channel offset that depends on where its window starts, so
# the same stretch encoded alone differs from a long file's states by offsets (cosine of whole state vectors only
# about 0.5 for layer 3), while each channel's course over time, what the lips are read from, agrees. Measured
# (middle 10 s of 30 s stretches): median per-channel correlation 0.98 on real speech (MuseTalk's English file),
# 0.94-0.97 on this synthetic speech; a ridge lip predictor fitted on the corpus gives openings that correlate
# 0.96-0.996 between the two.
LONG_AUDIO_CHANNEL_CORRELATION = 0.9


def test_long_audio_middle_matches_the_stretch_encoded_alone(packaged):
    audio = speechlike(70.0, seed=1)
    full = whisper.encode(packaged, audio)
    assert full.shape == (3500, packaged.width) and np.isfinite(full).all()
    start = int(27.3 * 50)
    alone = whisper.encode(packaged, audio[start * whisper.TOKEN_SAMPLES : (start + 1500) * whisper.TOKEN_SAMPLES])
    mid = slice(500, 1000)  # the middle 10 s of the stretch, away from both of its edges
    a, b = full[start:start + 1500][mid], alone[mid]
    a, b = a - a.mean(0), b - b.mean(0)
    per_channel = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    assert np.median(per_channel) > LONG_AUDIO_CHANNEL_CORRELATION
    # no seam: where windows meet, consecutive states differ no more than they do anywhere
    steps = np.linalg.norm(np.diff(full, axis=0), axis=1)
    for boundary in (1000, 1500, 2000, 2500):
        assert steps[boundary - 3 : boundary + 3].max() < np.percentile(steps, 99.5)


def test_short_context_states(packaged):
    audio = speechlike(4.0, seed=2)
    recent = whisper.encode_recent(packaged, audio)
    assert recent.shape == (200, packaged.width) and np.isfinite(recent).all()
    with pytest.raises(ValueError, match="at most 30 s"):
        whisper.encode_recent(packaged, np.zeros(31 * SR, np.float32))


def test_whisper_features_are_frame_aligned(packaged):
    fps, n = 25.0, 100
    feats = af.whisper_features(packaged, speechlike(4.0, seed=3), fps, n)
    assert feats.shape == (n, af.MODEL_SUBFRAMES, 512) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.std(axis=0).mean() > 0


def test_local_directory_safetensors_only(tmp_path):
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(**vars(TINY), decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=8,
                        vocab_size=64, max_target_positions=8, pad_token_id=0, bos_token_id=1, eos_token_id=1,
                        decoder_start_token_id=1)
    model = WhisperModel(cfg)
    model.save_pretrained(tmp_path / "ok", safe_serialization=True)
    front = whisper.load_whisper(tmp_path / "ok", layer=2)
    torch.testing.assert_close(front.encoder.state_dict()["layers.1.fc1.weight"],
                               model.encoder.state_dict()["layers.1.fc1.weight"])
    with pytest.raises(InputError, match="layers 1..2"):
        whisper.load_whisper(tmp_path / "ok", layer=3)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(InputError, match="pytorch_model.bin is a pickle, which is never loaded"):
        whisper.load_whisper(pickled)

    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "config.json").write_text('{"model_type": "hubert"}')
    with pytest.raises(InputError, match="'hubert' model, not whisper"):
        whisper.load_whisper(tmp_path / "hub")
    with pytest.raises(InputError, match="no config.json"):
        whisper.load_whisper(tmp_path / "missing")
