import pytest
import torch

from instag.config.model import GaussianConfig
from instag.gaussians import GaussianField, Region
from instag.motion import MotionModel, build_personalized
from instag.render import FrameCondition, gaussian_normals, render_avatar
from instag.train.recipe import LossConfig

SIZE = 32


def _sphere(n: int, radius: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * radius


def _avatar(cfg):
    torch.manual_seed(0)
    face_pts = _sphere(80, 0.3, 0)
    region = torch.where(face_pts[:, 1] > 0.15, int(Region.LIPS), int(Region.FACE))
    gcfg = GaussianConfig(init_opacity=0.9)
    face = GaussianField.from_points(face_pts, torch.full((80, 3), 0.9), gcfg, region=region)
    mouth = GaussianField.from_points(_sphere(20, 0.1, 1), torch.full((20, 3), 0.1), gcfg)
    with torch.no_grad():
        # Flatten the face Gaussians into discs tangent to the sphere: their normals are then the radial ones.
        n = torch.nn.functional.normalize(face_pts, dim=-1)
        face.quats.copy_(torch.stack([1 + n[:, 2], -n[:, 1], n[:, 0], torch.zeros(80)], dim=-1))
        face.log_scales[:, 2] -= 3.0
    return face, mouth, MotionModel(cfg, with_aligner=True)


def _condition(cfg, background=0.5) -> FrameCondition:
    viewmat = torch.eye(4)
    viewmat[2, 3] = 2.0  # camera 2 units in front of the head, looking down +z (OpenCV)
    K = torch.tensor([[40.0, 0, SIZE / 2], [0, 40.0, SIZE / 2], [0, 0, 1]])
    a = cfg.audio
    g = torch.Generator().manual_seed(3)
    return FrameCondition(
        audio_windows=torch.randn(a.smooth_window, a.window, a.feature_dim, generator=g),
        expression=torch.zeros(cfg.expression_dim),
        viewmat=viewmat,
        K=K,
        width=SIZE,
        height=SIZE,
        background=torch.full((3,), background),
    )


def test_render_draws_the_avatar_over_the_background(cfg):
    face, mouth, motion = _avatar(cfg)
    cond = _condition(cfg)
    out = render_avatar(face, mouth, motion, cond, backend=cfg.backend)
    assert out.image.shape == (SIZE, SIZE, 3)
    assert out.depth is None and out.normal is None
    background = torch.full((SIZE, SIZE, 3), 0.5)
    diff = (out.image - background).abs().amax(dim=-1)
    assert diff.max() > 0.2  # the bright face is drawn
    assert diff[0, 0] < 1e-3  # a corner far from the head shows the background
    assert out.face.alpha.max() > 0.5
    # The face hides the mouth interior, which sits inside it: the centre is face-coloured, not mouth-coloured.
    centre = out.image[SIZE // 2, SIZE // 2]
    assert (centre > 0.6).all()


def test_render_geometry_and_gradients(cfg):
    face, mouth, motion = _avatar(cfg)
    cond = _condition(cfg)
    person = build_personalized(cfg)
    out = render_avatar(face, mouth, motion, cond, personalized=person, geometry=True, backend=cfg.backend)
    covered = out.face.alpha[..., 0] > 0.5
    assert covered.any()
    # The sphere's front is about 1.7 units away; normals face the camera (negative z in OpenCV).
    assert (out.depth[covered] > 1.5).all() and (out.depth[covered] < 2.5).all()
    assert (out.normal[covered][:, 2] < 0).float().mean() > 0.9
    assert out.normal[SIZE // 2, SIZE // 2, 2] < -0.9  # the sphere's front faces straight at the camera
    out.face.raster.means2d.retain_grad()
    out.image.sum().backward()
    assert face.means.grad.abs().sum() > 0
    assert face.sh_dc.grad.abs().sum() > 0
    assert motion.umf.face.encoder.embeddings.grad.abs().sum() > 0
    assert person.face.mlp[-1].weight.grad.abs().sum() > 0
    face.accumulate_densify_stats(out.face.raster.means2d.grad, out.face.raster.radii, SIZE, SIZE)
    assert face.grad_accum.sum() > 0


def test_audio_changes_the_rendered_mouth_region(cfg):
    face, mouth, motion = _avatar(cfg)
    with torch.no_grad():
        # Strengthen the motion so that a different audio visibly moves the Gaussians at this tiny size.
        motion.umf.face.mlp[-1].weight.mul_(200.0)
        a = render_avatar(face, mouth, motion, _condition(cfg), backend=cfg.backend).image
        cond = _condition(cfg)
        cond.audio_windows = cond.audio_windows * 4.0 + 2.0
        b = render_avatar(face, mouth, motion, cond, backend=cfg.backend).image
    assert (a - b).abs().max() > 1e-3


def test_normals_are_the_shortest_axis_facing_the_camera():
    viewmat = torch.eye(4)
    viewmat[2, 3] = 2.0
    means = torch.zeros(2, 3)
    quats = torch.tensor([[1.0, 0, 0, 0], [0.0, 1, 0, 0]])  # identity, and 180° about x (flips z)
    log_scales = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -3.0]])
    n = gaussian_normals(means, quats, log_scales, viewmat)
    assert torch.allclose(n, torch.tensor([[0.0, 0, -1], [0.0, 0, -1]]), atol=1e-6)


