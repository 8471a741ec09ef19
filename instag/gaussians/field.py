"""`GaussianField`: the static Gaussians of one branch and the parameter surgery that densifies and prunes them.

Parameters are stored unconstrained (log scales, unnormalised quaternions, opacity logits, SH coefficients), as
3DGS does, so any Adam step keeps them valid. Densification and pruning change the number of Gaussians; they
rewrite the optimizer's per-parameter state (Adam moments) with the same indexing so training continues
without a restart and without stale moments attached to the wrong Gaussian.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from instag.config.model import GaussianConfig, GaussianLRConfig
from instag.errors import InputError
from instag.gaussians.sh import MAX_SH_DEGREE, num_sh_coeffs, rgb_to_sh_dc, sh_to_rgb

PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")
KNN_CHUNK = 512  # rows of the pairwise-distance matrix computed at once when initialising scales


class Region(enum.IntEnum):
    """What part of the head a Gaussian belongs to (from the label map it was initialised from)."""

    FACE = 0
    LIPS = 1  # the face-mouth hook reads the face branch's motion over these
    MOUTH = 2


@dataclass(frozen=True)
class DensifyReport:
    cloned: int
    split: int
    pruned: int
    total: int


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """quats: [N, 4] (w, x, y, z), any norm → rotation matrices [N, 3, 3]."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)  # fmt: skip


def knn_mean_distance(points: Tensor, k: int) -> Tensor:
    """points: [N, 3] → mean distance to each point's k nearest other points [N] (chunked to bound memory)."""
    k = min(k, points.shape[0] - 1)
    if k < 1:
        return torch.ones(points.shape[0], dtype=points.dtype, device=points.device)
    out = []
    for start in range(0, points.shape[0], KNN_CHUNK):
        d = torch.cdist(points[start : start + KNN_CHUNK], points)  # [C, N]
        nearest = d.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop the point itself
        out.append(nearest.mean(dim=1))
    return torch.cat(out)


