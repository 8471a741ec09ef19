"""`instag render AVATAR (--audio FILE ... | --manifest jobs.csv) -o OUTDIR`: dubbed MP4s, one per audio."""

from __future__ import annotations

import contextlib
import signal
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
from rich.table import Table

from instag.media.encoding import Encoding

ENCODING = Encoding()  # the options' defaults are the library's
STATUS_STYLE = {"done": "green", "skipped": "cyan", "failed": "bold red"}


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does: the output being written is removed on the way out (its
    default kills the process and left the temporary MP4 behind) and the command exits 130, "interrupted"."""

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def render(
    avatar: Path = typer.Argument(..., help="Avatar dir (from `instag adapt` / `instag adapt-from-clip`)."),
    audio: list[Path] = typer.Option([], "--audio", help="Audio to dub (wav/mp3/m4a/flac, any rate; repeatable): "
                                     "writes OUTDIR/<stem>.mp4."),
    manifest: Path | None = typer.Option(None, "--manifest", help="CSV of jobs: audio,output[,paste_back[,voice_rest]] "
                                         "(empty flags: the options')."),
    out: Path = typer.Option(..., "-o", "--out", help="Output dir."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Composite the head into the original full-size "
                                    "frames (output at the source clip's resolution)."),
    source: Path | None = typer.Option(None, "--source", help="Source clip for --paste-back (default: the copy in "
                                       "the avatar dir or the recorded path)."),
    paste_region: str | None = typer.Option(None, "--paste-region", help="With --paste-back, what of the rendered "
                                            "head replaces the source's: lower_face (the default: mouth, jaw and "
                                            "chin; the clip keeps its own eyes, brows and hair) or head."),
    size: int | None = typer.Option(None, "--size", help="Render side in pixels (default: the avatar's; with "
                                    "--paste-back the head is then scaled to its size in the source)."),
    crf: int = typer.Option(ENCODING.crf, "--crf", min=0, max=51, help="x264 quality (0 lossless … 51; 18 ≈ "
                            "visually lossless)."),
    preset: str | None = typer.Option(None, "--preset", help=f"x264 speed/size trade-off (ultrafast … veryslow; "
                                      f"default {ENCODING.preset}, with --paste-back {ENCODING.paste_back_preset}): "
                                      f"faster presets encode faster into bigger files."),
    audio_model: Path | None = typer.Option(None, "--audio-model", help="Local hubert/wav2vec2 dir (avatars "
                                            "trained on those features)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    threads: int | None = typer.Option(None, "--threads", min=0, help="torch threads on CPU (default, or 0: all "
                                       "cores, 1 for --paste-back jobs); the encoder runs in its own thread beside "
                                       "them."),
    voice_rest: bool = typer.Option(True, "--voice-rest/--no-voice-rest", help="Rest the lips where no voice is "
                                    "heard for 1.6 s (music, effects) as well as in silence; --no-voice-rest: in "
                                    "silence only, for a song whose singing the voice detector may miss (per job: the "
                                    "manifest's voice_rest column)."),
    force: bool = typer.Option(False, "--force", help="Re-render outputs that already exist."),
) -> None:
    """Render one MP4 (H.264 + AAC) per audio; finished outputs are skipped; exit 1 if any job failed."""
    from instag.avatar.bundle import load_avatar
    from instag.avatar.dubbing import RenderOptions, jobs_from_audio, read_manifest, run_jobs
    from instag.errors import InputError
    from instag.machine import resolve_device

    if bool(audio) == bool(manifest):
        raise InputError("render: give --audio FILE (repeatable) or --manifest jobs.csv, not both or neither")
    jobs = (read_manifest(manifest, out, paste_back, voice_rest) if manifest
            else jobs_from_audio(audio, out, paste_back, voice_rest))
    options = RenderOptions(size=size, crf=crf, preset=preset, source=source,
                            audio_model=str(audio_model) if audio_model else None, force=force,
                            **({} if threads is None else {"threads": threads}),
                            **({} if paste_region is None else {"paste_region": paste_region}))
    av = load_avatar(avatar)
    dev = resolve_device(device)
    av.to(dev)
    con = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=con, transient=True) as bar:
        task = bar.add_task("", total=None)

        def on_start(k: int, job) -> None:
            bar.reset(task, total=None, description=f"{k + 1}/{len(jobs)} {escape(job.audio.name)}")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def on_result(r) -> None:
            if r.status == "failed":
                bar.console.print(f"[bold red]failed:[/] {escape(r.reason)}", highlight=False, soft_wrap=True)
            elif r.note:
                bar.console.print(f"[bold yellow]note:[/] {escape(str(r.job.audio))}: {escape(r.note)}", highlight=False,
                                  soft_wrap=True)

        try:
            with sigterm_as_interrupt():
                results = run_jobs(av, jobs, options, dev, on_start=on_start, progress=progress,
                                   on_result=on_result)
        except KeyboardInterrupt:
            bar.console.print("interrupted; finished outputs are kept (the same command again continues)")
            raise typer.Exit(130) from None
    table = Table(title=escape(f"render {avatar} → {out}"))
    for col in ("audio", "output", "status", "frames", "audio s", "× real time", "reason / note"):
        table.add_column(col, justify="right" if col in ("frames", "audio s", "× real time") else "left")
    for r in results:
        done = r.status == "done"
        table.add_row(escape(str(r.job.audio)), escape(str(r.job.output)), f"[{STATUS_STYLE[r.status]}]{r.status}[/]",
                      str(r.frames) if done else "", f"{r.audio_s:.2f}" if done else "",
                      f"{r.speed:.2f}" if done else "", escape(r.reason or r.note))
    Console(width=200).print(table)
    failed = sum(r.status == "failed" for r in results)
    if failed:
        con.print(f"[bold red]{failed} of {len(results)} job(s) failed[/]", highlight=False)
        raise typer.Exit(1)
