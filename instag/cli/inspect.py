"""`instag inspect DATASET -o sheet.png`: a contact sheet to judge a dataset at a glance."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape


def inspect(
    dataset: Path = typer.Argument(..., help="Dataset directory written by `instag preprocess`."),
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write."),
) -> None:
    """Frames with landmarks and pose axes, label overlay, background plate, depth/normal priors, time plots."""
    from instag.data.dataset import load_dataset, validate_dataset
    from instag.data.inspect import write_contact_sheet

    ds = load_dataset(dataset)
    validate_dataset(ds)
    write_contact_sheet(ds, out)
    Console().print(escape(f"wrote {out}"), highlight=False)
