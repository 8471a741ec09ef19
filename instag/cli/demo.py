"""`instag demo [-o OUT] [--force]`: the whole job on a built-in sample (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from instag.cli.adapt import stop_on_interrupt


def demo(
    out: Path = typer.Option(Path("out/demo"), "-o", "--out", help="Where the sample, avatar and dubbed video go."),
    force: bool = typer.Option(False, "--force", help="Redo every step even if its output exists."),
) -> None:
    """Make a talking sample clip (public-domain portrait + synthetic speech), adapt an avatar to it, dub a
    different line with it, and say where everything is. Finished steps are skipped on a re-run."""
    from instag.demo.runner import STEPS, run_demo

    con = Console(stderr=True)
    with stop_on_interrupt() as stop, Progress(
        TextColumn("[bold]{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(), console=con,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: int, total: int | None, note: str) -> None:
            if step not in tasks:
                for other in tasks.values():
                    bar.stop_task(other)
                tasks[step] = bar.add_task(f"{STEPS.index(step) + 1}/{len(STEPS)} {step}", total=None, note="")
            bar.update(tasks[step], completed=done, total=total, note=note)

        result = run_demo(out, force=force, progress=progress, should_stop=stop.is_set)
    for w in result.warnings:
        con.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    if result.interrupted:
        con.print(escape(f"interrupted; run the same command again to continue (outputs in {result.out})"), highlight=False)
        raise typer.Exit(130)
    say = Console(highlight=False, soft_wrap=True)
    if result.skipped:
        say.print(f"already done (kept): {', '.join(result.skipped)} — pass --force to redo")
    if result.timings_s:
        say.print("times: " + ", ".join(f"{k} {v:.0f}s" for k, v in result.timings_s.items()))
    say.print(escape(f"sample clip:  {result.sample}"))
    say.print(escape(f"avatar:       {result.avatar}  (UMF: {result.umf or 'none shipped, trained from scratch'})"))
    say.print(escape(f"dubbing line: {result.line}"))
    say.print(escape(f"dubbed video: {result.dubbed}"))
    say.print(escape(f"preview:      {result.preview_command}   (then open the printed http://127.0.0.1 address)"))
