"""`instag bench …`: measured medians written as JSON with the machine and the commit (DESIGN §7.8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from instag.bench.record import write_json

app = typer.Typer(help="Benchmarks: print a table and write JSON (machine, commit, medians).", no_args_is_help=True)


@app.command("kernels")
def kernels(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
    runs: int = typer.Option(10, "--runs", help="Timed runs per case (medians; at least 10)."),
) -> None:
    """Rasterize (10k@256², 50k@512²) and the hash encoders (50k, 500k points) on every backend present."""
    from instag.bench import kernels as bench_kernels

    con = Console()
    table = Table(title=f"kernels on {device} (medians of {runs} runs, ms)")
    for col in ("op", "backend", "impl", "N", "size", "fwd_ms", "fwd_bwd_ms"):
        table.add_column(col, justify="right" if col.endswith("ms") or col == "N" else "left")

    def show(case: dict[str, Any]) -> None:
        con.print(f"  {case['op']} {case['backend']} N={case['N']} {case['size']}: fwd {case['fwd_ms']:.2f} ms, fwd+bwd {case['fwd_bwd_ms']:.2f} ms")
        table.add_row(case["op"], case["backend"], case["impl"], str(case["N"]), case["size"], f"{case['fwd_ms']:.2f}", f"{case['fwd_bwd_ms']:.2f}")

    doc = bench_kernels.run(device=device, runs=runs, progress=show)
    con.print(table)
    if json_path:
        write_json(doc, json_path)
        con.print(f"wrote {json_path}")
