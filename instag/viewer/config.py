"""What `instag preview` is asked to do, apart from the server: light enough for the CLI to take its option
defaults from at start-up (no torch, no aiohttp)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from instag.audio.live_context import LOOKAHEAD_FRAMES as LIVE_LOOKAHEAD_FRAMES

LOOPBACK = "127.0.0.1"
MAX_UPLOAD_BYTES = 20 << 20  # an uploaded audio file; 20 MB is minutes of compressed speech
MAX_LIVE_LOOKAHEAD_FRAMES = 12  # half a second at 25 fps: beyond it the page is no longer live


@dataclass(frozen=True)
class PreviewConfig:
    avatar: Path
    audio: tuple[Path, ...] = ()
    host: str = LOOPBACK
    port: int = 8765  # 0: any free port
    size: int | None = None  # frame side (default: 256 on CPU, the avatar's on CUDA)
    device: str = "auto"
    threads: int = 1  # torch threads on CPU (0: torch's default)
    workers: int = 2  # frames rendered at once (each with `threads` threads)
    audio_model: str | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    live_lookahead: int = LIVE_LOOKAHEAD_FRAMES  # frames
    voice_rest: bool = True  # rest the lips where no voice is heard as well as in silence (off for songs)
