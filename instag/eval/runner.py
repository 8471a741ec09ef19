"""`instag eval`: render a dataset split from its audio, poses and blinks through an avatar and score it against
the ground-truth frames.

The head is rendered; the background plate and the evaluated frame's own neck/torso pixels are composited under
it, exactly as training and rendering replay the clip's torso, so the figures measure the head. Lip landmarks of
render and ground truth come from the same face tracker preprocessing uses (one tracker instance per stream,
each fed its frames in order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instag.avatar.bundle import Avatar, load_avatar
from instag.avatar.rest import lip_rest
from instag.data import facemesh as fm
from instag.data.dataset import Dataset, load_dataset
from instag.errors import InputError
from instag.eval import metrics as M
from instag.motion.audio import frame_audio_windows
from instag.render.avatar import FrameCondition, expression_matrix
from instag.render.plate import paste_torso

Progress = Callable[[int, int], None]
# mouth_open_spread: the rendered opening's standard deviation over the tracked one's (1: the avatar opens its
# mouth as widely as the person does; a dub that only mumbles scores well below).
EVAL_KEYS = ("psnr_full", "psnr_face", "psnr_mouth", "ssim_full", "ssim_face", "ssim_mouth", "lmd",
             "mouth_open_corr", "mouth_open_spread", "n_frames")


def mouth_opening(lm: np.ndarray) -> float:
    """Inner-lip gap over the outer-eye-corner distance (scale-free), from landmarks [478, 2]."""
    gap = np.linalg.norm(lm[fm.UPPER_LIP_INNER] - lm[fm.LOWER_LIP_INNER])
    eyes = np.linalg.norm(lm[fm.RIGHT_EYE_OUTER] - lm[fm.LEFT_EYE_OUTER])
    return float(gap / max(eyes, 1e-6))


def score_frames(
    pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],  # (rendered, ground truth, GT landmarks [478, 2])
    track: bool = True,
) -> dict[str, Any]:
    """Metrics over (render, ground truth) uint8 [S, S, 3] frame pairs; the landmarks place the face and mouth
    crops. LMD and the mouth-opening correlation use the frames where the tracker finds a face in both (None if
    none)."""
    sums = {"psnr_full": 0.0, "psnr_face": 0.0, "psnr_mouth": 0.0, "ssim_full": 0.0, "ssim_face": 0.0,
            "ssim_mouth": 0.0}
    n = 0
    lmd, open_r, open_g = [], [], []
    trackers = (fm.FaceTracker(), fm.FaceTracker()) if track else None
    mouth = fm.LIP_INDICES
    try:
        for pred, gt, gt_lm in pairs:
            size = gt.shape[0]
            sums["psnr_full"] += M.psnr(pred, gt)
            sums["ssim_full"] += M.ssim(pred, gt)
            for name, box in (("face", M.face_box(gt_lm, size)), ("mouth", M.mouth_box(gt_lm[mouth, :2], size))):
                sums[f"psnr_{name}"] += M.psnr(M.crop(pred, box), M.crop(gt, box))
                sums[f"ssim_{name}"] += M.ssim(M.crop(pred, box), M.crop(gt, box))
            n += 1
            if trackers is not None:
                centre = tuple(float(v) for v in gt_lm.mean(0))
                lr = trackers[0].track(pred, centre)
                lg = trackers[1].track(gt, centre)
                if lr is not None and lg is not None:
                    lmd.append(M.landmark_distance(lr[mouth, :2], lg[mouth, :2]))
                    open_r.append(mouth_opening(lr[:, :2]))
                    open_g.append(mouth_opening(lg[:, :2]))
    finally:
        if trackers is not None:
            for tr in trackers:
                tr.close()
    if n == 0:
        raise InputError("eval: no frames to score")
    out: dict[str, Any] = {k: v / n for k, v in sums.items()}
    out["lmd"] = float(np.mean(lmd)) if lmd else None
    out["mouth_open_corr"] = M.correlation(np.array(open_r), np.array(open_g)) if len(lmd) > 1 else None
    spread_g = float(np.std(open_g)) if len(lmd) > 1 else 0.0
    out["mouth_open_spread"] = float(np.std(open_r)) / spread_g if spread_g > 0 else None
    out["n_frames"] = n
    out["n_tracked"] = len(lmd)
    return out


class DatasetDrive:
    """What drives an avatar through a dataset's frames: its speech features, expressions, poses and intrinsics,
    checked against the avatar's audio features."""

    def __init__(self, av: Avatar, ds: Dataset) -> None:
        kind = av.meta["audio_feature"]
        self.features = torch.from_numpy(np.array(ds.audio_features(kind), dtype=np.float32))  # [T, K, D]
        if list(self.features.shape[1:]) != list(av.meta["audio_feature_shape"]):
            raise InputError(f"{ds.path}: '{kind}' features are {list(self.features.shape[1:])} per frame, "
                             f"the avatar was trained on {av.meta['audio_feature_shape']}")
        self.audio_cfg = av.cfg.audio
        self.expression = torch.from_numpy(expression_matrix(ds.tracks, av.cfg.expression_dim))  # [T, E]
        self.viewmats = torch.from_numpy(ds.tracks["viewmats"].astype(np.float32))  # [T, 4, 4]
        self.K = torch.from_numpy(ds.intrinsics.astype(np.float32))  # [3, 3] at the dataset's size
        self.size = ds.size
        # The lips rest through long silences as in a dub, so the scores hold for dubs (a dataset made without its
        # audio, as the synthetic ones are, has only its features: no silences to find).
        self.rest = None
        if av.cfg.articulation and (ds.path / "audio.wav").is_file():
            audio, rate = ds.audio()
            self.rest = lip_rest(av, audio, rate, len(self.features))

    def condition(self, t: int, background: torch.Tensor, size: int | None = None,
                  audio_t: int | None = None) -> FrameCondition:
        """Frame `t`'s condition at `size`² (the dataset's when None) over background [size, size, 3] in [0, 1],
        with the speech of frame `audio_t` (t's own when None)."""
        size = size or self.size
        k = self.K.clone()
        k[:2] *= size / self.size
        a = t if audio_t is None else audio_t
        windows = frame_audio_windows(self.features, a, self.audio_cfg)
        return FrameCondition(audio_windows=windows, expression=self.expression[t], viewmat=self.viewmats[t], K=k,
                              width=size, height=size, background=background,
                              lip_shape=None if self.rest is None else self.rest.lips(a, windows))


