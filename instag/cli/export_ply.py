"""`instag export-ply AVATAR -o out.ply [--audio FILE --frame N]`: the avatar's Gaussians as a 3DGS PLY."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape


def export_ply(
    avatar: Path = typer.Argument(..., help="Avatar dir."),
    out: Path = typer.Option(..., "-o", "--out", help="PLY file to write."),
    audio: Path | None = typer.Option(None, "--audio", help="Deform the Gaussians as driven by this audio …"),
    frame: int | None = typer.Option(None, "--frame", min=0, help="… at this output frame (default 0)."),
    audio_model: Path | None = typer.Option(None, "--audio-model", help="Local hubert/wav2vec2 dir if needed."),
) -> None:
    """Neutral (or driven-frame) Gaussians of both branches in the standard 3DGS PLY layout."""
    from instag.avatar.bundle import load_avatar
    from instag.avatar.export import export_ply as run_export

    field = run_export(load_avatar(avatar), out, audio, frame, str(audio_model) if audio_model else None)
    what = "neutral" if audio is None else f"{audio.name} frame {frame or 0}"
    Console().print(escape(f"wrote {out} ({field.num_gaussians} Gaussians, {what})"), highlight=False)
