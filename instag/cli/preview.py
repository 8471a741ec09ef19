"""`instag preview AVATAR [--audio FILE ...] [--port P] [--size N]`: the avatar driven by audio files or a
microphone in a local page."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from instag.viewer.config import MAX_LIVE_LOOKAHEAD_FRAMES, PreviewConfig

DEFAULTS = PreviewConfig(avatar=Path())  # the options' defaults are the server's


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt (exit 130) and SIGTERM SystemExit(143) in the main thread, so the
    server is stopped and its temporary directory removed on the way out. Set explicitly because a process started
    with SIGINT ignored (any job that a non-interactive shell starts with `&`, e.g. `make test &` in a script)
    keeps it ignored under Python: Ctrl-C then never stopped the preview; and SIGTERM's default kills the process
    without cleaning up."""

    def terminate(signum, frame):  # noqa: ARG001
        raise SystemExit(128 + signum)

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                signal.SIGTERM: signal.signal(signal.SIGTERM, terminate)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def preview(
    avatar: Path = typer.Argument(..., help="Avatar dir (from `instag adapt` / `instag adapt-from-clip`)."),
    audio: list[Path] = typer.Option([], "--audio", help="Audio to play (wav/mp3/m4a/flac/ogg, any rate; "
                                     "repeatable). More can be uploaded in the page."),
    port: int = typer.Option(DEFAULTS.port, "--port", min=0, max=65535, help="Port (0: any free one)."),
    host: str = typer.Option(DEFAULTS.host, "--host", help="Address to listen on. Anything but loopback exposes "
                             "the avatar to your network."),
    size: int | None = typer.Option(None, "--size", min=16, help="Frame side in pixels (default: 256 on CPU, "
                                    "the avatar's own on a GPU)."),
    device: str = typer.Option(DEFAULTS.device, "--device", help="auto | cpu | cuda."),
    threads: int = typer.Option(DEFAULTS.threads, "--threads", min=0, help="torch threads on CPU (0: torch's default)."),
    workers: int = typer.Option(DEFAULTS.workers, "--workers", min=1, help="Frames rendered at once (each with --threads)."),
    audio_model: Path | None = typer.Option(None, "--audio-model", help="Local hubert/wav2vec2 dir (avatars "
                                            "trained on those features)."),
    live_lookahead: int = typer.Option(DEFAULTS.live_lookahead, "--live-lookahead", min=0, max=MAX_LIVE_LOOKAHEAD_FRAMES,
                                       help="Microphone mode: frames of sound heard after a frame before it is "
                                       "drawn (each adds a frame of delay; fewer follow the voice less well)."),
    voice_rest: bool = typer.Option(DEFAULTS.voice_rest, "--voice-rest/--no-voice-rest", help="Rest the lips where "
                                    "no voice is heard for 1.6 s (music, a television) as well as in silence; "
                                    "--no-voice-rest: in silence only, for songs, whose singing the voice detector "
                                    "may miss."),
) -> None:
    """Serve a page that plays audio and shows the avatar speaking it in sync, or speaking what your microphone
    hears (orbit: drag; zoom: wheel)."""
    with stopped_by_signals():  # from the start: loading the avatar takes a while, Ctrl-C must work there too
        from instag.viewer.server import PreviewServer, is_loopback, wait_forever

        err = Console(stderr=True)
        if not is_loopback(host):
            err.print(f"[bold yellow]warning:[/] listening on {escape(host)}: anyone who can reach this machine can open the "
                      f"preview and upload audio", highlight=False, soft_wrap=True)
        cfg = PreviewConfig(avatar=avatar, audio=tuple(audio), host=host, port=port, size=size, device=device,
                            threads=threads, workers=workers, audio_model=str(audio_model) if audio_model else None,
                            live_lookahead=live_lookahead, voice_rest=voice_rest)
        with err.status("loading the avatar…"):
            server = PreviewServer(cfg)
            url = server.start()
        info = server.app.info()
        Console().print(f"instag preview: [bold]{url}[/]  ({info['size']}² on {info['device']}, "
                        f"{len(info['clips'])} clip(s)) — Ctrl-C to stop", highlight=False, soft_wrap=True)
        wait_forever(server)
