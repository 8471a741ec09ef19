"""`MotionAligner`: adapts the universal motion to a new person's face without retraining the UMF from scratch.

A 3D hash grid + small MLP give, per canonical point, a coordinate offset (where in UMF space this person's point
should read its motion) and a per-axis scale of the motion read there. Both output layers start at zero, so the
aligner begins as exactly the identity (offset 0, scale 1) and the adaptation starts from the UMF's own motion.
"""

from __future__ import annotations

from torch import Tensor, nn

from instag.config.model import AlignerConfig
from instag.kernels.hash_encode import HashEncoder3D
from instag.motion.audio import LEAK


class MotionAligner(nn.Module):
    def __init__(self, cfg: AlignerConfig, backend: str = "auto") -> None:
        super().__init__()
        g = cfg.grid
        self.encoder = HashEncoder3D(
            g.n_levels, g.n_features, g.log2_table_size, g.base_resolution, g.max_resolution, g.bound, backend
        )
        self.trunk = nn.Sequential(nn.Linear(self.encoder.output_dim, cfg.hidden_dim), nn.LeakyReLU(LEAK))
        self.offset_head = nn.Linear(cfg.hidden_dim, 3)
        self.scale_head = nn.Linear(cfg.hidden_dim, 3)
        for head in (self.offset_head, self.scale_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """xyz: [N, 3] → (offset [N, 3], scale [N, 3]); exactly (0, 1) at initialisation."""
        h = self.trunk(self.encoder(xyz))
        # 1 + x rather than exp(x): at x = 0 both are exactly 1, and 1 + x keeps the gradient unit-sized.
        return self.offset_head(h), 1.0 + self.scale_head(h)