class GaussianField(nn.Module):
    """N anisotropic Gaussians with SH colours.

    Parameters: means [N, 3], log_scales [N, 3], quats [N, 4] (w, x, y, z), opacity_logits [N], sh_dc [N, 3],
    sh_rest [N, (d+1)^2 - 1, 3]. Buffers: region [N] uint8 (`Region`), and the densification statistics
    grad_accum [N], grad_count [N], max_radii [N] (saved too, so a resumed run densifies identically).
    """

    def __init__(self, num_gaussians: int, sh_degree: int = 0) -> None:
        super().__init__()
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise InputError(f"sh_degree {sh_degree} is not in 0..{MAX_SH_DEGREE}")
        n = num_gaussians
        self.means = nn.Parameter(torch.zeros(n, 3))
        self.log_scales = nn.Parameter(torch.zeros(n, 3))
        self.quats = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1))
        self.opacity_logits = nn.Parameter(torch.zeros(n))
        self.sh_dc = nn.Parameter(torch.zeros(n, 3))
        self.sh_rest = nn.Parameter(torch.zeros(n, num_sh_coeffs(sh_degree) - 1, 3))
        self.register_buffer("region", torch.zeros(n, dtype=torch.uint8))
        self.register_buffer("grad_accum", torch.zeros(n))
        self.register_buffer("grad_count", torch.zeros(n))
        self.register_buffer("max_radii", torch.zeros(n))
        # region -> (the `region` buffer it was found in, that buffer's version, its indices): see `region_index`.
        self._region_index: dict[int, tuple[Tensor, int, Tensor]] = {}

    # ----- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_points(
        cls,
        points: Tensor,  # [N, 3]
        colors: Tensor,  # [N, 3] rgb in [0, 1]
        cfg: GaussianConfig,
        region: Tensor | None = None,  # [N] `Region` values; FACE when absent
    ) -> GaussianField:
        """Isotropic Gaussians at `points`, sized by the spacing to their neighbours, with the given colours."""
        if points.dim() != 2 or points.shape[1] != 3 or colors.shape != points.shape:
            raise InputError(
                f"points and colors must both be [N, 3], got {list(points.shape)}, {list(colors.shape)}"
            )
        field = cls(points.shape[0], cfg.sh_degree)
        spacing = knn_mean_distance(points.float(), cfg.init_knn).clamp_min(1e-7)
        with torch.no_grad():
            field.means.copy_(points)
            field.log_scales.copy_(spacing.log().unsqueeze(1).expand(-1, 3))
            field.opacity_logits.fill_(_logit(cfg.init_opacity))
            field.sh_dc.copy_(rgb_to_sh_dc(colors.float()))
            if region is not None:
                field.region.copy_(region.to(torch.uint8))
        return field

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> GaussianField:
        """A field sized by `tensors` (a `state_dict`, e.g. from safetensors); missing buffers start at zero."""
        missing = [name for name in PARAM_NAMES if name not in tensors]
        if missing:
            raise InputError(f"Gaussian tensors lack {', '.join(missing)}")
        means, rest = tensors["means"], tensors["sh_rest"]
        if means.dim() != 2 or rest.dim() != 3:
            raise InputError(f"Gaussian means {list(means.shape)} or sh_rest {list(rest.shape)} are not [N, 3] and "
                             f"[N, K, 3]")
        field = cls(means.shape[0], int(round(math.sqrt(rest.shape[1] + 1))) - 1)
        expected = field.state_dict()
        for name, value in tensors.items():
            # Checked here so that a tampered file gets one line, not load_state_dict's multi-line report.
            if name not in expected:
                raise InputError(f"unexpected Gaussian tensor {name}")
            if value.shape != expected[name].shape:
                raise InputError(f"Gaussian tensor {name} has shape {list(value.shape)}, expected "
                                 f"{list(expected[name].shape)}")
        field.load_state_dict({**expected, **tensors})
        return field

    @classmethod
    def concatenate(cls, *fields: GaussianField) -> GaussianField:
        """One field holding all Gaussians of `fields` (same SH degree), e.g. face and mouth for a PLY export."""
        degrees = {f.sh_degree for f in fields}
        if len(degrees) != 1:
            raise InputError(f"cannot concatenate Gaussians of SH degrees {sorted(degrees)}")
        names = fields[0].state_dict().keys()
        return cls.from_tensors({k: torch.cat([f.state_dict()[k].detach() for f in fields]) for k in names})

    # ----- activated views ----------------------------------------------------------------------------------

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.sh_rest.shape[1] + 1))) - 1

    @property
    def scales(self) -> Tensor:  # [N, 3] linear
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:  # [N] in (0, 1)
        return torch.sigmoid(self.opacity_logits)

    def colors(self, means: Tensor, camera_center: Tensor) -> Tensor:
        """means: [N, 3] (possibly deformed), camera_center: [3] → rgb [N, 3] evaluated along the view rays."""
        if self.sh_rest.shape[1] == 0:
            # Degree 0 has no view dependence: the basis ignores the directions, skip computing them.
            return sh_to_rgb(self.sh_dc, self.sh_rest, means)
        dirs = torch.nn.functional.normalize(means - camera_center, dim=-1)
        return sh_to_rgb(self.sh_dc, self.sh_rest, dirs)

    def region_mask(self, region: Region) -> Tensor:  # [N] bool
        return self.region == int(region)

    def region_index(self, region: Region) -> Tensor:
        """Indices [M] int64, ascending, of the Gaussians of `region`; M is known on the host.

        Finding them waits for the device, so they are found again only when the `region` buffer has changed:
        replaced (densify, prune, a move to another device) or written in place (its version counter moves)."""
        key = int(region)
        hit = self._region_index.get(key)
        if hit is not None and hit[0] is self.region and hit[1] == self.region._version:
            return hit[2]
        index = torch.nonzero(self.region == key).squeeze(1)
        self._region_index[key] = (self.region, self.region._version, index)
        return index

    def extent(self) -> float:
        """Radius of the point cloud around its centre: the length densification thresholds are relative to."""
        with torch.no_grad():
            centre = self.means.mean(dim=0)
            return float((self.means - centre).norm(dim=-1).max().clamp_min(1e-6))

    # ----- optimisation -------------------------------------------------------------------------------------

    def param_groups(self, lrs: GaussianLRConfig, extent: float) -> list[dict]:
        """One Adam group per parameter, named, with the 3DGS rates; the means' rate scales with `extent`."""
        return [
            {
                "params": [getattr(self, name)],
                "name": name,
                "lr": getattr(lrs, name) * (extent if name == "means" else 1.0),
            }
            for name in PARAM_NAMES
        ]

    def accumulate_densify_stats(
        self,
        means2d_grad: Tensor,  # [N, 2] d loss / d pixel position (RasterOutput.means2d.grad)
        radii: Tensor,  # [N] pixel radius, 0 where culled
        width: int,
        height: int,
    ) -> None:
        """Add this view's screen-space gradient norms (in NDC units, as 3DGS thresholds them) for visible ones."""
        with torch.no_grad():
            # Nothing here waits for the device: a boolean index would (its size is data), and so would a scale
            # tensor made from host numbers. The culled ones get 0.0 added or keep their value: the masked update's
            # sums, bit for bit.
            visible = radii > 0
            ndc_grad = torch.stack([means2d_grad[:, 0] * (width / 2.0), means2d_grad[:, 1] * (height / 2.0)], dim=-1)
            self.grad_accum.add_(torch.where(visible, ndc_grad.norm(dim=-1), 0.0))
            self.grad_count.add_(visible.float())
            self.max_radii.copy_(torch.where(visible, torch.maximum(self.max_radii, radii.float()), self.max_radii))

    def densify_and_prune(
        self, optimizer: torch.optim.Optimizer | None, cfg: GaussianConfig, extent: float
    ) -> DensifyReport:
        """Clone small and split large Gaussians whose mean screen gradient passes the threshold, then prune
        transparent, oversized (and, if enabled, screen-oversized) ones. Resets the statistics."""
        n = self.num_gaussians
        with torch.no_grad():
            grads = self.grad_accum / self.grad_count.clamp_min(1.0)
            candidates = grads >= cfg.densify_grad_threshold
            budget = max(cfg.max_gaussians - n, 0)
            if int(candidates.sum()) > budget:
                # Over budget: keep the candidates with the largest gradients.
                order = torch.argsort(grads.masked_fill(~candidates, -1.0), descending=True)
                candidates = torch.zeros_like(candidates)
                candidates[order[:budget]] = True
            large = self.scales.max(dim=1).values > cfg.dense_fraction * extent
            clone_idx = torch.nonzero(candidates & ~large).squeeze(1)
            split_idx = torch.nonzero(candidates & large).squeeze(1)
            children = self._split_children(split_idx, cfg)
            clones = {name: getattr(self, name).detach()[clone_idx] for name in PARAM_NAMES}
            new = {name: torch.cat([clones[name], children[name]]) for name in PARAM_NAMES}
            new_region = torch.cat([self.region[clone_idx], self.region[split_idx].repeat(cfg.split_count)])
        self._extend(new, new_region, optimizer)
        with torch.no_grad():
            keep = torch.ones(self.num_gaussians, dtype=torch.bool, device=self.means.device)
            keep[split_idx] = False  # split parents are replaced by their children
            keep &= self.opacities >= cfg.prune_opacity
            keep &= self.scales.max(dim=1).values <= cfg.prune_scale_fraction * extent
            if cfg.prune_screen_radius > 0:
                keep[:n] &= self.max_radii[:n] <= cfg.prune_screen_radius
        pruned = int((~keep).sum()) - len(split_idx)
        self.prune(keep, optimizer)
        self.reset_densify_stats()
        return DensifyReport(
            cloned=len(clone_idx), split=len(split_idx), pruned=pruned, total=self.num_gaussians
        )

    def _split_children(self, idx: Tensor, cfg: GaussianConfig) -> dict[str, Tensor]:
        """split_count children per Gaussian in `idx`, positions sampled from the parent, scales shrunk."""
        k = cfg.split_count
        scales = self.scales.detach()[idx].repeat(k, 1)  # [k*M, 3]
        rot = quat_to_rotmat(self.quats.detach()[idx]).repeat(k, 1, 1)  # [k*M, 3, 3]
        offsets = torch.bmm(rot, (torch.randn_like(scales) * scales).unsqueeze(-1)).squeeze(-1)
        out = {
            name: getattr(self, name).detach()[idx].repeat(k, *([1] * (getattr(self, name).dim() - 1)))
            for name in PARAM_NAMES
        }
        out["means"] = out["means"] + offsets
        out["log_scales"] = (scales / cfg.split_shrink).log()
        return out

    def prune(self, keep: Tensor, optimizer: torch.optim.Optimizer | None) -> None:
        """Keep only the Gaussians where `keep` [N] bool is True; optimizer moments are indexed the same way."""
        values = {name: getattr(self, name).detach()[keep] for name in PARAM_NAMES}
        self._rewrite(values, lambda name, state: state[keep], optimizer)
        for name in ("region", "grad_accum", "grad_count", "max_radii"):
            setattr(self, name, getattr(self, name)[keep])

    def _extend(
        self, new: dict[str, Tensor], new_region: Tensor, optimizer: torch.optim.Optimizer | None
    ) -> None:
        """Append Gaussians; their optimizer moments start at zero, as for a freshly created parameter."""
        values = {name: torch.cat([getattr(self, name).detach(), new[name]]) for name in PARAM_NAMES}
        self._rewrite(values, lambda name, state: torch.cat([state, torch.zeros_like(new[name])]), optimizer)
        m = new_region.shape[0]
        self.region = torch.cat([self.region, new_region])
        for name in ("grad_accum", "grad_count", "max_radii"):
            setattr(self, name, torch.cat([getattr(self, name), getattr(self, name).new_zeros(m)]))

    def _rewrite(
        self,
        values: dict[str, Tensor],
        edit_state: Callable[[str, Tensor], Tensor],
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        """Replace each parameter by `values[name]` and carry its optimizer state through `edit_state`."""
        for name in PARAM_NAMES:
            old = getattr(self, name)
            new = nn.Parameter(values[name], requires_grad=old.requires_grad)
            if optimizer is not None:
                _swap_in_optimizer(optimizer, old, new, lambda state, name=name: edit_state(name, state))
            setattr(self, name, new)

    def reset_opacity(self, optimizer: torch.optim.Optimizer | None, ceiling: float) -> None:
        """Clamp opacities to at most `ceiling` and zero their moments (3DGS's periodic reset against floaters)."""
        capped = torch.minimum(
            self.opacity_logits.detach(), torch.full_like(self.opacity_logits, _logit(ceiling))
        )
        old = self.opacity_logits
        new = nn.Parameter(capped, requires_grad=old.requires_grad)
        if optimizer is not None:
            _swap_in_optimizer(optimizer, old, new, torch.zeros_like)
        self.opacity_logits = new

    def reset_densify_stats(self) -> None:
        self.grad_accum.zero_()
        self.grad_count.zero_()
        self.max_radii.zero_()

    def with_motion(
        self,
        d_means: Tensor,  # [N, 3]
        d_log_scales: Tensor | None = None,  # [N, 3]
        d_quats: Tensor | None = None,  # [N, 4]
    ) -> GaussianField:
        """A detached copy deformed by the given offsets (for exporting a driven frame)."""
        tensors = {k: v.detach().clone() for k, v in self.state_dict().items()}
        tensors["means"] = tensors["means"] + d_means.detach()
        if d_log_scales is not None:
            tensors["log_scales"] = tensors["log_scales"] + d_log_scales.detach()
        if d_quats is not None:
            tensors["quats"] = tensors["quats"] + d_quats.detach()
        return GaussianField.from_tensors(tensors)


def _swap_in_optimizer(
    optimizer: torch.optim.Optimizer,
    old: nn.Parameter,
    new: nn.Parameter,
    edit_state: Callable[[Tensor], Tensor],
) -> None:
    """Put `new` where `old` was in the optimizer's groups; per-element state (same shape as `old`) is edited,
    scalar state (the step count) kept."""
    for group in optimizer.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    state = optimizer.state.pop(old, None)
    if state is not None:
        optimizer.state[new] = {
            key: edit_state(value) if torch.is_tensor(value) and value.shape == old.shape else value
            for key, value in state.items()
        }
