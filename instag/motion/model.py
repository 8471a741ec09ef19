"""`MotionModel`: the motion of one avatar frame, composed from the UMF, the face-mouth hook and, where the stage
uses them, the motion aligner (adaptation) and a personalized residual field (pre-training)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from instag.config.model import ModelConfig, OptimConfig
from instag.motion.aligner import MotionAligner
from instag.motion.fields import FaceMotion, PersonalizedField, PointTerms, UniversalMotionField
from instag.motion.hook import FaceMouthHook


@dataclass
class AvatarMotion:
    """Deformations of both branches for one frame, and what the losses and regularisers need."""

    face: FaceMotion  # total face motion, [N, ·]
    mouth_d_means: Tensor  # [M, 3] total mouth motion
    audio_code: Tensor  # [code_dim] what the branches read (the speaker code when one is set)
    hook_features: Tensor  # [7]
    hook_code: Tensor  # [hook code_dim]
    mouth_scale: Tensor  # [1]
    residual_face_d_means: Tensor | None  # [N, 3] personalized part (pre-training), for the contrast loss
    residual_mouth_d_means: Tensor | None  # [M, 3]
    aligner_offsets: Tensor | None  # [N + M, 3] (face then mouth), for the aligner regulariser
    aligner_scales: Tensor | None  # [N + M, 3]
    probe_d_means: Tensor | None = None  # [P, 3] total face-branch motion at the probe points, when asked for
    # [C] the UMF's prediction from the audio (articulation on), for its loss; None where a lip shape was given and
    # no loss could train the nets that predict it (`condition`).
    lip_shape: Tensor | None = None
    face_condition: Tensor | None = None  # [condition_dim] what the face branches read: expression (⊕ lip shape)


@dataclass
class MotionPoints:
    """What `MotionModel` computes from the canonical Gaussians alone (`MotionModel.points`): the aligner's scales
    and both branches' point terms. Frame-independent, so a rendered avatar computes them once."""

    face: PointTerms  # of the aligned face positions (⊕ probes), [N (+ P), ·]
    mouth: PointTerms  # [M, ·]
    aligner_offsets: Tensor | None  # [N (+ P) + M, 3] (face then mouth)
    aligner_scales: Tensor | None  # [N (+ P) + M, 3]