@pytest.mark.parametrize("background", [0.0, 1.0])
def test_background_plate_shows_where_nothing_is_drawn(cfg, background):
    face, mouth, motion = _avatar(cfg)
    cond = _condition(cfg, background)
    plate = torch.rand(SIZE, SIZE, 3)
    cond.background = plate
    with torch.no_grad():
        out = render_avatar(face, mouth, motion, cond, backend=cfg.backend)
    empty = (out.face.alpha[..., 0] < 1e-4) & (out.mouth.alpha[..., 0] < 1e-4)
    assert empty.any()
    assert torch.allclose(out.image[empty], plate[empty], atol=1e-3)


def test_a_few_steps_fit_the_target_better(cfg):
    from instag.motion import param_groups
    from instag.train.losses import photometric_loss

    face, mouth, motion = _avatar(cfg)
    cond = _condition(cfg)
    target = torch.full((SIZE, SIZE, 3), 0.5)
    target[8:24, 8:24] = torch.tensor([0.9, 0.2, 0.2])  # a red face on the grey background
    lrs = cfg.optim.gaussians
    gaussians = torch.optim.Adam(face.param_groups(lrs, extent=0.3) + mouth.param_groups(lrs, extent=0.3))
    nets = torch.optim.AdamW(param_groups(motion, cfg.optim))
    losses = []
    for _ in range(15):
        out = render_avatar(face, mouth, motion, cond, backend=cfg.backend)
        loss = photometric_loss(out.image, target, None, LossConfig().lambda_dssim)
        gaussians.zero_grad()
        nets.zero_grad()
        loss.backward()
        gaussians.step()
        nets.step()
        losses.append(float(loss))
    # 3DGS learning rates move colours slowly; a steady decrease is what matters here.
    assert losses[-1] < 0.95 * losses[0]
    assert all(b <= a + 1e-4 for a, b in zip(losses, losses[1:], strict=False))


def test_the_foreground_is_drawn_over_the_head_by_its_weight(cfg):
    face, mouth, motion = _avatar(cfg)
    plain = render_avatar(face, mouth, motion, _condition(cfg), backend=cfg.backend).image
    fg = torch.zeros(SIZE, SIZE, 4)
    fg[14:18, 10:22] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # over the middle of the head, at full weight
    fg[20, 10:22] = torch.tensor([0.0, 1.0, 0.0, 0.25])
    cond = _condition(cfg)
    cond.foreground = fg
    out = render_avatar(face, mouth, motion, cond, backend=cfg.backend).image
    assert torch.allclose(out[14:18, 10:22], fg[14:18, 10:22, :3])
    assert torch.allclose(out[20, 10:22], 0.75 * plain[20, 10:22] + 0.25 * fg[20, 10:22, :3])
    untouched = torch.ones(SIZE, SIZE, dtype=torch.bool)
    untouched[14:18, 10:22] = untouched[20, 10:22] = False
    assert torch.equal(out[untouched], plain[untouched])
