import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

from instag.config.model import AudioConfig
from instag.errors import InputError
from instag.motion import (
    AudioAttention,
    AudioEncoder,
    FaceMouthHook,
    MotionModel,
    build_personalized,
    frame_audio_windows,
    hook_features,
    param_groups,
)


def _inputs(cfg, seed=0, n=30, m=12):
    g = torch.Generator().manual_seed(seed)
    face = torch.rand(n, 3, generator=g) - 0.5
    mouth = (torch.rand(m, 3, generator=g) - 0.5) * 0.2
    lips = torch.arange(8)  # the first 8 face Gaussians are lips
    audio = torch.randn(cfg.audio.smooth_window, cfg.audio.window, cfg.audio.feature_dim, generator=g)
    expression = torch.rand(cfg.expression_dim, generator=g)
    return face, lips, mouth, audio, expression


def test_audio_encoder_and_attention_shapes(cfg):
    a = cfg.audio
    enc, att = AudioEncoder(a), AudioAttention(a)
    codes = enc(torch.randn(5, a.window, a.feature_dim))
    assert codes.shape == (5, a.code_dim)
    with pytest.raises(ValueError, match="audio windows"):
        enc(torch.randn(5, a.window + 1, a.feature_dim))
    # The smoothed code is a convex combination: identical codes come back unchanged.
    same = torch.randn(1, 1, a.code_dim).expand(3, a.smooth_window, a.code_dim)
    assert torch.allclose(att(same), same[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="codes"):
        att(torch.randn(3, a.smooth_window - 1, a.code_dim))


def test_umf_shapes_and_audio_moves_the_face(cfg):
    torch.manual_seed(0)
    model = MotionModel(cfg)
    face, lips, mouth, audio, expr = _inputs(cfg)
    out = model(face, lips, mouth, audio, expr)
    assert out.face.d_means.shape == (30, 3)
    assert out.face.d_log_scales.shape == (30, 3)
    assert out.face.d_quats.shape == (30, 4)
    assert out.mouth_d_means.shape == (12, 3)
    assert out.audio_code.shape == (cfg.audio.code_dim,)
    assert out.hook_code.shape == (cfg.hook.code_dim,)
    other = model(face, lips, mouth, audio * 3.0 + 1.0, expr)
    assert not torch.allclose(other.face.d_means, out.face.d_means)
    assert not torch.allclose(other.mouth_d_means, out.mouth_d_means)
    blink = model(face, lips, mouth, audio, expr + 1.0)
    assert not torch.allclose(blink.face.d_means, out.face.d_means)
    # The canonical shape starts almost undeformed.
    assert out.face.d_means.abs().max() < 0.1


@pytest.mark.parametrize("with_aligner", [False, True])
def test_probe_points_move_like_face_gaussians_and_change_nothing_else(cfg, with_aligner):
    torch.manual_seed(0)
    model = MotionModel(cfg, with_aligner=with_aligner)
    face, lips, mouth, audio, expr = _inputs(cfg)
    plain = model(face, lips, mouth, audio, expr)
    probed = model(face, lips, mouth, audio, expr, probe_xyz=face[5:9])
    assert plain.probe_d_means is None
    assert torch.allclose(probed.probe_d_means, plain.face.d_means[5:9], atol=1e-6)
    assert torch.allclose(probed.face.d_means, plain.face.d_means, atol=1e-6)
    assert torch.allclose(probed.mouth_d_means, plain.mouth_d_means, atol=1e-6)
    if with_aligner:
        assert probed.aligner_offsets.shape == plain.aligner_offsets.shape == (42, 3)


def test_aligner_at_initialisation_is_exactly_the_bare_umf(cfg):
    torch.manual_seed(0)
    bare = MotionModel(cfg)
    wrapped = MotionModel(cfg, with_aligner=True)
    wrapped.umf.load_state_dict(bare.umf.state_dict())
    wrapped.hook.load_state_dict(bare.hook.state_dict())
    args = _inputs(cfg)
    a, b = bare(*args), wrapped(*args)
    assert torch.equal(a.face.d_means, b.face.d_means)
    assert torch.equal(a.face.d_log_scales, b.face.d_log_scales)
    assert torch.equal(a.face.d_quats, b.face.d_quats)
    assert torch.equal(a.mouth_d_means, b.mouth_d_means)
    assert torch.equal(b.aligner_offsets, torch.zeros(42, 3))
    assert torch.equal(b.aligner_scales, torch.ones(42, 3))
    # ...and it is trainable from there: the loss gradient reaches its output heads.
    b.face.d_means.sum().backward()
    assert wrapped.aligner.scale_head.weight.grad.abs().sum() > 0
    assert wrapped.aligner.offset_head.weight.grad.abs().sum() > 0


def test_branch_is_its_mlp_on_the_concatenated_inputs(cfg):
    """The branches apply their first layer part by part; the sum must be the plain MLP on the concatenation."""
    torch.manual_seed(0)
    umf = MotionModel(cfg).umf
    xyz = torch.rand(25, 3) - 0.5
    code, expr, hook = torch.randn(cfg.audio.code_dim), torch.rand(cfg.expression_dim), torch.randn(cfg.hook.code_dim)
    for branch, gated, extra in ((umf.face, expr, None), (umf.mouth, None, hook)):
        feat = branch.encoder(xyz)
        parts = [feat, torch.sigmoid(branch.audio_attention(feat)) * code]
        if gated is not None:
            parts.append(torch.sigmoid(branch.expression_gate(feat)) * gated)
        if extra is not None:
            parts.append(extra.expand(25, -1))
        expected = branch.mlp(torch.cat(parts, dim=-1))
        assert torch.allclose(branch(xyz, code, gated, extra), expected, atol=1e-6)
        assert not torch.allclose(branch(xyz, code * 2, gated, extra), expected, atol=1e-6)
    with pytest.raises(ValueError, match="expression"):
        umf.face(xyz, code)
    with pytest.raises(ValueError, match="extra code"):
        umf.mouth(xyz, code)


@pytest.mark.parametrize("probes", [False, True])
def test_precomputed_points_give_exactly_the_same_motion(cfg, probes):
    torch.manual_seed(0)
    model = MotionModel(cfg, with_aligner=True)
    with torch.no_grad():  # an aligner that moves the query points, so its terms matter
        for head in (model.aligner.offset_head, model.aligner.scale_head):
            head.weight.normal_(std=0.1)
    face, lips, mouth, audio, expr = _inputs(cfg)
    probe = face[:4] + 0.01 if probes else None
    query = torch.cat([face, probe]) if probes else face
    points = model.points(query, mouth)
    assert points.aligner_offsets.abs().max() > 0
    for k in range(2):  # the same points serve every frame
        a = model(face, lips, mouth, audio + k, expr, probe_xyz=probe)
        b = model(face, lips, mouth, audio + k, expr, probe_xyz=probe, points=points)
        for x, y in ((a.face.d_means, b.face.d_means), (a.face.d_quats, b.face.d_quats),
                     (a.mouth_d_means, b.mouth_d_means), (a.aligner_scales, b.aligner_scales)):
            assert torch.equal(x, y)
        if probes:
            assert torch.equal(a.probe_d_means, b.probe_d_means)


def _lip_motion(opening: float, n: int = 10) -> torch.Tensor:
    d = torch.zeros(n, 3)
    d[: n // 2, 1] = -opening  # upper lip up (OpenCV y points down)
    d[n // 2 :, 1] = opening  # lower lip down
    return d


def test_hook_features_follow_the_lip_opening():
    distances = [float(hook_features(_lip_motion(o))[6]) for o in (0.0, 0.01, 0.02, 0.05, 0.1)]
    assert distances == sorted(distances) and len(set(distances)) == len(distances)
    f = hook_features(_lip_motion(0.03))
    assert torch.allclose(f[:3], torch.tensor([0.0, 0.03, 0.0]))  # max per axis
    assert torch.allclose(f[3:6], torch.tensor([0.0, -0.03, 0.0]))  # min per axis
    assert torch.allclose(f[6], torch.tensor(0.06))
    assert torch.equal(hook_features(torch.zeros(0, 3)), torch.zeros(7))


def test_hook_code_and_scale(cfg):
    torch.manual_seed(0)
    hook = FaceMouthHook(cfg.hook)
    lips = _lip_motion(0.02).requires_grad_(True)
    _, closed, scale = hook(torch.zeros(10, 3))
    _, opened, _ = hook(lips)
    assert torch.equal(scale, torch.ones(1))  # unit motion scale at initialisation
    assert closed.shape == (cfg.hook.code_dim,) and not torch.allclose(closed, opened)
    opened.sum().backward()
    assert lips.grad is None  # the mouth branch does not pull the face motion around
    assert hook.code_net[0].weight.grad.abs().sum() > 0


def test_hook_inside_the_model_reads_the_lips(cfg):
    torch.manual_seed(0)
    model = MotionModel(cfg)
    face, lips, mouth, audio, expr = _inputs(cfg)
    out = model(face, lips, mouth, audio, expr)
    assert torch.allclose(out.hook_features, hook_features(out.face.d_means[lips]))


def test_personalized_residual_is_added(cfg):
    torch.manual_seed(0)
    model = MotionModel(cfg)
    person = build_personalized(cfg)
    args = _inputs(cfg)
    base = model(*args)
    with_res = model(*args, personalized=person)
    assert with_res.residual_face_d_means.shape == (30, 3)
    assert torch.allclose(
        with_res.face.d_means, base.face.d_means + with_res.residual_face_d_means, atol=1e-7
    )
    assert with_res.residual_mouth_d_means.shape == (12, 3)


def test_articulation_feeds_the_face_branch_the_tracked_or_the_predicted_opening(cfg):
    cfg = dataclasses.replace(cfg, articulation=True)
    torch.manual_seed(0)
    model = MotionModel(cfg)
    person = build_personalized(cfg)
    args = _inputs(cfg)
    predicted = model(*args, personalized=person)
    code = model.umf.audio_code(args[3])
    assert torch.equal(predicted.lip_shape, model.umf.lip_shape(code.unsqueeze(0), args[3].unsqueeze(0)).squeeze(0))
    assert predicted.face_condition.shape == (cfg.condition_dim,) == (cfg.expression_dim + 1,)
    assert torch.equal(predicted.face_condition[-1:], predicted.lip_shape)
    # Fed its own prediction as the "tracked" value, the model moves exactly as driven by the audio alone.
    same = model(*args, personalized=person, lip_shape=predicted.lip_shape.detach())
    assert torch.equal(same.face.d_means, predicted.face.d_means)
    wide = model(*args, personalized=person, lip_shape=torch.tensor([1.0]))
    assert torch.equal(wide.face_condition[-1:], torch.tensor([1.0]))
    assert not torch.allclose(wide.face.d_means, predicted.face.d_means)
    assert torch.equal(wide.lip_shape, predicted.lip_shape)  # the prediction is still reported
    # Without the head the tracked opening is ignored.
    plain = MotionModel(dataclasses.replace(cfg, articulation=False))
    out = plain(*args, lip_shape=torch.tensor([1.0]))
    assert out.lip_shape is None and out.face_condition.shape == (cfg.expression_dim,)


def test_speaker_code_leaves_the_audio_only_the_opening_and_the_bias_centres_it(cfg):
    cfg = dataclasses.replace(cfg, articulation=True)
    torch.manual_seed(0)
    model = MotionModel(cfg)
    face, lips, mouth, audio, expr = _inputs(cfg)
    other = torch.randn(audio.shape, generator=torch.Generator().manual_seed(5))
    opening = torch.tensor([0.7])
    # Without a speaker code, two audios at the same (tracked) opening move the face differently...
    a, b = (model(face, lips, mouth, w, expr, lip_shape=opening) for w in (audio, other))
    assert not torch.allclose(a.face.d_means, b.face.d_means)
    assert not torch.allclose(a.mouth_d_means, b.mouth_d_means)
    # ...with one, not at all: the branches read the code, the audio only sets the opening.
    code = model.umf.audio_code(other)
    model.set_calibration(code, [0.25])
    a, b = (model(face, lips, mouth, w, expr, lip_shape=opening) for w in (audio, other))
    assert torch.equal(a.face.d_means, b.face.d_means) and torch.equal(a.mouth_d_means, b.mouth_d_means)
    assert torch.equal(a.audio_code, code)
    driven = model(face, lips, mouth, audio, expr)
    raw = model.umf.lip_shape(model.umf.audio_code(audio).unsqueeze(0), audio.unsqueeze(0)).squeeze(0)
    assert torch.allclose(driven.lip_shape, raw - 0.25)
    assert not torch.allclose(driven.face.d_means, a.face.d_means)  # the predicted opening still moves the face
    model.set_calibration(code, [0.25], [0.4])  # the gain scales the centred prediction
    assert torch.allclose(model(face, lips, mouth, audio, expr).lip_shape, (raw - 0.25) * 0.4)
    model.set_calibration(None, [0.0])
    assert torch.equal(model(face, lips, mouth, audio, expr).lip_shape, raw)


def test_the_audio_nets_are_skipped_where_nothing_reads_or_trains_them(cfg):
    """With a speaker code and a given lip shape, the audio nets' output is read by no branch; it is computed only
    where a loss on the predicted lip shape could train them."""
    cfg = dataclasses.replace(cfg, articulation=True)
    torch.manual_seed(0)
    model = MotionModel(cfg)
    face, lips, mouth, audio, expr = _inputs(cfg)
    opening = torch.tensor([0.7])
    passes = []
    model.umf.audio_encoder.register_forward_hook(lambda *_: passes.append(1))

    def run(**kw):
        passes.clear()
        return model(face, lips, mouth, audio, expr, **kw), len(passes)

    model.set_calibration(model.umf.audio_code(audio).detach(), [0.25])
    trained, n = run(lip_shape=opening)  # the nets require grad: the articulation loss could train them
    assert n == 1 and trained.lip_shape is not None and trained.lip_shape.requires_grad
    model.umf.requires_grad_(False)  # a fixed UMF, as adaptation keeps it
    fixed, n = run(lip_shape=opening)
    assert n == 0 and fixed.lip_shape is None
    for a, b in ((fixed.face.d_means, trained.face.d_means), (fixed.mouth_d_means, trained.mouth_d_means),
                 (fixed.face_condition, trained.face_condition), (fixed.audio_code, trained.audio_code)):
        assert torch.equal(a, b)
    model.umf.requires_grad_(True)
    with torch.no_grad():  # rendering a rest: no loss at all
        assert run(lip_shape=opening)[1] == 0
        driven, n = run()  # driven by the audio: the prediction is the condition
        assert n == 1 and driven.lip_shape is not None
    model.set_calibration(None, [0.0])  # each frame's own code: the branches read it
    with torch.no_grad():
        assert run(lip_shape=opening)[1] == 1


def test_state_round_trips_through_safetensors(cfg, tmp_path):
    torch.manual_seed(0)
    model = MotionModel(cfg, with_aligner=True)
    with torch.no_grad():
        model.aligner.offset_head.weight.normal_()  # leave the identity so the aligner's weights matter
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    torch.manual_seed(1)
    back = MotionModel(cfg, with_aligner=True)
    back.load_state_dict(load_file(tmp_path / "m.safetensors"))
    args = _inputs(cfg)
    assert torch.equal(model(*args).face.d_means, back(*args).face.d_means)


def test_param_groups_split_grids_from_networks(cfg):
    model = MotionModel(cfg, with_aligner=True)
    groups = param_groups(model, cfg.optim)
    grids, nets = groups
    assert grids["lr"] == cfg.optim.lr_grid == 5e-3 and nets["lr"] == cfg.optim.lr_net == 5e-4
    assert len(grids["params"]) == 3  # face and mouth tri-planes, the aligner's 3D grid
    assert len(grids["params"]) + len(nets["params"]) == len(list(model.parameters()))
    torch.optim.AdamW(groups)
    # A module's own network rate (adaptation's aligner and hook: `optim.lr_adapt_net`) leaves the grids' alone.
    grids, nets = param_groups(model.aligner, cfg.optim, lr_net=2e-3)
    assert nets["lr"] == 2e-3 and grids["lr"] == cfg.optim.lr_grid


@pytest.mark.parametrize("window, k", [(16, 4), (4, 4), (8, 1), (6, 2)])
def test_frame_audio_windows_are_centred_and_clamped(window, k):
    cfg = AudioConfig(feature_dim=3, window=window, smooth_window=8)
    t = 30
    steps = torch.arange(t * k, dtype=torch.float32).reshape(t, k, 1).expand(t, k, 3)  # value = step index
    out = frame_audio_windows(steps, 10, cfg)
    assert out.shape == (8, window, 3)
    for slot in range(8):
        frame = 10 - 4 + slot
        centre = frame * k + k // 2
        expected = torch.arange(centre - window // 2, centre - window // 2 + window, dtype=torch.float32)
        assert torch.equal(out[slot, :, 0], expected)
    # At the start of the clip, frames before it repeat frame 0.
    first = frame_audio_windows(steps, 0, cfg)
    assert first.min() >= 0 and torch.equal(first[0], first[1])
    assert frame_audio_windows(steps, t - 1, cfg).max() <= t * k - 1


def test_articulation_reads_several_lip_coefficients(cfg):
    cfg = dataclasses.replace(cfg, articulation=True, lip_coeffs=("mouth_open", "mouth_width"))
    torch.manual_seed(0)
    model = MotionModel(cfg)
    args = _inputs(cfg)
    out = model(*args)
    assert out.lip_shape.shape == (2,) and cfg.condition_dim == cfg.expression_dim + 2
    assert torch.equal(out.face_condition[-2:], out.lip_shape)
    wider = model(*args, lip_shape=torch.tensor([0.0, 2.0]))  # the width alone moves the face too
    assert not torch.allclose(wider.face.d_means, model(*args, lip_shape=torch.tensor([0.0, 0.0])).face.d_means)
    with pytest.raises(ValueError, match="2 values"):
        model.set_calibration(None, [0.0])


@pytest.mark.parametrize("coeffs", [(), ("mouth_width",), ("mouth_open", "mouth_open")])
def test_lip_coefficients_must_start_with_the_opening(cfg, coeffs):
    with pytest.raises(InputError, match="model.lip_coeffs"):
        dataclasses.replace(cfg, lip_coeffs=coeffs)
