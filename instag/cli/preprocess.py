"""`instag preprocess CLIP -o DATASET`: a talking clip → a validated dataset dir."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from instag.config.preprocess import PreprocessConfig

DEFAULTS = PreprocessConfig()  # the options' defaults are the library's


def preprocess(
    clip: Path = typer.Argument(..., help="Video of one person talking (mp4/mov/mkv/webm/avi, any size, fps, orientation)."),
    out: Path = typer.Option(..., "-o", "--out", help="Dataset directory to write."),
    size: int = typer.Option(DEFAULTS.size, "--size", help="Output frame side in pixels (square crop)."),
    fps: float = typer.Option(DEFAULTS.fps, "--fps", help="Constant output frame rate."),
    audio_features: list[str] = typer.Option(list(DEFAULTS.audio_features), "--audio-features",
                                             help="whisper | mel | hubert | wav2vec2 (repeatable)."),
    audio_model: Path | None = typer.Option(None, "--audio-model", help="Local transformers model dir: Whisper (instead "
                                            "of the packaged weights), hubert or wav2vec2."),
    test_from: float | None = typer.Option(None, "--test-from", help="Hold out frames from this many seconds on as the test split."),
    min_duration: float = typer.Option(DEFAULTS.min_duration_s, "--min-duration", help="Refuse clips shorter than this (seconds)."),
    sync_audio: bool = typer.Option(DEFAULTS.sync_audio, "--sync/--no-sync", help="Shift the audio by its offset to the picture, estimated with the shipped UMF (up to 0.5 s either way; beyond 125 ms late / 45 ms early only on strong evidence)."),
    audio_offset: int | None = typer.Option(None, "--audio-offset-frames", help="The sound is this many frames late "
                                            "(negative: early): shift it by that, instead of estimating the offset."),
    force: bool = typer.Option(False, "--force", help="Replace an existing DATASET."),
) -> None:
    """Decode, crop, track, label and prior a clip into DATASET (written atomically; nothing left on error)."""
    from instag.data.preprocess import preprocess_clip

    cfg = PreprocessConfig(size=size, fps=fps, audio_features=tuple(audio_features),
                           audio_model=str(audio_model) if audio_model else None, test_from_s=test_from,
                           min_duration_s=min_duration, sync_audio=sync_audio, audio_offset_frames=audio_offset)
    con = Console(stderr=True)
    with Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = preprocess_clip(clip, out, cfg, force=force, progress=progress)
    for w in result.warnings:
        con.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings_s.items())
    Console().print(escape(f"wrote {result.path} ({result.n_frames} frames; {stages})"), highlight=False, soft_wrap=True)
