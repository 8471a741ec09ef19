"""`ModelConfig`: every size and weight of the InsTaG model (DESIGN §6), with the paper's defaults.

Recipes fill it through `instag.config.from_dict`; modules read their sizes from here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from instag.errors import InputError


@dataclass(frozen=True)
class GaussianConfig:
    """Static Gaussians of one branch: initialisation, densification and pruning (3DGS schedule values)."""

    # Colour's view dependence, 0..3. 0 (view-independent) for pre-training's per-identity fields; the adaptation
    # recipes use 2, which follows the shading of a turning head (benchmarks/sh_degree_cpu.md).
    sh_degree: int = 2  # view-dependent colour: the light stays put while the head turns
    init_opacity: float = 0.3
    init_knn: int = 3  # initial scale = mean distance to this many nearest neighbours
    densify_grad_threshold: float = 2e-4  # mean screen-space gradient of the means, NDC units (3DGS)
    dense_fraction: float = (
        0.01  # Gaussians larger than this fraction of the extent are split, smaller cloned
    )
    split_count: int = 2
    split_shrink: float = 1.6  # a split child's scale is its parent's divided by this
    prune_opacity: float = 0.005
    prune_scale_fraction: float = 0.1  # larger than this fraction of the extent is "too big"
    prune_screen_radius: float = 0.0  # pixels; 0 switches the screen-size test off
    max_gaussians: int = 100_000  # densification stops adding beyond this many


@dataclass(frozen=True)
class TriplaneConfig:
    """One tri-plane hash grid (three 2D grids xy, yz, xz)."""

    n_levels: int = 12
    n_features: int = 1
    log2_table_size: int = 17
    base_resolution: int = 16
    max_resolution: int = 512
    bound: float = 0.15  # metres: the head frame (instag.data.pose) holds a head within ±15 cm of its origin


@dataclass(frozen=True)
class HashGridConfig:
    """The motion aligner's 3D multi-resolution hash grid."""

    n_levels: int = 16
    n_features: int = 2
    log2_table_size: int = 16
    base_resolution: int = 16
    max_resolution: int = 1024
    bound: float = 0.15  # metres, as the tri-plane


@dataclass(frozen=True)
class AudioConfig:
    """Audio features → per-frame code → code smoothed over neighbouring frames."""

    # Defaults: Whisper-base encoder states (instag.audio.whisper), 512 channels, two 20 ms steps a video frame.
    # Log-mel takes 80 / 16 / -50 / 25 (the *_mel recipes); hubert / wav2vec2 hidden states a shift of 0, scale 1.
    feature_dim: int = 512  # channels of one feature step
    window: int = 8  # feature steps seen by the encoder for one video frame (4 frames)
    feature_shift: float = 0.0  # inputs become (x - shift) / scale, near unit size
    feature_scale: float = 2.0  # layer-normalised states: mean about 0, standard deviation about 1.7
    hidden_dim: int = 64
    code_dim: int = 32
    smooth_window: int = 8  # neighbouring video frames the attention smooths over
    attention_hidden: int = 16


@dataclass(frozen=True)
class MotionFieldConfig:
    """One motion field (universal or personalized): tri-plane + MLP per branch."""

    triplane: TriplaneConfig = field(default_factory=TriplaneConfig)
    hidden_dim: int = 64
    n_layers: int = 3  # hidden layers of each branch's MLP


def _personalized_default() -> MotionFieldConfig:
    # Smaller than the UMF: it only carries an identity's residual motion (InsTaG, identity-free pre-training).
    return MotionFieldConfig(
        triplane=TriplaneConfig(n_levels=8, log2_table_size=14, max_resolution=256), hidden_dim=32, n_layers=2
    )


@dataclass(frozen=True)
class AlignerConfig:
    grid: HashGridConfig = field(default_factory=HashGridConfig)
    hidden_dim: int = 32


@dataclass(frozen=True)
class HookConfig:
    """Face-mouth hook: statistics of the face branch's lip motion → mouth-branch code and motion scale."""

    code_dim: int = 8
    hidden_dim: int = 16
    feature_gain: float = (
        10.0  # lip displacements are a few hundredths of the bound; bring them near unit size
    )