def render_split(av: Avatar, dataset: str | Path, split: str = "test",
                 limit: int | None = None) -> Iterable[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(frame index, render, ground truth, GT landmarks) for each frame of the dataset split, rendered from the
    dataset's audio features, poses and blinks."""
    ds = load_dataset(dataset)
    if ds.size != av.size:
        raise InputError(f"{ds.path}: frames are {ds.size}², the avatar renders {av.size}²")
    drive = DatasetDrive(av, ds)
    if split not in ("train", "test"):
        raise InputError(f"--split {split}: must be train or test")
    indices = ds.test_indices if split == "test" else ds.train_indices
    if len(indices) == 0:
        raise InputError(f"{ds.path}: the {split} split is empty (preprocess with --test-from to hold frames out)")
    if limit:
        indices = indices[:limit]
    landmarks = ds.tracks["landmarks"]
    torso_id = int(ds.meta["labels"]["neck_torso"])
    for t in indices:
        t = int(t)
        gt = ds.frame(t)
        background = paste_torso(av.plate, gt, ds.label(t), torso_id)
        img = av.render(drive.condition(t, torch.from_numpy(background).float() / 255.0)).image
        pred = np.round(img.clamp(0, 1).numpy() * 255.0).astype(np.uint8)
        yield t, pred, gt, landmarks[t]


def evaluate(avatar: str | Path, dataset: str | Path, split: str = "test", limit: int | None = None,
             progress: Progress | None = None, save_frames: Path | None = None) -> dict[str, Any]:
    """Metrics (EVAL_KEYS, plus n_tracked) of the avatar on the dataset split."""
    av = load_avatar(avatar)
    ds = load_dataset(dataset)
    n = len(ds.test_indices if split == "test" else ds.train_indices)
    total = min(n, limit) if limit else n

    def pairs():
        for i, (t, pred, gt, lm) in enumerate(render_split(av, dataset, split, limit)):
            if save_frames is not None:
                import cv2

                save_frames.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(save_frames / f"{t:06d}.png"), np.concatenate([gt, pred], 1)[..., ::-1])
            if progress:
                progress(i + 1, total)
            yield pred, gt, lm

    track = fm.tracker_available()
    out = score_frames(pairs(), track=track)
    if not track:
        out["untracked"] = "mediapipe is not installed: no LMD or mouth-opening figures"
    out["split"] = split
    out["avatar"] = str(Path(avatar))
    out["dataset"] = str(Path(dataset))
    return out
