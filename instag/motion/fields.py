"""Motion fields: per-point deformation of the canonical Gaussians from a frame's audio code and expression.

`MotionBranch` is one tri-plane-conditioned MLP. `UniversalMotionField` (UMF) holds the audio nets and two
branches: the face branch (Δμ, Δlog-scale, Δquaternion) and the mouth-interior branch (Δμ only, fed by the
face-mouth hook's code). `PersonalizedField` has the same two branches, smaller, and predicts one identity's
residual on top of the UMF during identity-free pre-training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instag.config.model import AudioConfig, MotionFieldConfig
from instag.kernels.hash_encode import TriplaneHashEncoder
from instag.motion.audio import (
    LEAK,
    AudioAttention,
    AudioEncoder,
    LipReadout,
    LiveLipReadout,
    frame_audio_windows,
)

FACE_OUT = 10  # Δμ (3) + Δlog-scale (3) + Δquaternion (4)
MOUTH_OUT = 3  # Δμ
# Output layers start this much smaller than PyTorch's default: the canonical Gaussians are rendered almost
# undeformed at first, yet every input already moves the output (so gradients reach all inputs).
OUTPUT_INIT_GAIN = 0.01
# Frames whose audio codes are computed at once over a whole clip: all its windows at once would take hundreds of
# MB (41 KB a frame at the quick sizes).
AUDIO_CODE_CHUNK = 256
# The articulation head's share of the live mode's lip shape, the live read-out's the rest. The head learnt from whole
# files' features and follows held-out people's lips worse than the live read-out on live features (r 0.60 against
# 0.64, four folds of 32 people); a quarter of it still helps (0.643), half less (0.636): benchmarks/preview_live_cpu.md.
LIVE_HEAD_WEIGHT = 0.25
# The UniversalMotionField modules a clip's file-mode lip shape reads (`clip_lips` without `live`).
FILE_LIP_MODULES = ("audio_encoder", "audio_smoother", "articulation", "lip_readout")


@dataclass
class FaceMotion:
    """Face-branch deformation of N points."""

    d_means: Tensor  # [N, 3]
    d_log_scales: Tensor  # [N, 3]
    d_quats: Tensor  # [N, 4]

    def __add__(self, other: FaceMotion) -> FaceMotion:
        return FaceMotion(
            self.d_means + other.d_means, self.d_log_scales + other.d_log_scales, self.d_quats + other.d_quats
        )


@dataclass
class PointTerms:
    """What a `MotionBranch` computes from the canonical positions alone. An avatar whose Gaussians no longer
    move in canonical space (rendering) computes them once instead of every frame."""

    base: Tensor  # [N, hidden] the first layer's response to the tri-plane features, bias included
    audio_attention: Tensor  # [N, audio_dim] region attention on the audio code, in (0, 1)
    expression_gate: Tensor | None  # [N, expression_dim] gate on the expression, in (0, 1); None without one


class MotionBranch(nn.Module):
    """Tri-plane features ⊕ region-attended audio ⊕ gated expression (⊕ an extra code) → MLP → out_dim.

    Region attention: each point weighs the audio code's channels by a sigmoid of its own tri-plane features,
    so lips respond to audio while the forehead can ignore it. The expression is gated the same way (eyelids
    follow blinks, cheeks need not).
    """

    def __init__(
        self,
        cfg: MotionFieldConfig,
        audio_dim: int,
        expression_dim: int,
        extra_dim: int,
        out_dim: int,
        backend: str,
    ) -> None:
        super().__init__()
        t = cfg.triplane
        self.encoder = TriplaneHashEncoder(
            t.n_levels, t.n_features, t.log2_table_size, t.base_resolution, t.max_resolution, t.bound, backend
        )
        feat = self.encoder.output_dim
        # The first layer's input columns: features, then each per-frame part that is present.
        self.input_dims = (feat, audio_dim) + ((expression_dim,) if expression_dim else ()) + (
            (extra_dim,) if extra_dim else ())
        self.extra_dim = extra_dim
        self.audio_attention = nn.Linear(feat, audio_dim)
        self.expression_gate = nn.Linear(feat, expression_dim) if expression_dim else None
        layers: list[nn.Module] = []
        width = feat + audio_dim + expression_dim + extra_dim
        for _ in range(cfg.n_layers):
            layers += [nn.Linear(width, cfg.hidden_dim), nn.LeakyReLU(LEAK)]
            width = cfg.hidden_dim
        out = nn.Linear(width, out_dim)
        with torch.no_grad():
            out.weight.mul_(OUTPUT_INIT_GAIN)
            out.bias.zero_()
        self.mlp = nn.Sequential(*layers, out)

    def point_terms(self, xyz: Tensor) -> PointTerms:
        """xyz: [N, 3] canonical positions → what the branch computes from the positions alone."""
        feat = self.encoder(xyz)
        first = self.mlp[0]
        return PointTerms(
            base=F.linear(feat, first.weight[:, : feat.shape[1]], first.bias),
            audio_attention=torch.sigmoid(self.audio_attention(feat)),
            expression_gate=None if self.expression_gate is None else torch.sigmoid(self.expression_gate(feat)),
        )

    def forward(
        self,
        points: Tensor | PointTerms,  # [N, 3] canonical positions, or their `point_terms`
        audio_code: Tensor,  # [audio_dim] this frame's smoothed audio code
        expression: Tensor | None = None,  # [expression_dim]
        extra: Tensor | None = None,  # [extra_dim], e.g. the hook's code
    ) -> Tensor:
        """→ [N, out_dim]: the MLP on features ⊕ attention · code ⊕ gate · expression ⊕ extra.

        The first layer is applied to its input's parts separately (the same sum): the feature part is in the
        point terms, and the per-frame parts fold the frame's vectors into the weights, [N, D] · [D, hidden].
        """
        terms = points if isinstance(points, PointTerms) else self.point_terms(points)
        # [hidden, D] blocks of the first layer's weight, one per input part; the feature block is in the terms
        cols = iter(self.mlp[0].weight.split(self.input_dims, dim=1)[1:])
        h = torch.addmm(terms.base, terms.audio_attention, audio_code.reshape(-1, 1) * next(cols).T)
        if terms.expression_gate is not None:
            if expression is None:
                raise ValueError("this branch is conditioned on an expression; none was given")
            h = torch.addmm(h, terms.expression_gate, expression.reshape(-1, 1) * next(cols).T)
        if self.extra_dim:
            if extra is None:
                raise ValueError("this branch takes an extra code; none was given")
            h = h + next(cols) @ extra.reshape(-1)
        return self.mlp[1:](h)


class _TwoBranchField(nn.Module):
    """Face branch (Δμ, Δs, Δq; audio + expression) and mouth branch (Δμ; audio + hook code)."""

    def __init__(
        self, cfg: MotionFieldConfig, audio_dim: int, expression_dim: int, hook_dim: int, backend: str
    ) -> None:
        super().__init__()
        self.face = MotionBranch(cfg, audio_dim, expression_dim, 0, FACE_OUT, backend)
        # The mouth interior moves with the jaw and lips, which the hook code summarises; blinks do not reach it.
        self.mouth = MotionBranch(cfg, audio_dim, 0, hook_dim, MOUTH_OUT, backend)

    def face_motion(
        self,
        xyz: Tensor | PointTerms,  # [N, 3], or the face branch's terms of them
        audio_code: Tensor,  # [audio_dim]
        expression: Tensor,  # [expression_dim]
    ) -> FaceMotion:
        out = self.face(xyz, audio_code, expression)
        return FaceMotion(out[:, :3], out[:, 3:6], out[:, 6:])

    def mouth_motion(
        self,
        xyz: Tensor | PointTerms,  # [M, 3], or the mouth branch's terms of them
        audio_code: Tensor,  # [audio_dim]
        hook_code: Tensor,  # [hook_dim]
    ) -> Tensor:
        """→ Δμ [M, 3]."""
        return self.mouth(xyz, audio_code, extra=hook_code)


class UniversalMotionField(_TwoBranchField):
    """The UMF: audio nets plus the face and mouth branches, shared by every identity."""

    def __init__(
        self,
        cfg: MotionFieldConfig,
        audio: AudioConfig,
        expression_dim: int,
        hook_dim: int,
        backend: str = "auto",
        articulation: bool = False,
        lip_coeffs: tuple[str, ...] = ("mouth_open",),
        lip_readout: bool = False,
        live_readout: bool = False,
    ) -> None:
        super().__init__(cfg, audio.code_dim, expression_dim + (len(lip_coeffs) if articulation else 0), hook_dim,
                         backend)
        self.audio_encoder = AudioEncoder(audio)
        self.audio_smoother = AudioAttention(audio)
        # The lip shape is linear in the code: the code itself must carry it, as a linear read-out of the speech
        # features does (benchmarks/lips_cpu.md: ridge regression across people).
        self.articulation = nn.Linear(audio.code_dim, len(lip_coeffs)) if articulation else None
        self.lip_readout = LipReadout(audio, len(lip_coeffs)) if articulation and lip_readout else None
        # The read-out fitted on live features (`audio.live_context`), for the preview's microphone mode.
        self.lip_readout_live = (LiveLipReadout(audio, len(lip_coeffs))
                                 if articulation and lip_readout and live_readout else None)

    def lip_shape(self, code: Tensor, windows: Tensor, live: bool = False) -> Tensor:
        """The predicted lip shape [B, C] (`ModelConfig.lip_coeffs`, standardised per person as
        `IdentityFrames.tracked_lips`) of B frames from their codes [B, code_dim] and the windows they were
        computed from [B, smooth_window, window, feature_dim]: the articulation head's, averaged with the fitted
        lip read-out's where there is one. `live`: the windows are the live mode's (`audio.live_context`); where
        the live read-out is fitted, it stands in for the read-out, weighted LIVE_HEAD_WEIGHT against the head
        (its `gain` is for the calibrated shape: `live_gain`)."""
        if self.articulation is None:
            raise ValueError("this UMF has no articulation head (model.articulation is off)")
        lips = self.articulation(code)
        if self.lip_readout is None:
            return lips
        # Blended by the `fitted` flags (exactly the head's, or exactly the mean) rather than branched on them:
        # reading a flag would wait for the device every frame.
        fitted = self.lip_readout.fitted
        if not live or self.lip_readout_live is None:
            return 0.5 * (lips + self.lip_readout(windows)) * fitted + lips * (1.0 - fitted)
        live_fitted = self.lip_readout_live.fitted
        readout = self.lip_readout_live(windows) * live_fitted + self.lip_readout(windows) * (1.0 - live_fitted)
        head = LIVE_HEAD_WEIGHT * live_fitted + 0.5 * (1.0 - live_fitted)
        return (head * lips + (1.0 - head) * readout) * fitted + lips * (1.0 - fitted)

    def live_gain(self) -> Tensor:
        """[C]: how much wider a person's live lip shape, centred on their calibration, is scaled
        (`MotionModel.predicted_lips`): the live read-out's gain, ones until it is fitted (the fit sets both)."""
        if self.lip_readout_live is None:
            return torch.ones(self.articulation.out_features, device=self.articulation.weight.device)
        return self.lip_readout_live.gain

    def audio_code(self, windows: Tensor) -> Tensor:
        """windows: [smooth_window, window, feature_dim] (the frames around this one) → smoothed code [code_dim]."""
        return self.audio_codes(windows.unsqueeze(0)).squeeze(0)

    def audio_codes(self, windows: Tensor) -> Tensor:
        """windows: [B, smooth_window, window, feature_dim] (B frames) → smoothed codes [B, code_dim]."""
        b, s = windows.shape[:2]
        codes = self.audio_encoder(windows.flatten(0, 1))  # [B·S, code_dim]
        return self.audio_smoother(codes.reshape(b, s, -1))

    def clip_lips(self, features: Tensor, frames: list[int], cfg: AudioConfig) -> tuple[Tensor, Tensor]:
        """Smoothed codes [F, code_dim] and predicted lip shapes [F, C] of video frames `frames` of a clip's
        features [T, K, D], AUDIO_CODE_CHUNK frames at a time, on the nets' device."""
        device = next(self.audio_encoder.parameters()).device
        codes, lips = [], []
        for i in range(0, len(frames), AUDIO_CODE_CHUNK):
            windows = torch.stack([frame_audio_windows(features, t, cfg)
                                   for t in frames[i:i + AUDIO_CODE_CHUNK]]).to(device)
            codes.append(self.audio_codes(windows))
            lips.append(self.lip_shape(codes[-1], windows))
        return torch.cat(codes), torch.cat(lips)


class PersonalizedField(_TwoBranchField):
    """One identity's residual motion (added to the UMF's) during identity-free pre-training; it reads the
    UMF's audio code, so it has no audio nets of its own."""
