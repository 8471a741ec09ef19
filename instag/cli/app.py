"""The typer app. Library code raises `instag.errors` types; here they become one line and an exit code."""

from __future__ import annotations

import logging
import sys
import warnings

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from instag.cli import adapt as adapt_cmd
from instag.cli import adapt_from_clip as adapt_from_clip_cmd
from instag.cli import bench, doctor
from instag.cli import demo as demo_cmd
from instag.cli import eval as eval_cmd
from instag.cli import export_ply as export_ply_cmd
from instag.cli import inspect as inspect_cmd
from instag.cli import preprocess as preprocess_cmd
from instag.cli import pretrain as pretrain_cmd
from instag.cli import preview as preview_cmd
from instag.cli import render as render_cmd
from instag.errors import InstagError

app = typer.Typer(
    name="instag",
    help="Audio-driven 3D Gaussian-splatting talking heads from a few seconds of video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("doctor", short_help="What runs here: versions, kernel backends, packages.")(doctor.doctor)
app.command("preprocess", short_help="A talking clip → a validated dataset dir.")(preprocess_cmd.preprocess)
app.command("inspect", short_help="A contact sheet of a dataset dir.")(inspect_cmd.inspect)
app.command("pretrain", short_help="Pre-train the Universal Motion Field (torchrun-ready).")(pretrain_cmd.pretrain)
app.command("adapt", short_help="Adapt an avatar to a dataset (motion-aligned).")(adapt_cmd.adapt)
app.command("eval", short_help="PSNR, SSIM, LMD and mouth sync on a dataset split.")(eval_cmd.eval_avatar)
app.command("adapt-from-clip", short_help="Preprocess + adapt: a clip → an avatar.")(adapt_from_clip_cmd.adapt_from_clip)
app.command("render", short_help="Dub MP4s from audio files or a manifest.")(render_cmd.render)
app.command("export-ply", short_help="The avatar's Gaussians as a 3DGS PLY file.")(export_ply_cmd.export_ply)
app.command("preview", short_help="A local page playing the avatar driven by audio.")(preview_cmd.preview)
app.command("demo", short_help="The whole job on a built-in sample (make demo).")(demo_cmd.demo)
app.add_typer(bench.app, name="bench", short_help="Benchmarks: a table and JSON with medians.")

err = Console(stderr=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """A warning as one line: instag's own as a note (what it chose and why), others with their origin. Python's
    default echoes the source line that warned, which tells a user nothing."""
    if category.__module__.split(".")[0] == "instag":
        err.print(f"[yellow]note:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        err.print(f"[yellow]warning:[/] {escape(f'{category.__name__}: {message} ({filename}:{lineno})')}",
                  highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point: run the app, turning instag's own errors into one clear line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)])
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        app()
    except InstagError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    finally:
        warnings.showwarning = previous  # main() also runs inside other programs' processes (the tests)
