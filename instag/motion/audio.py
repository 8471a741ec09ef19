"""Audio nets: `AudioEncoder` (one video frame's window of features → code), `AudioAttention` (a code smoothed
over neighbouring frames, so mouth motion does not jitter with frame-level feature noise) and `LipReadout` (a
linear map from the features around a frame to its lip shape, fitted in closed form)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from instag.config.model import AudioConfig

LEAK = 0.02  # LeakyReLU slope: keeps gradients alive for the many near-silent (negative log-mel) inputs
# Frames either side of a frame that `LipReadout` reads (benchmarks/lips_cpu.md: the ridge's context).
READOUT_CONTEXT = 2


class AudioEncoder(nn.Module):
    """Strided 1D convolutions over time halve the window until one step is left, then a linear head."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_down = max(math.ceil(math.log2(cfg.window)), 1)
        layers: list[nn.Module] = []
        channels = cfg.feature_dim
        for _ in range(n_down):
            layers += [
                nn.Conv1d(channels, cfg.hidden_dim, kernel_size=3, stride=2, padding=1),
                nn.LeakyReLU(LEAK),
            ]
            channels = cfg.hidden_dim
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden_dim, cfg.hidden_dim),
            nn.LeakyReLU(LEAK),
            nn.Linear(cfg.hidden_dim, cfg.code_dim),
        )

    def forward(self, windows: Tensor) -> Tensor:
        """windows: [B, window, feature_dim] → codes [B, code_dim]."""
        if windows.dim() != 3 or windows.shape[1:] != (self.cfg.window, self.cfg.feature_dim):
            raise ValueError(
                f"audio windows must be [B, {self.cfg.window}, {self.cfg.feature_dim}], got {list(windows.shape)}"
            )
        x = (windows - self.cfg.feature_shift) / self.cfg.feature_scale
        h = self.convs(x.transpose(1, 2))  # [B, hidden, ≥1]
        return self.head(h.mean(dim=-1))


class AudioAttention(nn.Module):
    """Softmax weights over `smooth_window` consecutive codes, predicted from the codes themselves."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hidden = cfg.attention_hidden
        # 1D convolutions along the sequence reduce each frame's code to one score in context of its neighbours.
        self.scores = nn.Sequential(
            nn.Conv1d(cfg.code_dim, hidden, kernel_size=3, padding=1),
            nn.LeakyReLU(LEAK),
            nn.Conv1d(hidden, hidden // 2, kernel_size=3, padding=1),
            nn.LeakyReLU(LEAK),
            nn.Conv1d(hidden // 2, 1, kernel_size=3, padding=1),
        )
        self.mix = nn.Linear(cfg.smooth_window, cfg.smooth_window)

    def forward(self, codes: Tensor) -> Tensor:
        """codes: [B, smooth_window, code_dim] (the frame in the middle) → smoothed codes [B, code_dim]."""
        if codes.dim() != 3 or codes.shape[1:] != (self.cfg.smooth_window, self.cfg.code_dim):
            raise ValueError(
                f"codes must be [B, {self.cfg.smooth_window}, {self.cfg.code_dim}], got {list(codes.shape)}"
            )
        scores = self.scores(codes.transpose(1, 2)).squeeze(1)  # [B, S]
        weights = torch.softmax(self.mix(scores), dim=-1)  # [B, S]
        return (weights.unsqueeze(-1) * codes).sum(dim=1)


class LipReadout(nn.Module):
    """Lip shape [C] as a linear map of the features of a frame and READOUT_CONTEXT frames either side (fewer
    where the smoothing window is narrower), each frame's two feature steps nearest its instant averaged, inputs
    standardised: a ridge regression, fitted in closed form over every clip there is
    (`instag.train.lips.fit_lip_readout`). Its weights are buffers, not parameters: no optimiser moves them.
    Until fitted it takes no part (`fitted` is 0)."""

    def __init__(self, cfg: AudioConfig, n_out: int) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.window < 2:
            raise ValueError(f"a lip read-out needs audio.window >= 2, got {cfg.window}")
        # The neighbours it reads are inside the smoothing window (frames index − S/2 … index + S/2 − 1).
        self.context = min(READOUT_CONTEXT, (cfg.smooth_window - 1) // 2)
        n_in = (2 * self.context + 1) * cfg.feature_dim
        self.register_buffer("in_mean", torch.zeros(n_in))
        self.register_buffer("in_scale", torch.ones(n_in))
        self.register_buffer("weight", torch.zeros(n_in, n_out))
        self.register_buffer("bias", torch.zeros(n_out))
        self.register_buffer("fitted", torch.zeros(()))

    def inputs(self, windows: Tensor) -> Tensor:
        """windows: [B, smooth_window, window, feature_dim] (`frame_audio_windows` of B frames) → the read-out's
        inputs [B, (2·context + 1)·feature_dim], unstandardised."""
        s, w, c = self.cfg.smooth_window, self.cfg.window, self.context
        # Window j is centred on frame index − s/2 + j; its two steps nearest that frame's instant sit mid-window.
        frames = windows[:, s // 2 - c: s // 2 + c + 1, w // 2 - 1: w // 2 + 1]
        return frames.mean(dim=2).flatten(1)

    def forward(self, windows: Tensor) -> Tensor:
        """windows: [B, smooth_window, window, feature_dim] → lip shape [B, C]."""
        return self.forward_inputs(self.inputs(windows))

    def forward_inputs(self, inputs: Tensor) -> Tensor:
        """The lip shape [B, C] of unstandardised inputs [B, I] (`inputs`)."""
        return ((inputs - self.in_mean) / self.in_scale) @ self.weight + self.bias


class LiveLipReadout(LipReadout):
    """The read-out of the live mode (`instag.audio.live_context`), fitted on its windows
    (`instag.train.lips.fit_live_readout`), and `gain` [C]: how much more widely the corpus's lip shapes predicted
    from whole files spread than those predicted live, by which a person's live lip shape is scaled about their
    calibration's bias (`MotionModel.predicted_lips`), so that the calibration, measured on file predictions,
    opens the live mouth as wide as a dub's."""

    def __init__(self, cfg: AudioConfig, n_out: int) -> None:
        super().__init__(cfg, n_out)
        self.register_buffer("gain", torch.ones(n_out))


def frame_audio_windows(features: Tensor, index: int, cfg: AudioConfig) -> Tensor:
    """The encoder inputs for video frame `index`: features [T, K, D] (K steps per frame, as `instag.audio`
    writes them) → [smooth_window, window, D], one window per neighbouring frame (frames index − S/2 … index +
    S/2 − 1), each `window` steps centred on its frame. Frames beyond the clip repeat the first or last one.
    """
    t, k, d = features.shape
    frames_per_window = math.ceil(cfg.window / k) + 1  # one spare frame so the window can be centred
    s = cfg.smooth_window
    centres = torch.arange(s) - s // 2 + index  # [S]
    offsets = torch.arange(frames_per_window) - frames_per_window // 2  # [F]
    frames = (centres[:, None] + offsets[None, :]).clamp(0, t - 1)  # [S, F]
    steps = features[frames].reshape(s, frames_per_window * k, d)  # [S, F*K, D]
    # Centre of the frame's own steps in the flattened run, then `window` steps around it.
    middle = (frames_per_window // 2) * k + k // 2
    start = middle - cfg.window // 2
    return steps[:, start : start + cfg.window]