class MotionModel(nn.Module):
    """UMF + hook (+ aligner). Personalized fields live outside (one per identity) and are passed per call."""

    def __init__(self, cfg: ModelConfig, with_aligner: bool = False) -> None:
        super().__init__()
        self.umf = UniversalMotionField(
            cfg.umf, cfg.audio, cfg.expression_dim, cfg.hook.code_dim, cfg.backend, cfg.articulation, cfg.lip_coeffs,
            cfg.lip_readout, cfg.live_readout)
        self.hook = FaceMouthHook(cfg.hook)
        self.aligner = MotionAligner(cfg.aligner, cfg.backend) if with_aligner else None
        # The person's calibration, set by adaptation (`set_calibration`) and kept in avatar.json, not the weights.
        # speaker_code [code_dim]: when set, the branches read it in place of each frame's audio code, so the audio
        # moves them only through the predicted lip shape. lip_bias [C]: the prediction's mean over the person's
        # training frames, where the tracked lip shape it stands for is standardised to mean 0. lip_gain [C]: the
        # scale that gives the centred prediction the tracked lip shape's spread there (`adapt.lip_gain`).
        n = len(cfg.lip_coeffs)
        self.register_buffer("speaker_code", None, persistent=False)
        self.register_buffer("lip_bias", torch.zeros(n), persistent=False)
        self.register_buffer("lip_gain", torch.ones(n), persistent=False)

    def set_calibration(self, speaker_code: Tensor | None, lip_bias: Tensor | list[float],
                        lip_gain: Tensor | list[float] | None = None) -> None:
        """speaker_code: [code_dim] or None (each frame's own code); lip_bias, lip_gain: [C] (gain None: ones)."""
        dev = self.lip_bias.device
        n = self.lip_bias.shape[0]
        bias = torch.as_tensor(lip_bias, dtype=torch.float32).reshape(-1)
        gain = torch.ones(n) if lip_gain is None else torch.as_tensor(lip_gain, dtype=torch.float32).reshape(-1)
        if bias.shape != (n,) or gain.shape != (n,):
            raise ValueError(f"lip calibration must have {n} values, got {list(bias.shape)} and {list(gain.shape)}")
        self.speaker_code = None if speaker_code is None else speaker_code.detach().to(dev)
        self.lip_bias = bias.to(dev)
        self.lip_gain = gain.to(dev)

    def predicted_lips(self, codes: Tensor, windows: Tensor, live: bool = False) -> Tensor:
        """The UMF's lip shape [B, C] of B frames, calibrated, from their codes [B, code_dim] and windows
        [B, smooth_window, window, feature_dim] (`live`: the live mode's, `UniversalMotionField.lip_shape`, whose
        spread about the person's bias, measured on file predictions, is scaled to a file's: `live_gain`)."""
        centred = self.umf.lip_shape(codes, windows, live) - self.lip_bias
        return (centred * self.umf.live_gain() if live else centred) * self.lip_gain

    def points(
        self,
        face_xyz: Tensor,  # [N, 3] canonical face Gaussians (⊕ probe points)
        mouth_xyz: Tensor,  # [M, 3] canonical mouth-interior Gaussians
    ) -> MotionPoints:
        """The frame-independent part of the motion of these canonical positions."""
        offsets = scales = None
        face_query, mouth_query = face_xyz, mouth_xyz
        if self.aligner is not None:
            # One aligner call for both branches: they live in the same canonical head space.
            xyz = torch.cat([face_xyz, mouth_xyz])
            offsets, scales = self.aligner(xyz)
            query = xyz + offsets
            face_query, mouth_query = query[: face_xyz.shape[0]], query[face_xyz.shape[0]:]
        return MotionPoints(self.umf.face.point_terms(face_query), self.umf.mouth.point_terms(mouth_query),
                            offsets, scales)

    def forward(
        self,
        face_xyz: Tensor,  # [N, 3] canonical face Gaussians
        lip_index: Tensor,  # [L] int64, which face Gaussians are lips (GaussianField.region_index)
        mouth_xyz: Tensor,  # [M, 3] canonical mouth-interior Gaussians
        audio_windows: Tensor,  # [smooth_window, window, feature_dim] features around this frame
        expression: Tensor,  # [expression_dim]
        personalized: PersonalizedField | None = None,
        probe_xyz: Tensor | None = None,  # [P, 3] extra canonical points moved like the face (not rendered)
        lip_shape: Tensor | None = None,  # [C] tracked (training) or a rest's: fed to the face branch instead of predicted
        points: MotionPoints | None = None,  # `self.points` of these positions (⊕ probes), when already computed
        live_audio: bool = False,  # audio_windows are the live mode's (`UniversalMotionField.lip_shape`)
    ) -> AvatarMotion:
        code, expression, predicted = self.condition(audio_windows, expression, lip_shape, live_audio)
        n_face = face_xyz.shape[0]
        if probe_xyz is not None:
            # Probes (e.g. the tracked lip vertices the lip loss compares) ride along in the face branch's call.
            face_xyz = torch.cat([face_xyz, probe_xyz])
        if points is None:
            points = self.points(face_xyz, mouth_xyz)
        face, residual_face = self._face_motion(points, face_xyz, code, expression, personalized)
        offsets, scales = points.aligner_offsets, points.aligner_scales
        probe = None
        if probe_xyz is not None:
            probe = face.d_means[n_face:]
            face = FaceMotion(face.d_means[:n_face], face.d_log_scales[:n_face], face.d_quats[:n_face])
            if residual_face is not None:
                residual_face = residual_face[:n_face]
            offsets = None if offsets is None else torch.cat([offsets[:n_face], offsets[face_xyz.shape[0]:]])
            scales = None if scales is None else torch.cat([scales[:n_face], scales[face_xyz.shape[0]:]])

        # Indices, not a boolean mask: their count is known on the host, so no frame waits for the device here.
        features, hook_code, mouth_scale = self.hook(face.d_means[lip_index])
        mouth = self.umf.mouth_motion(points.mouth, code, hook_code)
        if scales is not None:
            mouth = mouth * scales[n_face:]
        residual_mouth = None
        if personalized is not None:
            residual_mouth = personalized.mouth_motion(mouth_xyz, code, hook_code)
            mouth = mouth + residual_mouth

        return AvatarMotion(
            face=face,
            mouth_d_means=mouth * mouth_scale,
            audio_code=code,
            hook_features=features,
            hook_code=hook_code,
            mouth_scale=mouth_scale,
            residual_face_d_means=residual_face,
            residual_mouth_d_means=residual_mouth,
            aligner_offsets=offsets,
            aligner_scales=scales,
            probe_d_means=probe,
            lip_shape=predicted,
            face_condition=expression,
        )

    def condition(self, audio_windows: Tensor, expression: Tensor, lip_shape: Tensor | None,
                  live_audio: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """The frame's audio code [code_dim] (the speaker's mean once calibrated), the face branch's condition
        (expression [expression_dim] ⊕ lip shape [C] with the articulation head) and the predicted lip shape [C]
        (None without the head, or where nothing reads it). `lip_shape` (training, a dub's rests): fed in place of
        the prediction."""
        if lip_shape is not None and self.speaker_code is not None and not self._audio_nets_learn():
            # The speaker's code and the given lip shape stand in for all the audio nets would give, and no loss
            # trains them (adapting from a fixed UMF, or rendering a rest): their pass is skipped.
            if self.umf.articulation is not None:
                expression = torch.cat([expression, lip_shape])
            return self.speaker_code, expression, None
        code = self.umf.audio_code(audio_windows)
        predicted = None
        if self.umf.articulation is not None:
            predicted = self.predicted_lips(code.unsqueeze(0), audio_windows.unsqueeze(0), live_audio).squeeze(0)
            expression = torch.cat([expression, predicted if lip_shape is None else lip_shape])
        if self.speaker_code is not None:
            code = self.speaker_code
        return code, expression, predicted

    def _audio_nets_learn(self) -> bool:
        """Whether a loss on the predicted lip shape would train the nets that predict it: the audio encoder, its
        attention or the head (a host-side check of flags: no device work)."""
        nets = (self.umf.audio_encoder, self.umf.audio_smoother, self.umf.articulation)
        return torch.is_grad_enabled() and any(p.requires_grad for n in nets if n is not None for p in n.parameters())

    def _face_motion(self, points: MotionPoints, face_xyz: Tensor, code: Tensor, condition: Tensor,
                     personalized: PersonalizedField | None) -> tuple[FaceMotion, Tensor | None]:
        """The face branch's motion of `face_xyz` [N, 3] (UMF, scaled by the aligner, ⊕ the identity's residual)
        and the residual's offsets [N, 3] (None without a personalized field)."""
        face = self.umf.face_motion(points.face, code, condition)
        scales = points.aligner_scales
        if scales is not None:
            face = FaceMotion(face.d_means * scales[: face_xyz.shape[0]], face.d_log_scales, face.d_quats)
        if personalized is None:
            return face, None
        residual = personalized.face_motion(face_xyz, code, condition)
        return face + residual, residual.d_means


def build_personalized(cfg: ModelConfig) -> PersonalizedField:
    """A fresh personalized (residual) field for one pre-training identity, sized by `cfg.personalized`."""
    return PersonalizedField(
        cfg.personalized, cfg.audio.code_dim, cfg.condition_dim, cfg.hook.code_dim, cfg.backend
    )


def param_groups(module: nn.Module, cfg: OptimConfig, lr_net: float | None = None) -> list[dict]:
    """AdamW groups for `module`: hash tables at `lr_grid` without weight decay, everything else at `lr_net`
    (`cfg.lr_net` unless given).

    Hash tables are recognised by the encoders' parameter name `embeddings`.
    """
    grids, nets = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (grids if name.endswith("embeddings") else nets).append(p)
    return [
        {"params": grids, "lr": cfg.lr_grid, "weight_decay": 0.0, "name": "grids"},
        {"params": nets, "lr": cfg.lr_net if lr_net is None else lr_net, "weight_decay": cfg.weight_decay_net,
         "name": "nets"},
    ]
