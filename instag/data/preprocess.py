"""`preprocess_clip`: a talking clip → a dataset dir (DESIGN §2, §4), written atomically.

Frames are streamed twice: a low-resolution pass finds the face and the clip's crop box, a full-resolution pass
crops, tracks, segments and writes each frame. Memory grows with clip length only at the output size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile

from instag.atomic import atomic_dir
from instag.audio import features as af
from instag.audio.silence import silent_mask
from instag.audio.sync import SyncEstimate, candidate_lags, estimate_lag, shift_audio
from instag.config import to_dict
from instag.config.preprocess import PreprocessConfig
from instag.data import facemesh as fm
from instag.data.crop import CropPlan, crop_square, frame_ranges, missing_face_error, plan_crop
from instag.data.dataset import frame_name, write_face_mesh, write_meta
from instag.data.geometry import encode_depth, encode_normal, render_depth_normal
from instag.data.labels import background_plate, label_map
from instag.data.pose import PoseFit, face_signals, fit_pose, interpolate_missing, intrinsics
from instag.data.video import ClipInfo, cfr_frame_count, iter_frames, probe, read_audio, sha256_of
from instag.errors import InputError

Progress = Callable[[str, int, int], None]
# Front ends whose shipped UMF can judge a clip's audio offset, best first (benchmarks/lips_cpu.md: Whisper's
# opening follows held-out people's lips about twice as closely as log-mel's).
SYNC_KINDS = ("whisper", "mel")
# Less speech than this in the frames trained on earns a warning: the lips' link to the voice is learnt from it.
MIN_SPEECH_S = 2.0


@dataclass
class PreprocessResult:
    path: Path
    n_frames: int
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)  # wall time per stage


class _Stages:
    def __init__(self, result: PreprocessResult):
        self.result = result
        self.t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.result.timings_s[name] = round(now - self.t, 3)
        self.t = now


def _check_features(cfg: PreprocessConfig) -> dict[str, Any]:
    """Each requested feature kind's front end, loaded before any work so a bad model fails first."""
    return {kind: af.load_front_end(kind, cfg.audio_model) for kind in cfg.audio_features}


def preprocess_clip(clip: str | Path, out: str | Path, cfg: PreprocessConfig, force: bool = False,
                    progress: Progress | None = None) -> PreprocessResult:
    """Turn `clip` into the dataset dir `out`. Raises InputError (nothing written) for unusable input."""
    clip, out = Path(clip), Path(out)
    result = PreprocessResult(out, 0)
    stages = _Stages(result)
    _check_request(out, cfg, force)
    models = _check_features(cfg)
    info, n, audio = read_clip(clip, cfg)
    stages.done("probe_audio")

    plan = plan_crop(info, cfg, n, progress)
    result.warnings.extend(plan.warnings)
    stages.done("detect")

    with atomic_dir(out, force=force) as tmp:
        for sub in ("frames", "labels", "audio", "geometry/depth", "geometry/normal"):
            (tmp / sub).mkdir(parents=True)
        tracked = track_frames(tmp, info, plan, cfg, n, progress)
        if tracked.missing.size:
            result.warnings.append(f"{clip}: no face tracked in frames {frame_ranges(tracked.missing)}; interpolated")
        stages.done("track")
        result.timings_s["track"] = round(result.timings_s["track"] - tracked.label_s, 3)
        result.timings_s["labels"] = round(tracked.label_s, 3)

        pose = fit_pose(tracked.pts, cfg.size, cfg.fps, cfg.pose_cutoff_hz, cfg.default_fov_deg, cfg.eye_distance_m)
        signals = face_signals(pose.local_shapes)
        np.savez(tmp / "tracks.npz", viewmats=pose.viewmats, landmarks=tracked.pts[..., :2].astype(np.float32),
                 blink=signals["blink"], expression=signals["expression"], mouth_open=signals["mouth_open"])
        stages.done("pose")

        plate = background_plate(np.stack([f for f, _ in tracked.background]),
                                 np.stack([m for _, m in tracked.background]))
        cv2.imwrite(str(tmp / "background.png"), plate[..., ::-1])
        tracked.background.clear()  # the sampled frames are held no longer than the plate needs them
        stages.done("background")

        tris = fm.orient_triangles(fm.mesh_triangles(), pose.shape)
        _write_geometry(tmp, tracked.pts, pose, tris, cfg.size, progress)
        write_face_mesh(tmp, pose.shape, tris)
        stages.done("geometry")

        n_train = n if cfg.test_from_s is None else int(np.clip(round(cfg.test_from_s * cfg.fps), 1, n))
        sync, sync_feats = _find_offset(audio, signals["mouth_open"], n_train, cfg)
        if sync is not None and sync[0].lag_frames:
            audio = shift_audio(audio, cfg.sample_rate, sync[0].lag_frames, cfg.fps)
            sync_feats = {}  # of the audio before the shift
            if sync[1] != "given" and sync[0].lag_frames not in candidate_lags(cfg.fps):
                ms = round(1000 * sync[0].offset_s(cfg.fps))
                result.warnings.append(f"{clip}: the sound {'lags' if ms > 0 else 'leads'} the picture by {abs(ms)} "
                                       f"ms, more than a viewer lets pass; moved it to match (--audio-offset-frames N "
                                       f"sets the offset yourself)")
        speech = ~silent_mask(af.energy_envelope(audio, cfg.sample_rate, cfg.fps, n))  # [T]
        speech_s = float(speech[:n_train].sum()) / cfg.fps
        if speech_s < MIN_SPEECH_S:
            result.warnings.append(f"{clip}: only {speech_s:.1f} s of the {n_train / cfg.fps:.1f} s trained on hold "
                                   f"speech, too little for the avatar to learn how the lips follow the voice (record "
                                   f"yourself talking)")
        stages.done("sync")

        soundfile.write(tmp / "audio.wav", audio, cfg.sample_rate, subtype="PCM_16")
        feature_meta = _write_features(tmp, audio, models, sync_feats, cfg, n)
        stages.done("audio_features")

        write_meta(
            tmp, n_frames=n, fps=cfg.fps, size=cfg.size, focal=pose.focal, focal_fitted=pose.focal_fitted,
            n_train=n_train, source=_source_meta(clip, info),
            crop_box={"x0": plan.x0, "y0": plan.y0, "side": plan.side},
            audio={"sample_rate": cfg.sample_rate, "features": feature_meta, "sync": _sync_meta(sync, cfg)},
            tracking={"face_found_fraction": round((n - tracked.missing.size) / n, 4),
                      "missing_frames": _ranges_list(tracked.missing), "face_px": round(plan.face_px, 1),
                      "reprojection_px": round(pose.reprojection_px, 3)},
            preprocess=to_dict(cfg))
        stages.done("write")
    result.n_frames = n
    return result


