"""`instag adapt-from-clip CLIP -o AVATAR [--recipe R] [--umf FILE] [--size N]`: raw clip → avatar dir."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from instag.cli.adapt import NO_UMF_OPTION, UMF_OPTION, stop_on_interrupt


def adapt_from_clip(
    clip: Path = typer.Argument(..., help="Video of one person talking (a few seconds are enough)."),
    out: Path = typer.Option(..., "-o", "--out", help="Avatar dir to write."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Adaptation recipe, a path or a shipped name (default: adapt_5s "
                                       "on CUDA, adapt_quick_cpu otherwise)."),
    umf: Path | None = UMF_OPTION,
    no_umf: bool = NO_UMF_OPTION,
    size: int | None = typer.Option(None, "--size", help="Frame side (default: 512 on CUDA, 256 otherwise)."),
    keep_dataset: Path | None = typer.Option(None, "--keep-dataset", help="Write the intermediate dataset here "
                                             "(default: inside the avatar dir, AVATAR/dataset)."),
    audio_model: Path | None = typer.Option(None, "--audio-model", help="Local hubert/wav2vec2 dir, for recipes "
                                            "driven by those features."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (reuses its dataset and "
                                "checkpoints)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing avatar."),
) -> None:
    """Preprocess the clip and adapt an avatar to it, with one progress display."""
    from instag.train.from_clip import adapt_from_clip as run

    con = Console(stderr=True)
    with stop_on_interrupt() as stop, Progress(
        TextColumn("[bold]{task.description:>18}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=con,
    ) as bar:
        task = bar.add_task("preprocess", total=None, note="")

        def preprocess_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=f"preprocess {stage}", completed=done, total=total)

        def callback(event) -> None:
            bar.update(task, description=f"adapt {event.stage}", completed=event.step, total=event.total,
                       note=f"loss {event.losses.get('loss', 0.0):.4f} {event.it_per_s:.2f} it/s")
            if event.message:
                bar.console.print(f"  step {event.step}: {escape(event.message)}", highlight=False)

        result = run(clip, out, recipe=recipe, umf=umf, use_umf=not no_umf, size=size, keep_dataset=keep_dataset,
                     audio_model=str(audio_model) if audio_model else None, resume=resume, force=force,
                     preprocess_progress=preprocess_progress, callback=callback, should_stop=stop.is_set)
    for w in result.warnings:
        con.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    if result.interrupted:
        con.print(escape(f"interrupted at step {result.steps_done}/{result.total}; dataset in {result.dataset}, "
                         f"checkpoints in {result.run_dir} (continue with --resume)"), highlight=False)
        raise typer.Exit(130)
    Console().print(escape(f"wrote {result.avatar} ({result.size}², recipe {result.recipe.name}, UMF {result.umf_note}; "
                           f"dataset {result.dataset}{' (reused)' if result.reused_dataset else ''}; "
                           f"{', '.join(f'{k} {v:.0f}s' for k, v in result.timings_s.items())})"),
                    highlight=False, soft_wrap=True)
