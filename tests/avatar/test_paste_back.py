"""Paste-back's parts without an avatar: rects in rotated frames, the source's frames in YUV at a constant rate
(the same pictures as the data module's RGB decoding, decoded only as far as asked), and the head laid over them
(untouched pixels outside it, the head's colour inside, rotated sources handled in the coded orientation)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from instag.avatar.paste_back import HeadLayers, PasteBack, coded_rect, lower_face_weight
from instag.avatar.seam_match import SeamMatch
from instag.avatar.source_timing import interpolate_viewmat
from instag.avatar.source_video import SourceVideo
from instag.data.video import iter_frames, probe
from instag.errors import InputError


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25, rotation: int = 0,
               pix_fmt: str = "yuv420p") -> Path:
    """H.264 (crf 0) + AAC clip of RGB frames [H, W, 3] uint8 (coded orientation) with a display rotation."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        vs.options = {"crf": "0"}
        if rotation:
            vs.set_display_rotation(rotation)
        aus = c.add_stream("aac", rate=16000, layout="mono")
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(vs.encode(f))
        c.mux(vs.encode(None))
        tone = np.sin(np.arange(16000 * len(frames) // fps) / 5.0).astype(np.float32)[None] * 0.1
        af = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        c.mux(aus.encode(af))
        c.mux(aus.encode(None))
    return path


def moving_frames(n: int, h: int = 72, w: int = 96) -> list[np.ndarray]:
    y, x = np.mgrid[:h, :w].astype(np.float32)
    return [np.stack([128 + 90 * np.sin(x / 9.0 + i), 128 + 90 * np.cos(y / 7.0 - i * 0.5),
                      128 + 60 * np.sin((x + y) / 11.0)], -1).clip(0, 255).astype(np.uint8) for i in range(n)]


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_coded_rect_names_the_same_pixels_as_the_displayed_rect(k):
    coded = np.arange(6 * 10).reshape(6, 10)
    shown = np.rot90(coded, k)
    x0, y0, x1, y1 = 1, 2, 4, 5
    if shown.shape[1] < x1 or shown.shape[0] < y1:
        x0, y0, x1, y1 = 1, 0, 3, 4
    cx0, cy0, cx1, cy1 = coded_rect((x0, y0, x1, y1), k, coded.shape[1], coded.shape[0])
    assert np.array_equal(np.rot90(coded[cy0:cy1, cx0:cx1], k), shown[y0:y1, x0:x1])


@pytest.mark.parametrize("decoder_threads", [0, 1])
def test_source_video_gives_iter_frames_pictures_at_a_constant_rate_and_decodes_only_what_is_asked(
        tmp_path, decoder_threads):
    # 30 fps source read at 25 fps: frames are picked as the data module picks them, whatever the decoder's threads
    clip = write_clip(tmp_path / "src.mp4", moving_frames(15), fps=30)
    want = list(iter_frames(probe(clip, 0.0), 25.0, 12))
    src = SourceVideo(clip, 25.0, decoder_threads=decoder_threads)
    try:
        assert src.n_frames == 12
        planes = src.frame(3)
        assert src.decoded == 4 and planes.shape == (72 * 3 // 2, 96)
        for i in (3, 0, 7, 11):  # backwards too (ping-pong replay reads what is already decoded)
            rgb = av.VideoFrame.from_ndarray(np.array(src.frame(i)), format="yuv420p").to_ndarray(format="rgb24")
            assert np.array_equal(rgb, want[i]), i
        with pytest.raises(InputError, match="yields 12 frames"):
            src.frame(12)
    finally:
        src.close()


def test_a_source_smaller_than_the_write_buffer_reads_back_its_frames(tmp_path):
    # 16×16 frames are far smaller than the temp file's write buffer: reading one back must see it written.
    clip = write_clip(tmp_path / "tiny.mp4", moving_frames(10, 16, 16))
    want = list(iter_frames(probe(clip, 0.0), 25.0, 4))
    src = SourceVideo(clip, 25.0)
    try:
        for i in (0, 3, 1):
            rgb = av.VideoFrame.from_ndarray(np.array(src.frame(i)), format="yuv420p").to_ndarray(format="rgb24")
            assert np.array_equal(rgb, want[i]), i
    finally:
        src.close()


def test_odd_sized_sources_are_refused_with_one_line(tmp_path):
    clip = write_clip(tmp_path / "odd.mp4", [f[:, :95] for f in moving_frames(3)], pix_fmt="yuv444p")
    with pytest.raises(InputError, match="even frame sizes"):
        src = SourceVideo(clip, 25.0)
        src.close()


def _avatar(tmp_path: Path, crop: tuple[int, int, int], width: int, height: int) -> SimpleNamespace:
    return SimpleNamespace(path=tmp_path, drive={"crop_box": np.array(crop)},
                           meta=json.loads(json.dumps({"provenance": {"source": {"width": width, "height": height}}})))


def _head(size: int) -> np.ndarray:
    """[S, S, 4]: an opaque disc of RGB (0.9, 0.1, 0.1) (premultiplied) in the middle, nothing elsewhere."""
    yy, xx = np.mgrid[:size, :size]
    alpha = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2).astype(np.float32)
    return np.dstack([0.9 * alpha, 0.1 * alpha, 0.1 * alpha, alpha])


@pytest.mark.parametrize(("rotation", "pix_fmt"), [(0, "yuv420p"), (90, "yuv420p"), (-90, "yuv420p"),
                                                   (180, "yuv420p"), (0, "yuvj420p")])
def test_compose_pastes_the_head_where_the_crop_is_shown_and_nothing_else(tmp_path, rotation, pix_fmt):
    # yuvj420p: full-range video, which the source's frames are converted from (the head must follow them)
    frames = moving_frames(2)
    clip = write_clip(tmp_path / "src.mp4", frames, rotation=rotation, pix_fmt=pix_fmt)
    src = SourceVideo(clip, 25.0)
    try:
        shown = np.rot90(frames[1], src.rotation_deg // 90)
        h, w = shown.shape[:2]
        crop = (8, 4, 48)  # x0, y0, side in displayed pixels
        plain = SeamMatch(colour=False, detail=False)  # the head's own colour, to check where it lands
        paste = PasteBack(_avatar(tmp_path, crop, w, h), src, render_size=32, match=plain)
        planes = paste.compose(HeadLayers(_head(32), clip_frame=1))
        out = av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgb24")
        out = np.rot90(out, src.rotation_deg // 90)
        before = av.VideoFrame.from_ndarray(np.array(src.frame(1)), format="yuv420p").to_ndarray(format="rgb24")
        before = np.rot90(before, src.rotation_deg // 90)
        x0, y0, side = crop
        disc = np.zeros((h, w), bool)
        yy, xx = np.mgrid[:h, :w]
        centre_x, centre_y = x0 + side / 2, y0 + side / 2
        disc = (yy + 0.5 - centre_y) ** 2 + (xx + 0.5 - centre_x) ** 2 < (side / 4 - 4) ** 2
        # beyond the cubic resampling's reach (2 render pixels) and a chroma sample: the decoded frame
        ring = (yy + 0.5 - centre_y) ** 2 + (xx + 0.5 - centre_x) ** 2 > (side / 4 + 6) ** 2
        assert np.array_equal(out[ring], before[ring])  # bit for bit: the decoder's pixels
        colour = out[disc].astype(int)
        assert np.abs(colour - [230, 26, 26]).max() <= 6  # what the head's RGB is, in the source's colour range
    finally:
        src.close()


def _shown(planes: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(np.array(planes), format="yuv420p").to_ndarray(format="rgb24").astype(float)


def _grey_disc(size: int, level: float) -> np.ndarray:
    """[S, S, 4]: an opaque grey disc (level in [0, 1], premultiplied) in the middle, nothing elsewhere."""
    alpha = _head(size)[..., 3:]
    return np.dstack([alpha * level] * 3 + [alpha])


def test_the_head_takes_the_colour_of_the_source_around_it(tmp_path):
    # the source is flat grey 128 where the head goes; the render is 20 levels darker: the seam would show
    clip = write_clip(tmp_path / "flat.mp4", [np.full((72, 96, 3), 128, np.uint8)] * 3)
    src = SourceVideo(clip, 25.0)
    try:
        crop = (8, 4, 64)
        paste = PasteBack(_avatar(tmp_path, crop, 96, 72), src, render_size=64, match=SeamMatch(detail=False))
        layers = HeadLayers(_grey_disc(64, 108 / 255), clip_frame=0)
        for _ in range(3):
            out = _shown(paste.compose(layers))
        centre = out[4 + 32 - 6:4 + 32 + 6, 8 + 32 - 6:8 + 32 + 6]
        assert np.abs(centre - 128).max() <= 3  # without the offset: 108
        assert 15 < paste.calibration.offset[0] < 20  # luma levels (limited range: 20 · 219/255)
    finally:
        src.close()


def test_the_sources_fine_detail_is_added_where_the_head_agrees_with_it_only(tmp_path):
    # the source: grey 128 with a ±10-level checker 2 px fine (detail finer than a render pixel: the render is
    # 64² over a 128² crop); the head: a disc, left half grey 128 (agrees), right half grey 40 (a changed region)
    yy, xx = np.mgrid[:144, :192]
    texture = (128 + 10 * np.where((yy // 2 + xx // 2) % 2, 1, -1)).astype(np.uint8)
    clip = write_clip(tmp_path / "fine.mp4", [np.dstack([texture] * 3)] * 2)
    src = SourceVideo(clip, 25.0)
    try:
        crop = (16, 8, 128)
        head = _grey_disc(64, 128 / 255)
        head[:, 32:, :3] *= 40 / 128
        paste = PasteBack(_avatar(tmp_path, crop, 192, 144), src, render_size=64, match=SeamMatch(colour=False))
        out = _shown(paste.compose(HeadLayers(head, clip_frame=0)))[..., 1]
        plain = PasteBack(_avatar(tmp_path, crop, 192, 144), src, render_size=64,
                          match=SeamMatch(colour=False, detail=False))
        flat = _shown(plain.compose(HeadLayers(head, clip_frame=0)))[..., 1]
        left, right = (slice(60, 84), slice(58, 76)), (slice(60, 84), slice(86, 104))  # inside the disc's halves
        agree, changed = out[left], out[right]
        assert flat[left].std() < 1.5  # the render alone: no detail
        assert agree.std() > 4 and np.corrcoef(agree.ravel(), texture[left].ravel())[0, 1] > 0.8
        assert changed.std() < 1.5  # where the head differs from the source, none of the source's detail
    finally:
        src.close()


def _mouth(size: int, cx: float, cy: float, width: float) -> np.ndarray:
    """[S, S]: a mouth branch's alpha, an opaque band `width` wide and a quarter of that high at (cx, cy)."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    return ((np.abs(xx - cx) < width / 2) & (np.abs(yy - cy) < width / 8)).astype(np.float32)


def test_the_lower_face_weight_follows_the_mouth():
    mouth = _mouth(128, 70.0, 80.0, 20.0)
    w = lower_face_weight(mouth)
    assert w.shape == mouth.shape and w.dtype == np.float32 and 0 <= w.min() and w.max() <= 1
    assert w[80, 70] == 1 and w[120, 70] == 1  # the mouth and the chin below it: the render's
    assert w[80 - 20, 70] == 0  # above it (a mouth's width: the nose, eyes): the source's
    assert w[80, 70 + 35] == 0 and w[80, 70 - 35] == 0  # beyond the jaw either side
    assert (np.diff(w[:, 70]) >= 0).all()  # it only fades in going down
    moved = lower_face_weight(_mouth(128, 50.0, 60.0, 20.0))
    assert moved[60, 50] == 1 and moved[60 - 20, 50] == 0  # it goes where the mouth goes
    assert (lower_face_weight(np.zeros((16, 16), np.float32)) == 1).all()  # no mouth to place it by: all of it


def test_lower_face_paste_keeps_the_source_above_the_mouth(tmp_path):
    frames = moving_frames(2)
    clip = write_clip(tmp_path / "src.mp4", frames)
    src = SourceVideo(clip, 25.0)
    try:
        h, w = frames[1].shape[:2]
        crop = (8, 4, 48)
        plain = SeamMatch(colour=False, detail=False)
        head = _head(32)
        mouth = _mouth(32, 16.0, 20.0, 6.0)  # the disc's lower part
        whole = PasteBack(_avatar(tmp_path, crop, w, h), src, render_size=32, match=plain, region="head")
        lower = PasteBack(_avatar(tmp_path, crop, w, h), src, render_size=32, match=plain)
        assert lower.region == "lower_face"
        layers = HeadLayers(head, clip_frame=1, mouth_alpha=mouth)
        out_whole, out_lower = (_shown(p.compose(layers)) for p in (whole, lower))
        before = _shown(np.array(src.frame(1)))
        # crop pixel (x, y) shows render pixel (x, y) · 32 / 48: the mouth's row 20 is shown at 4 + 30
        above, at_mouth = (slice(4 + 17, 4 + 20), slice(8 + 21, 8 + 27)), (slice(4 + 29, 4 + 32), slice(8 + 21, 8 + 27))
        assert np.abs(out_lower[above] - before[above]).max() <= 2  # the source's face above the mouth
        assert np.abs(out_whole[above] - before[above]).max() > 50  # (the whole head would cover it)
        assert np.abs(out_lower[at_mouth] - out_whole[at_mouth]).max() <= 2  # the mouth itself is the render
        with pytest.raises(InputError, match="region 'chin'"):
            PasteBack(_avatar(tmp_path, crop, w, h), src, render_size=32, region="chin")
    finally:
        src.close()


def test_viewmat_interpolation_turns_halfway_and_stays_a_rotation():
    def pose(angle: float, x: float) -> torch.Tensor:
        c, s = np.cos(angle), np.sin(angle)
        m = torch.eye(4)
        m[:3, :3] = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        m[0, 3] = x
        return m

    a, b = pose(0.0, 0.0), pose(0.2, 1.0)
    assert interpolate_viewmat(a, b, 0.0) is a
    mid = interpolate_viewmat(a, b, 0.5)
    assert torch.allclose(mid, pose(0.1, 0.5), atol=1e-3)  # a chord's midpoint, projected: the half turn
    assert torch.allclose(mid[:3, :3] @ mid[:3, :3].T, torch.eye(3), atol=1e-5)
    assert torch.allclose(interpolate_viewmat(a, b, 1.0), b, atol=1e-5)