@dataclass(frozen=True)
class GaussianLRConfig:
    """Adam learning rates of the Gaussian parameters (3DGS values; means are scaled by the scene extent)."""

    means: float = 1.6e-4
    log_scales: float = 5e-3
    quats: float = 1e-3
    opacity_logits: float = 5e-2
    sh_dc: float = 2.5e-3
    sh_rest: float = 1.25e-4


@dataclass(frozen=True)
class OptimConfig:
    lr_grid: float = 5e-3  # hash tables (AdamW)
    lr_net: float = 5e-4  # MLPs and audio nets (AdamW)
    # Adaptation's aligner and face-mouth hook networks (None: lr_net). With the UMF fixed they are the only motion
    # networks that learn, and at lr_net they barely move the lips in a short adaptation.
    lr_adapt_net: float | None = None
    weight_decay_net: float = 1e-4  # grids get none: decay would pull unvisited table entries to zero
    gaussians: GaussianLRConfig = field(default_factory=GaussianLRConfig)


@dataclass(frozen=True)
class ModelConfig:
    gaussians: GaussianConfig = field(default_factory=GaussianConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    expression_dim: int = (
        1  # per-frame expression condition; blink alone by default, blink ⊕ expression if wider
    )
    # Articulation bottleneck: the UMF reads lip-shape coefficients off the audio code (supervised by the tracked
    # ones) and conditions the face branch on them beside the expression; training feeds the tracked values.
    articulation: bool = True
    # Those coefficients (names from instag.data.pose.EXPRESSION_NAMES), each standardised per person. The mouth
    # opening comes first: the audio sync and the evaluation read it.
    lip_coeffs: tuple[str, ...] = ("mouth_open", "mouth_width")
    # A ridge read-out of the audio features beside the articulation head (`motion.audio.LipReadout`): the lip shape
    # is the mean of the two, which follows people held out of both better than either alone
    # (benchmarks/lips_readout_cpu.md). Ignored without articulation.
    lip_readout: bool = True
    # A second read-out, fitted on the features the preview's microphone mode computes from a second of sound
    # (`audio.live_context`) rather than a whole file's, takes the first's place there: fitted on what it reads, it
    # follows held-out people's lips better live (benchmarks/preview_live_cpu.md). Ignored without lip_readout.
    live_readout: bool = True
    umf: MotionFieldConfig = field(default_factory=MotionFieldConfig)
    personalized: MotionFieldConfig = field(default_factory=_personalized_default)
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    hook: HookConfig = field(default_factory=HookConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    backend: str = "auto"  # kernel backend for the hash grids and the rasterizer

    @property
    def condition_dim(self) -> int:
        """Width of the face branches' per-frame condition: the expression ⊕ the lip shape (articulation)."""
        return self.expression_dim + (len(self.lip_coeffs) if self.articulation else 0)

    def __post_init__(self) -> None:
        if self.audio.feature_scale <= 0:
            raise InputError(f"model.audio.feature_scale: must be positive, got {self.audio.feature_scale}")
        if not self.lip_coeffs or self.lip_coeffs[0] != "mouth_open" or len(set(self.lip_coeffs)) != len(self.lip_coeffs):
            raise InputError(f"model.lip_coeffs: distinct names starting with mouth_open, got {list(self.lip_coeffs)}")
        if not 0 <= self.gaussians.sh_degree <= 3:
            raise InputError(f"model.gaussians.sh_degree: {self.gaussians.sh_degree} is not in 0..3")
        sizes = {
            "audio.feature_dim": self.audio.feature_dim,
            "audio.window": self.audio.window,
            "audio.code_dim": self.audio.code_dim,
            "audio.smooth_window": self.audio.smooth_window,
            "expression_dim": self.expression_dim,
            "hook.code_dim": self.hook.code_dim,
            "gaussians.split_count": self.gaussians.split_count,
        }
        for name, value in sizes.items():
            if value < 1:
                raise InputError(f"model.{name}: must be at least 1, got {value}")
