"""`instag doctor [--json]`: what runs here and why. Always exits 0."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from instag.doctor import report


def doctor(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Show Python/torch/CUDA versions, the backend `auto` picks for each kernel op and why, optional packages."""
    info = report()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    con = Console()
    cuda = info["cuda"]
    con.print(f"python {info['python']}   torch {info['torch']}   threads {info['threads']}")
    con.print(
        f"CUDA: {'yes, ' + cuda['device'] if cuda['available'] else 'no'}"
        f" (torch built for CUDA {cuda['torch_cuda_version'] or '-'}; nvcc {'found' if cuda['nvcc'] else 'not found'})"
    )
    k = info["kernels"]
    con.print(
        f"C++ compiler + ninja: {'yes' if k['cpu_compiler'] else 'no'}; CPU kernels built: "
        f"{'yes (cached)' if k['cpu_library_built'] else 'not yet (built on first use)'}"
    )
    ops = Table(title="kernel ops: what backend 'auto' picks")
    for col in ("op", "auto", "implementation", "why", "cuda / cpu / torch"):
        ops.add_column(col)
    for name, op in k["ops"].items():
        avail = " / ".join("yes" if op["available"][b] else "no" for b in ("cuda", "cpu", "torch"))
        ops.add_row(name, op["auto"], op["impl"], op["why"], avail)
    con.print(ops)
    pk = Table(title="optional packages and media")
    for col in ("what", "version", "usable", "why"):
        pk.add_column(col)
    for name, p in info["packages"].items():
        pk.add_row(name, p.get("version") or "-", "yes" if p["usable"] else "no", p["why"])
    media = info["media"]
    pyav = media["pyav"]
    enc = ", ".join(n for n, ok in pyav.get("encoders", {}).items() if ok) or "none"
    pk.add_row("PyAV", pyav.get("version") or "-", "yes" if pyav["usable"] else "no", f"encoders: {enc}")
    pk.add_row("ffmpeg", "-", "yes" if media["ffmpeg"] else "no", media["ffmpeg"] or "not on PATH (PyAV is used instead)")
    con.print(pk)
