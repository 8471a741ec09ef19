"""`instag pretrain DATASET... -o RUN --recipe R [--resume]`, `instag pretrain --export RUN -o DIR/NAME` and
`instag pretrain DATASET... --readout-of UMF -o DIR/NAME`."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from instag.cli.adapt import stop_on_interrupt, training_progress


def pretrain(
    datasets: list[Path] = typer.Argument(None, help="Dataset dirs, one per identity (at least two)."),
    out: Path = typer.Option(..., "-o", "--out", help="Run dir (or, with --export or --readout-of, the UMF path stem)."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Pre-training recipe, a path or a shipped name (pretrain, pretrain_quick_cpu)."),
    resume: bool = typer.Option(False, "--resume", help="Continue RUN from its latest checkpoint (same rank count)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run."),
    export: Path | None = typer.Option(None, "--export", help="Write the UMF of this RUN as OUT.safetensors + OUT.json "
                                       "+ OUT_MODEL_CARD.md with loss curves beside them."),
    readout_of: Path | None = typer.Option(None, "--readout-of", help="Write this UMF (a path or a shipped name) as "
                                           "OUT with its lip read-outs (for files and for the live microphone) "
                                           "fitted on DATASETs, its other weights kept."),
    keep_readout: bool = typer.Option(False, "--keep-readout", help="With --readout-of: keep the UMF's fitted lip "
                                      "read-out (files are driven as before) and fit only the live one."),
    limits: Path | None = typer.Option(None, "--limits", help="With --export or --readout-of: a Markdown file of "
                                       "the UMF's known limits, for the model card."),
) -> None:
    """Identity-free pre-training of the UMF (run under `torchrun --nproc-per-node K` to shard identities)."""
    from instag.config.recipe import load_recipe
    from instag.errors import InputError
    from instag.train.model_card import card_path
    from instag.train.pretrain import export_umf
    from instag.train.pretrain import pretrain as run_pretrain
    from instag.train.recipe import PretrainRecipe
    from instag.train.umf import refit_lip_readout

    if limits is not None and not limits.is_file():
        raise InputError(f"{limits}: no such file (--limits)")
    notes = limits.read_text() if limits else None
    if export is not None or readout_of is not None:
        if readout_of is not None:
            if not datasets:
                raise InputError("pretrain --readout-of: give the dataset dirs to fit the read-out on")
            r = load_recipe(recipe, PretrainRecipe) if recipe else PretrainRecipe()
            err = Console(stderr=True)
            st, js = refit_lip_readout(readout_of, datasets, out, r.lips.readout_alpha, notes,
                                       lambda done, total: err.print(f"live read-out: {done}/{total} clips"),
                                       keep_readout)
        else:
            st, js = export_umf(export, out, notes=notes)
        Console().print(escape(f"wrote {st}, {js} and {card_path(st)}"), highlight=False)
        return
    if not datasets:
        raise InputError("pretrain: give the dataset dirs to train on")
    r = load_recipe(recipe, PretrainRecipe) if recipe and not resume else None
    rank = int(os.environ.get("RANK", "0"))
    con = Console(stderr=True, quiet=rank != 0)
    with stop_on_interrupt() as stop, training_progress("pretrain", con) as callback:
        result = run_pretrain(datasets, out, r, resume=resume, force=force, callback=callback,
                              should_stop=stop.is_set)
    if result.interrupted:
        con.print(f"interrupted at step {result.steps_done}/{result.total}; checkpoint saved (continue with --resume)")
        raise typer.Exit(130)
    if rank == 0:
        Console().print(f"pre-trained {result.steps_done} iterations on {len(datasets)} identities over "
                        f"{result.extra['world']} rank(s) in {result.wall_s:.0f} s → {escape(str(out))}", highlight=False)
