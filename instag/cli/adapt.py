"""`instag adapt DATASET -o AVATAR --recipe R [--umf FILE] [--resume]`: a new person's avatar from a short clip."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
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

# The UMF choice (instag.train.umf.choose_umf), shared by `adapt`, `adapt-from-clip` and `bench train`.
UMF_OPTION = typer.Option(None, "--umf", help="Pre-trained UMF (DIR/NAME[.safetensors], or a shipped NAME; default: the "
                          "UMF shipped for the recipe's audio features, when its front end matches). Its motion sizes "
                          "replace the recipe's.")
NO_UMF_OPTION = typer.Option(False, "--no-umf", help="Start the UMF from scratch even if one is shipped.")


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C (or SIGTERM) sets the event, so training saves a checkpoint and returns after the step in
    progress (under torchrun, the next logged step); a second Ctrl-C interrupts at once."""
    stop = threading.Event()
    previous = {}

    def handler(signum, frame):  # noqa: ARG001
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        Console(stderr=True).print("[yellow]stopping soon (saving a checkpoint); Ctrl-C again to abort[/]")

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def training_progress(title: str, console: Console):
    """A rich progress bar fed by training's ProgressEvents: stage, loss, it/s."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[stage]:>7} loss {task.fields[loss]:.4f} {task.fields[rate]:.2f} it/s"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(title, total=None, stage="", loss=0.0, rate=0.0)

        def callback(event) -> None:
            bar.update(task, total=event.total, completed=event.step, stage=event.stage,
                       loss=event.losses.get("loss", 0.0), rate=event.it_per_s)
            if event.message:
                bar.console.print(f"  step {event.step}: {escape(event.message)}", highlight=False)

        yield callback


def adapt(
    dataset: Path = typer.Argument(..., help="Dataset dir of the person (from `instag preprocess`)."),
    out: Path = typer.Option(..., "-o", "--out", help="Avatar dir to write."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Adaptation recipe: a YAML path or a shipped name (adapt_5s, "
                                       "adapt_quick_cpu, …); not needed with --resume."),
    umf: Path | None = UMF_OPTION,
    no_umf: bool = NO_UMF_OPTION,
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Checkpoints, losses and previews "
                                        "(default: AVATAR.run beside the avatar)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its latest checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace an existing avatar / run."),
) -> None:
    """Motion-aligned adaptation: warm-up, aligner + geometry prior, densify/prune, fuse; writes AVATAR."""
    from instag.config.recipe import load_recipe
    from instag.train.adapt import adapt as run_adapt
    from instag.train.recipe import AdaptRecipe
    from instag.train.umf import choose_umf

    r = load_recipe(recipe, AdaptRecipe) if recipe and not resume else None
    con = Console(stderr=True)
    if r is not None:
        umf, why = choose_umf(umf, not no_umf, r.model, r.audio_feature)
        con.print(f"UMF: {escape(why)}", highlight=False)
    with stop_on_interrupt() as stop, training_progress("adapt", con) as callback:
        result = run_adapt(dataset, out, r, umf=umf, run_dir=run_dir, resume=resume, force=force,
                           callback=callback, should_stop=stop.is_set)
    if result.interrupted:
        con.print(f"interrupted at step {result.steps_done}/{result.total}; checkpoint saved in {escape(str(result.run_dir))} "
                  f"(continue with --resume)", highlight=False)
        raise typer.Exit(130)
    Console().print(escape(f"wrote {out} ({result.steps_done} iterations in {result.wall_s:.0f} s; run dir {result.run_dir})"),
                    highlight=False)
