"""Real spherical harmonics up to degree 3 in the 3DGS convention, so PLY files colour the same in other viewers."""

from __future__ import annotations

import torch
from torch import Tensor

MAX_SH_DEGREE = 3
SH_C0 = 0.28209479177387814  # Y_0^0; also maps an RGB in [0, 1] to the DC coefficient
_SH_C1 = 0.4886025119029199
_SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
_SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_coeffs(degree: int) -> int:
    """Coefficients per colour channel for `degree` (1, 4, 9, 16)."""
    return (degree + 1) ** 2


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """rgb: [N, 3] in [0, 1] → DC coefficients [N, 3] that `sh_to_rgb` maps back to `rgb`."""
    return (rgb - 0.5) / SH_C0


def _basis(dirs: Tensor, degree: int) -> Tensor:
    """dirs: [N, 3] unit → basis values [N, (degree+1)^2] in the 3DGS coefficient order."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _SH_C2[0] * x * y,
            _SH_C2[1] * y * z,
            _SH_C2[2] * (2.0 * zz - xx - yy),
            _SH_C2[3] * x * z,
            _SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            _SH_C3[0] * y * (3.0 * xx - yy),
            _SH_C3[1] * x * y * z,
            _SH_C3[2] * y * (4.0 * zz - xx - yy),
            _SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            _SH_C3[4] * x * (4.0 * zz - xx - yy),
            _SH_C3[5] * z * (xx - yy),
            _SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_rgb(sh_dc: Tensor, sh_rest: Tensor, dirs: Tensor) -> Tensor:
    """Colours seen along `dirs`.

    sh_dc: [N, 3]; sh_rest: [N, K-1, 3] with K = (degree+1)^2; dirs: [N, 3] unit vectors from the camera to each
    Gaussian → rgb [N, 3], clamped at 0 like 3DGS (no upper clamp, so gradients stay alive above 1).
    """
    degree = int(round((sh_rest.shape[1] + 1) ** 0.5)) - 1
    basis = _basis(dirs, degree)  # [N, K]
    # The DC term is a constant; the rest is one batched [1, K-1] x [K-1, 3] product per Gaussian, about twice
    # as fast on the CPU as broadcasting to [N, K, 3] and summing (the renderer does this every frame).
    rgb = SH_C0 * sh_dc + torch.bmm(basis[:, None, 1:], sh_rest).squeeze(1)
    return (rgb + 0.5).clamp_min(0.0)
