"""`instag export-ply`: an avatar's Gaussians, neutral or deformed at one driven frame, as one 3DGS PLY.

Both branches (face incl. lips, then mouth interior) go into one file in the standard 3DGS layout
(instag.gaussians.ply), in the avatar's canonical head space (metres, the head frame of the clip's tracking).
A driven frame applies the motion the avatar renders that frame with: Δμ, Δlog s, Δq of the face branch and
Δμ of the mouth branch, for the new audio's features at that frame and the replayed blink of that frame.
"""

from __future__ import annotations

from pathlib import Path

import torch

from instag.avatar.bundle import Avatar
from instag.avatar.driving import audio_driver, frame_count
from instag.errors import InputError
from instag.gaussians.field import GaussianField, Region
from instag.gaussians.ply import write_ply
from instag.media.audio import decode_audio


def neutral_gaussians(avatar: Avatar) -> GaussianField:
    """Face then mouth Gaussians, undeformed."""
    return GaussianField.concatenate(avatar.face, avatar.mouth)


@torch.no_grad()
def driven_gaussians(avatar: Avatar, audio: str | Path, frame: int, audio_model: str | None = None) -> GaussianField:
    """Face then mouth Gaussians deformed as at output frame `frame` of driving the avatar with `audio`."""
    decoded = decode_audio(audio)
    n = frame_count(decoded.duration_s, float(avatar.meta["fps"]))
    if not 0 <= frame < n:
        raise InputError(f"--frame {frame}: {audio} drives frames 0–{n - 1}")
    driver = audio_driver(avatar, decoded.mono16k, n, audio_model)
    cond = driver.condition(frame).cond
    face, mouth = avatar.face, avatar.mouth
    m = avatar.motion(face.means, face.region_index(Region.LIPS), mouth.means, cond.audio_windows, cond.expression,
                      lip_shape=cond.lip_shape)
    return GaussianField.concatenate(face.with_motion(m.face.d_means, m.face.d_log_scales, m.face.d_quats),
                                     mouth.with_motion(m.mouth_d_means))


def export_ply(avatar: Avatar, out: str | Path, audio: str | Path | None = None, frame: int | None = None,
               audio_model: str | None = None) -> GaussianField:
    """Write the avatar's Gaussians to `out` (atomically) and return what was written."""
    if frame is not None and audio is None:
        raise InputError("--frame needs --audio (the audio that drives that frame)")
    field = neutral_gaussians(avatar) if audio is None else driven_gaussians(avatar, audio, frame or 0, audio_model)
    write_ply(out, field)
    return field
