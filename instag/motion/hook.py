"""`FaceMouthHook`: ties the mouth-interior branch to the face branch's lip motion.

With a few seconds of video the mouth interior is rarely seen, so its branch alone learns little; the lips,
seen in every frame, tell how far the mouth is open. The hook summarises the face branch's Δμ over the lip
Gaussians (per-axis max and min, and the distance between them: the opening) into a code the mouth branch is
conditioned on, and a motion scale applied to the mouth's Δμ (1 at initialisation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from instag.config.model import HookConfig
from instag.motion.audio import LEAK

N_FEATURES = 7  # max (3) + min (3) + distance (1)


def hook_features(lip_d_means: Tensor) -> Tensor:
    """lip_d_means: [M, 3] the face branch's Δμ at the lip Gaussians → [7] = max_xyz, min_xyz, |max − min|.

    Opening the mouth moves the upper lip one way and the lower lip the other, so the distance grows
    monotonically with the opening; no lip Gaussians gives zeros.
    """
    if lip_d_means.shape[0] == 0:
        return lip_d_means.new_zeros(N_FEATURES)
    high = lip_d_means.max(dim=0).values
    low = lip_d_means.min(dim=0).values
    return torch.cat([high, low, (high - low).norm().reshape(1)])


class FaceMouthHook(nn.Module):
    def __init__(self, cfg: HookConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.code_net = nn.Sequential(
            nn.Linear(N_FEATURES, cfg.hidden_dim), nn.LeakyReLU(LEAK), nn.Linear(cfg.hidden_dim, cfg.code_dim)
        )
        self.scale_head = nn.Linear(N_FEATURES, 1)
        nn.init.zeros_(self.scale_head.weight)
        nn.init.zeros_(self.scale_head.bias)

    def forward(self, lip_d_means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """lip_d_means: [M, 3] → (features [7], mouth code [code_dim], motion scale [1]).

        The face motion is detached: the hook makes the mouth follow the lips, and the mouth's (rarely seen)
        pixels must not pull the lips around.
        """
        features = hook_features(lip_d_means.detach())
        x = features * self.cfg.feature_gain
        return features, self.code_net(x), 1.0 + self.scale_head(x)
