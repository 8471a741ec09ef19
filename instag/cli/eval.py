"""`instag eval AVATAR DATASET [--split test] [--json PATH]`: render a split and score it against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def eval_avatar(
    avatar: Path = typer.Argument(..., help="Avatar dir (from `instag adapt`)."),
    dataset: Path = typer.Argument(..., help="Dataset dir whose frames, audio, poses and blinks drive the avatar."),
    split: str = typer.Option("test", "--split", help="test or train."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the metrics to this JSON file."),
    limit: int | None = typer.Option(None, "--limit", help="Score only the first N frames of the split."),
    frames_dir: Path | None = typer.Option(None, "--save-frames", help="Save ground truth | render PNGs here."),
) -> None:
    """PSNR and SSIM (full image, face and mouth crops), LMD and mouth-opening correlation on a dataset split."""
    from instag.atomic import write_text_atomic
    from instag.eval.runner import EVAL_KEYS, evaluate

    con = Console(stderr=True)
    with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=con,
                  transient=True) as bar:
        task = bar.add_task("eval", total=None)
        result = evaluate(avatar, dataset, split=split, limit=limit, save_frames=frames_dir,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table(title=escape(f"{avatar.name} on {dataset.name} ({split}, {result['n_frames']} frames)"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in EVAL_KEYS:
        v = result[key]
        table.add_row(key, "—" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)))
    Console().print(table)
    if "untracked" in result:
        con.print(escape(f"note: {result['untracked']}"), highlight=False)
    if json_path:
        write_text_atomic(json_path, json.dumps(result, indent=2) + "\n")
        Console().print(escape(f"wrote {json_path}"), highlight=False)