def _check_request(out: Path, cfg: PreprocessConfig, force: bool) -> None:
    """Refuse an existing `out` without `force`, and sizes or rates no dataset can have."""
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (pass --force to replace it)")
    if cfg.size < 64 or cfg.fps <= 0:
        raise InputError(f"--size {cfg.size} / --fps {cfg.fps}: size must be ≥ 64 and fps positive")


def read_clip(clip: Path, cfg: PreprocessConfig) -> tuple[ClipInfo, int, np.ndarray]:
    """The clip probed (InputError if unusable), its frame count at cfg.fps, and its audio [N] float32 mono at
    cfg.sample_rate spanning exactly those frames."""
    info = probe(clip, cfg.min_duration_s)
    n = cfr_frame_count(info, cfg.fps)
    return info, n, read_audio(info, cfg.sample_rate, int(round(n / cfg.fps * cfg.sample_rate)))


@dataclass
class Tracked:
    """What the full-resolution pass found in the clip's frames."""

    pts: np.ndarray  # [T, 478, 3] landmarks in output pixels (x, y; z on the x scale), missing frames interpolated
    missing: np.ndarray  # [M] frames in which no face was tracked
    background: list[tuple[np.ndarray, np.ndarray]]  # sampled (frame [S, S, 3] uint8, person mask [S, S] uint8)
    label_s: float  # seconds of the pass spent on label maps


