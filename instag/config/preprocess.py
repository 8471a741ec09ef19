"""Settings of clip preprocessing (`instag preprocess`): one frozen dataclass, filled from flags or a recipe."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PreprocessConfig:
    """How a clip becomes a dataset dir (DESIGN §4). Defaults follow the issue; units are in the names."""

    size: int = 512  # output frame side in pixels (square)
    fps: float = 25.0  # constant output frame rate
    audio_features: tuple[str, ...] = ("whisper",)  # kinds written to audio/<kind>.npy: whisper | mel | hubert | wav2vec2
    audio_model: str | None = None  # local transformers model directory: Whisper (else the packaged one), hubert, wav2vec2
    test_from_s: float | None = None  # frames from this time on are held out as the test split
    min_duration_s: float = 3.0  # shorter clips are refused
    max_missing_face_fraction: float = 0.10  # refuse when no face is tracked in more frames than this
    min_face_px: int = 64  # refuse when the face (median box width, source pixels) is smaller
    dominance_ratio: float = 1.5  # with several faces, the largest must be this many times the next (area)
    detect_max_side: int = 640  # long side of the frames the first pass detects faces on
    crop_scale: float = 2.3  # crop side = this × face size (head, hair and upper neck with a margin)
    crop_drop: float = 0.12  # crop centre sits this × face size below the face centre (room for the neck)
    jpeg_quality: int = 95
    pose_cutoff_hz: float = 4.0  # zero-phase low-pass of the head pose (natural head motion lies below it)
    default_fov_deg: float = 24.0  # vertical field of view used when the landmarks do not determine the focal
    eye_distance_m: float = 0.09  # outer-eye-corner distance the canonical face is scaled to (world units: m)
    background_samples: int = 32  # frames the background plate is estimated from
    mel_bins: int = 80
    # Move the audio by the sound's offset to the picture, found on the training frames with the shipped UMF's
    # mouth-opening prediction (instag.audio.sync: up to half a second, beyond the broadcast detectability window
    # only on strong evidence); off: keep it as decoded.
    sync_audio: bool = True
    # Frames the sound is late (negative: early), known beforehand: the audio is shifted by it and no offset is
    # estimated. For a clip whose offset the estimate cannot take on its own evidence (a corpus clip checked by
    # `instag bench lips`, say).
    audio_offset_frames: int | None = None
    sample_rate: int = 16000
