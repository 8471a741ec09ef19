"""Whisper's audio encoder in plain torch, with transformers' `WhisperEncoder` parameter names.

transformers' encoder computes the same thing (a parity test holds the two together), but importing its
`modeling_whisper` costs about 2 s of every dubbing job on the 2-core CPU (it pulls in sympy, scipy.optimize and
torch.distributed), which a 5 s dub cannot afford. This module imports torch alone. State dicts move between the
two unchanged.

The architecture is OpenAI's (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision"): two convolutions (the second with stride 2, one state per 20 ms), learnt absolute positions, and
pre-norm transformer layers with GELU feed-forward blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class EncoderShape:
    """The sizes that fix a Whisper encoder (transformers' config names)."""

    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    num_mel_bins: int
    max_source_positions: int


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} does not split into {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width, bias=False)  # Whisper's keys have no bias
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, D] → [B, T, D], every position attending to every other."""
        b, t, d = x.shape

        def split(y: Tensor) -> Tensor:  # [B, T, D] → [B, H, T, D/H]
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, shape: EncoderShape):
        super().__init__()
        self.self_attn = SelfAttention(shape.d_model, shape.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(shape.d_model)
        self.fc1 = nn.Linear(shape.d_model, shape.encoder_ffn_dim)
        self.fc2 = nn.Linear(shape.encoder_ffn_dim, shape.d_model)
        self.final_layer_norm = nn.LayerNorm(shape.d_model)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, D] → [B, T, D] (pre-norm residual blocks)."""
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoderNet(nn.Module):
    def __init__(self, shape: EncoderShape):
        super().__init__()
        self.shape = shape
        self.conv1 = nn.Conv1d(shape.num_mel_bins, shape.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(shape.d_model, shape.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(shape.max_source_positions, shape.d_model)
        self.layers = nn.ModuleList(EncoderLayer(shape) for _ in range(shape.encoder_layers))
        self.layer_norm = nn.LayerNorm(shape.d_model)

    def norm_after(self, layer: int) -> nn.LayerNorm:
        """The layer norm that reads the output of layer `layer` (1-based; the final norm after the last)."""
        return self.layer_norm if layer == len(self.layers) else self.layers[layer].self_attn_layer_norm

    def forward(self, mel: Tensor, layer: int | None = None) -> Tensor:
        """States [B, F/2, D] after `layer` layers (all when None) of log-mel `mel` [B, n_mels, F], F even and at
        most twice the positions, normalised as the next layer reads them: the residual stream carries a few
        channels hundreds of times larger than the rest, and that norm's learnt scales are what tame them.
        Positions 0..F/2 - 1 are used, so a short input is Whisper with a short audio context."""
        layer = len(self.layers) if layer is None else layer
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel))))  # [B, D, F/2]
        x = x.transpose(1, 2) + self.embed_positions.weight[: x.shape[-1]]
        for block in self.layers[:layer]:
            x = block(x)
        return self.norm_after(layer)(x)