def track_frames(root: Path, info: ClipInfo, plan: CropPlan, cfg: PreprocessConfig, n: int,
                 progress: Progress | None) -> Tracked:
    """Crop, track and segment each of the `n` frames, writing frames/ and labels/ under `root`. InputError when
    no face is tracked in more than cfg.max_missing_face_fraction of them."""
    s = cfg.size
    zoom = s / plan.side
    pts = np.zeros((n, fm.N_LANDMARKS, 3), np.float32)
    found = np.zeros(n, bool)
    pending: dict[int, np.ndarray] = {}  # person masks [S, S] of frames still waiting for landmarks
    label_s = 0.0
    bg_every = max(1, n // cfg.background_samples)
    background = []
    tracker, segmenter = fm.FaceTracker(), fm.PersonSegmenter()
    try:
        last = np.array([s / 2, s / 2])
        for i, img in enumerate(iter_frames(info, cfg.fps, n)):
            crop = crop_square(img, plan.x0, plan.y0, plan.side, s)
            del img
            if not np.isnan(plan.centres[i, 0]):
                last = (plan.centres[i] - (plan.x0, plan.y0)) * zoom
            lm = tracker.track(crop, (float(last[0]), float(last[1])))
            person = np.round(segmenter.segment(crop) * 255).astype(np.uint8)
            t0 = time.perf_counter()
            if lm is not None:
                pts[i], found[i] = lm, True
                cv2.imwrite(str(root / "labels" / f"{frame_name(i)}.png"), label_map(lm[:, :2], person))
            elif len(pending) <= cfg.max_missing_face_fraction * n:  # beyond that the clip is refused below
                pending[i] = person
            label_s += time.perf_counter() - t0
            if i % bg_every == 0 and len(background) < cfg.background_samples:
                background.append((crop, person))
            cv2.imwrite(str(root / "frames" / f"{frame_name(i)}.jpg"), crop[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
            if progress:
                progress("track", i + 1, n)
    finally:
        tracker.close()
        segmenter.close()
    missing = np.flatnonzero(~found)
    if len(missing) > cfg.max_missing_face_fraction * n:
        raise missing_face_error(info, missing, n)
    pts = interpolate_missing(pts, found)
    for i, person in pending.items():
        cv2.imwrite(str(root / "labels" / f"{frame_name(i)}.png"), label_map(pts[i, :, :2], person))
    return Tracked(pts, missing, background, label_s)


def frame_mesh_vertices(pts: np.ndarray, pose: PoseFit, k: np.ndarray) -> Iterator[np.ndarray]:
    """Each frame's face mesh vertices [468, 3] in camera space (float64): the frame's landmarks `pts`
    [T, 478, ≥2] (output pixels) lifted along their rays to the depth of the fitted face; `k` [3, 3]."""
    kinv = np.linalg.inv(k)
    nv = fm.N_MESH_VERTICES
    for i in range(len(pts)):
        r, t = pose.viewmats[i, :3, :3].astype(np.float64), pose.viewmats[i, :3, 3].astype(np.float64)
        cam = pose.local_shapes[i, :nv].astype(np.float64) @ r.T + t
        rays = np.concatenate([pts[i, :nv, :2], np.ones((nv, 1))], 1) @ kinv.T
        yield rays * cam[:, 2:3]


def _write_geometry(root: Path, pts: np.ndarray, pose: PoseFit, tris: np.ndarray, size: int,
                    progress: Progress | None) -> None:
    """Depth and normal priors per frame of the face mesh (triangles `tris` [F, 3]) in each frame."""
    k = intrinsics(pose.focal, size)
    fast = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for i, verts in enumerate(frame_mesh_vertices(pts, pose, k)):
        depth, normal = render_depth_normal(verts, tris, k, size)
        cv2.imwrite(str(root / "geometry" / "depth" / f"{frame_name(i)}.png"), encode_depth(depth), fast)
        cv2.imwrite(str(root / "geometry" / "normal" / f"{frame_name(i)}.png"), encode_normal(normal, depth)[..., ::-1], fast)
        if progress:
            progress("geometry", i + 1, len(pts))


def _find_offset(audio: np.ndarray, mouth_open: np.ndarray, n_train: int, cfg: PreprocessConfig
                 ) -> tuple[tuple[SyncEstimate, str] | None, dict[str, np.ndarray]]:
    """The audio's offset as cfg asks: given, estimated (`_sync_audio`) or none; and any features computed."""
    if cfg.audio_offset_frames is not None:
        return (SyncEstimate(cfg.audio_offset_frames, {}, 0.0), "given"), {}
    if cfg.sync_audio:
        return _sync_audio(audio, mouth_open, n_train, cfg)
    return None, {}


def _write_features(root: Path, audio: np.ndarray, models: dict[str, Any], sync_feats: dict[str, np.ndarray],
                    cfg: PreprocessConfig, n: int) -> dict[str, dict[str, Any]]:
    """audio/<kind>.npy for each requested kind of the final `audio` [N] (reusing the sync's features [T, K, D]
    where they are of it); returns their meta entries (shape, source)."""
    feature_meta = {}
    for kind in cfg.audio_features:
        feats = sync_feats.get(kind)
        if feats is None or (kind != "mel" and cfg.audio_model is not None):  # the sync read packaged weights
            feats = af.compute_features(kind, models[kind], audio, cfg.fps, n, cfg.mel_bins)
        np.save(root / "audio" / f"{kind}.npy", feats)
        feature_meta[kind] = {"shape": list(feats.shape), "source": af.feature_source(kind, models[kind])}
    return feature_meta


def _source_meta(clip: Path, info: ClipInfo) -> dict[str, Any]:
    return {"path": str(clip.resolve()), "sha256": sha256_of(clip), "width": info.width, "height": info.height,
            "rotation_deg": info.rotation_k * 90, "video_codec": info.codec, "audio_codec": info.audio_codec,
            "duration_s": round(info.duration_s, 4)}


def _sync_audio(audio: np.ndarray, mouth_open: np.ndarray, n_train: int,
                cfg: PreprocessConfig) -> tuple[tuple[SyncEstimate, str] | None, dict[str, np.ndarray]]:
    """The sound's offset to the picture over the training frames (mouth_open [T]), read with the shipped UMF's
    mouth-opening prediction of the first front end in SYNC_KINDS that has one (the packaged weights, whatever model
    the clip's own features come from), and that front end's kind (None without such a UMF); and the features it
    computed ({kind: [T, K, D]}), which the dataset reuses when the audio stays where it is."""
    from instag.motion.umf_file import predict_opening  # the motion model, only for a sync

    kind = sync_kind()
    if kind is None:
        return None, {}
    feats = af.compute_features(kind, af.load_front_end(kind, None), audio, cfg.fps, len(mouth_open), cfg.mel_bins)
    predicted = predict_opening(feats, kind)
    if predicted is None:
        return None, {kind: feats}
    return (estimate_lag(predicted, mouth_open, np.arange(n_train), cfg.fps), kind), {kind: feats}


def sync_kind() -> str | None:
    """The front end whose shipped UMF the sync reads: the first in SYNC_KINDS that has one (None: none has)."""
    from instag.motion.umf_file import shipped_umf

    return next((k for k in SYNC_KINDS if shipped_umf(k) is not None), None)


def sync_umf_sha256() -> str | None:
    """sha256 of the UMF file the sync reads now, None when there is none."""
    from instag.motion.umf_file import shipped_umf, umf_paths

    kind = sync_kind()
    return None if kind is None else sha256_of(umf_paths(shipped_umf(kind))[0])


def sync_reader_sha256() -> str | None:
    """The lip predictor's digest (`umf_file.lip_predictor_sha256`) of the UMF the sync reads now, None when there
    is none: a dataset's recorded one says whether its audio was placed as it would be now."""
    from instag.motion.umf_file import lip_predictor_sha256, shipped_umf

    kind = sync_kind()
    return None if kind is None else lip_predictor_sha256(shipped_umf(kind))


def placed_as_now(sync: dict[str, Any]) -> bool:
    """Whether a dataset's recorded sync (its meta's `audio.sync`) read the lip predictor the sync reads now; one
    recorded before the predictor's digest names only its UMF file, which counts where a shipped UMF with that
    sha256 reads the same predictor."""
    from instag.motion.umf_file import UMF_DIR, lip_predictor_sha256

    recorded = sync.get("umf_lip_predictor_sha256")
    if recorded is None and "umf_sha256" in sync:
        recorded = next((lip_predictor_sha256(st) for st in sorted(UMF_DIR.glob("*.safetensors"))
                         if sha256_of(st) == sync["umf_sha256"]), "another UMF")
    return recorded == sync_reader_sha256()


def _sync_meta(found: tuple[SyncEstimate, str] | None, cfg: PreprocessConfig) -> dict:
    if found is None:
        return {"offset_s": 0.0, "method": "unavailable (no shipped UMF reads speech features through a "
                                           "mouth-opening prediction)" if cfg.sync_audio else "off (--no-sync)"}
    sync, kind = found
    if kind == "given":
        return {"offset_s": round(sync.offset_s(cfg.fps), 4), "method": "given (--audio-offset-frames)"}
    return {"offset_s": round(sync.offset_s(cfg.fps), 4), "method": f"shipped {kind} UMF mouth-opening prediction",
            "umf_sha256": sync_umf_sha256(), "umf_lip_predictor_sha256": sync_reader_sha256(),
            "effective_frames": round(sync.effective_frames, 2),
            "correlation_by_lag_frames": {str(k): round(v, 4) for k, v in sync.correlations.items()}}


def _ranges_list(frames: np.ndarray) -> list[list[int]]:
    out: list[list[int]] = []
    for f in frames.tolist():
        if out and out[-1][1] == f - 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out
