"""Batch rendering of dubbed videos (`instag render`): one MP4 (H.264 + AAC, the audio muxed in) per audio.

Each frame is rendered and handed to the streaming encoder at once (instag.media.mp4), so memory does not grow
with the audio's length. With paste-back the head's layers go to the encoder's thread, which composites them
into the source frame (instag.avatar.paste_back) while the next frame renders. Outputs are written under a
temporary name and renamed when whole; a finished output is skipped on a re-run (resume). A job that fails is
reported with its reason and the others still run.

Manifest (`--manifest jobs.csv`): rows `audio,output[,paste_back[,voice_rest]]`, an optional header row naming
those columns; a relative audio path is read relative to the manifest's folder, a relative output path relative to
the output dir; paste_back and voice_rest are 1/true/yes or 0/false/no (empty: the command's --paste-back and
--voice-rest/--no-voice-rest; voice_rest 0 for a song, whose lips then rest in silence only).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from instag.atomic import atomic_file
from instag.avatar.bundle import Avatar
from instag.avatar.driving import DriveLayers, Driver, audio_driver, audio_features, frame_count, to_uint8
from instag.avatar.paste_back import DEFAULT_FEATHER, REGIONS, PasteBack, find_source_clip, head_layers
from instag.avatar.rest import resting_note
from instag.avatar.source_timing import SourceTimedFrames
from instag.avatar.source_video import SourceVideo
from instag.errors import InputError, InstagError
from instag.media.audio import decode_audio
from instag.media.encoding import PRESETS, Encoding
from instag.media.mp4 import Mp4Writer, is_finished_mp4

Progress = Callable[[int, int], None]  # (frames done, frames total) of the current job
TRUE = ("1", "true", "yes", "y")
# Render sides: below 16 px nothing is recognisable; an 8192² frame already takes ~1 GB of float buffers.
MIN_SIZE, MAX_SIZE = 16, 8192
FALSE = ("0", "false", "no", "n")
ENCODING = Encoding()
# A paste-back job's compositing and encoding keep another core busy: torch threads on all cores spin-wait against
# them, and x264's own threads cost CPU that a one-thread encoder, still faster than rendering, does not
# (benchmarks/render_paste_back_cpu.md).
PASTE_BACK_THREADS = 1
PASTE_BACK_ENCODER_THREADS = 1
# The source's decoder likewise where there are only two cores; elsewhere ffmpeg's own choice (0).
PASTE_BACK_DECODER_THREADS = 1 if (os.cpu_count() or 1) <= 2 else 0


@dataclass(frozen=True)
class RenderOptions:
    size: int | None = None  # render side (the avatar's own size by default)
    crf: int = Encoding.crf  # x264 constant rate factor (0 = lossless … 51)
    preset: str | None = None  # x264 speed/size trade-off, one of PRESETS (None: Encoding's for the job's kind)
    source: Path | None = None  # source clip for paste-back (default: found from the avatar)
    feather: float = DEFAULT_FEATHER  # paste-back: the head fades out over this fraction of the crop at its edges
    paste_region: str = REGIONS[0]  # paste-back: what of the rendered head replaces the source's (REGIONS)
    audio_model: str | None = None  # local hubert / wav2vec2 model dir for avatars driven by those features
    force: bool = False  # re-render outputs that exist
    # torch threads on CPU (0: torch's default, all cores; a paste-back job renders with PASTE_BACK_THREADS):
    # all cores are faster on an idle machine, 1 on a busy one (benchmarks/performance_notes.md).
    threads: int = 0

    def __post_init__(self) -> None:
        if self.size is not None and not MIN_SIZE <= self.size <= MAX_SIZE:
            raise InputError(f"--size {self.size}: must be in {MIN_SIZE}..{MAX_SIZE}")
        if self.preset is not None and self.preset not in PRESETS:
            raise InputError(f"--preset {self.preset}: must be one of {', '.join(PRESETS)}")
        if not 0 <= self.crf <= 51:
            raise InputError(f"--crf {self.crf}: must be in 0..51")
        if self.paste_region not in REGIONS:
            raise InputError(f"--paste-region {self.paste_region}: must be one of {', '.join(REGIONS)}")


@dataclass(frozen=True)
class DubJob:
    audio: Path
    output: Path
    paste_back: bool = False
    # The lips rest where no voice is heard (music, effects) as well as in silence; off for a song, whose singing
    # the voice detector may not take for a voice (benchmarks/voice_activity_cpu.md).
    voice_rest: bool = True


@dataclass
class JobResult:
    job: DubJob
    status: str  # done | skipped | failed
    reason: str = ""
    frames: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)  # decode, features, render+encode
    note: str = ""  # what a done job's user should know (`rest.resting_note`)

    @property
    def speed(self) -> float:
        """Multiple of real time (audio seconds per wall second)."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


def check_output_dir(out_dir: Path) -> None:
    """`InputError` unless OUT_DIR is a directory or can become one (no file in the way)."""
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{out_dir}: cannot be the output dir ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{out_dir}: cannot be the output dir ({existing} is not writable)")


def jobs_from_audio(audios: list[Path], out_dir: Path, paste_back: bool, voice_rest: bool = True) -> list[DubJob]:
    """One job per audio file: OUT_DIR/<audio stem>.mp4 (two audios with one stem are refused)."""
    check_output_dir(Path(out_dir))
    seen: dict[str, Path] = {}
    jobs = []
    for audio in audios:
        stem = Path(audio).stem
        if stem in seen:
            raise InputError(f"{audio}: would overwrite the output of {seen[stem]} ({stem}.mp4); use --manifest "
                             f"to name the outputs")
        seen[stem] = Path(audio)
        jobs.append(DubJob(Path(audio), Path(out_dir) / f"{stem}.mp4", paste_back, voice_rest))
    return jobs


def _flag(value: str, where: str, name: str, default: bool) -> bool:
    v = value.strip().lower()
    if not v:
        return default
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise InputError(f"{where}: {name} {value!r} is not one of {'/'.join(TRUE + FALSE)}")


def _confined_output(cell: str, out_dir: Path, where: str) -> Path:
    """OUT_DIR/cell (.mp4 added when missing), refused unless it resolves inside OUT_DIR: a manifest must not
    write over files elsewhere (../x.mp4, /etc/cron.d/x, a symlink out of OUT_DIR)."""
    output = out_dir / cell  # an absolute cell stays absolute: refused below unless it lies in OUT_DIR
    if not output.name:  # "/" and the like: the file system root
        raise InputError(f"{where}: output {cell!r} names no file")
    if output.suffix.lower() != ".mp4":
        output = output.with_name(output.name + ".mp4")
    if not output.resolve().is_relative_to(out_dir.resolve()):
        raise InputError(f"{where}: output {cell!r} lies outside the output dir {out_dir}")
    return output


def read_manifest(path: str | Path, out_dir: Path, paste_back: bool, voice_rest: bool = True) -> list[DubJob]:
    """Jobs of a manifest CSV (see the module doc); `InputError` naming the row for a malformed one."""
    path = Path(path)
    check_output_dir(Path(out_dir))
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from exc
    jobs: list[DubJob] = []
    outputs: dict[Path, int] = {}
    for n, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if n == 1 and [c.lower() for c in cells[:2]] == ["audio", "output"]:
            continue
        where = f"{path}:{n}"
        if len(cells) not in (2, 3, 4) or not cells[0] or not cells[1]:
            raise InputError(f"{where}: expected 'audio,output[,paste_back[,voice_rest]]', got {row}")
        if any("\x00" in c for c in cells):  # no path may hold one: the OS refuses it with a ValueError
            raise InputError(f"{where}: a cell holds a NUL character")
        audio = Path(cells[0]) if Path(cells[0]).is_absolute() else path.parent / cells[0]
        output = _confined_output(cells[1], Path(out_dir), where)
        if output in outputs:
            raise InputError(f"{where}: output {output} is also the output of row {outputs[output]}")
        outputs[output] = n
        flags = cells[2:] + [""] * (4 - len(cells))
        jobs.append(DubJob(audio, output, _flag(flags[0], where, "paste_back", paste_back),
                           _flag(flags[1], where, "voice_rest", voice_rest)))
    if not jobs:
        raise InputError(f"{path}: the manifest lists no jobs")
    return jobs


class Dubber:
    """Renders dubbing jobs with one avatar; the source frames for paste-back are decoded once, on first need."""

    def __init__(self, avatar: Avatar, options: RenderOptions, device: torch.device | None = None) -> None:
        self.avatar = avatar
        self.options = options
        self.device = device or next(avatar.face.parameters()).device
        self._paste: PasteBack | None = None
        self._source: SourceVideo | None = None
        self._layers: DriveLayers | None = None  # the clip's layers, decoded once for every job

    def paste_back(self, render_size: int) -> PasteBack:
        if self._source is None:
            clip = find_source_clip(self.avatar, self.options.source)
            self._source = SourceVideo(clip, decoder_threads=PASTE_BACK_DECODER_THREADS)
        if self._paste is None or self._paste.size != render_size:
            self._paste = PasteBack(self.avatar, self._source, render_size, self.options.feather,
                                    region=self.options.paste_region)
        return self._paste

    def _open_source(self, render_size: int) -> PasteBack:
        paste = self.paste_back(render_size)
        paste.source.frame(0)
        return paste

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = self._paste = None

    def dub(self, job: DubJob, progress: Progress | None = None) -> JobResult:
        """Render one job to job.output (atomically). Raises `InstagError`s for unusable input."""
        t0 = time.perf_counter()
        av, opt = self.avatar, self.options
        fps = float(av.meta["fps"])
        audio = decode_audio(job.audio)
        t1 = time.perf_counter()
        n = frame_count(audio.duration_s, fps)
        with ThreadPoolExecutor(1) as pool:
            # the source clip opened and its first frame decoded while the speech features are computed: both are
            # fixed costs of a job, and the features leave the other core idle
            opening = pool.submit(self._open_source, opt.size or av.size) if job.paste_back else None
            feats = audio_features(av, audio.mono16k, n, opt.audio_model)
            paste = opening.result() if opening else None
        if paste is not None and self.device.type == "cpu" and not opt.threads:
            # The speech features had every core; from here compositing and encoding keep one busy.
            torch.set_num_threads(PASTE_BACK_THREADS)
        if self._layers is None:
            self._layers = DriveLayers(av, opt.size or av.size, self.device)
        driver = audio_driver(av, audio.mono16k, n, size=opt.size, device=self.device, features=feats,
                              layers=self._layers, rest_without_voice=job.voice_rest)
        note = resting_note(driver.rest)
        frames: Driver | SourceTimedFrames = driver
        if paste is not None:  # at the source's own frame rate
            fps = paste.source.fps
            n = frame_count(audio.duration_s, fps)
            frames = SourceTimedFrames(driver, fps, n)
        t2 = time.perf_counter()
        if paste is None:
            video = {"width": driver.size, "height": driver.size}
        else:
            src = paste.source
            video = {"width": src.coded_width, "height": src.coded_height, "prepare": paste.compose,
                     "rotation_deg": src.rotation_deg, "colour": src.colour, "threads": PASTE_BACK_ENCODER_THREADS}
        with atomic_file(job.output, suffix=".mp4") as tmp:
            with Mp4Writer(tmp, fps=fps, audio=audio.samples, sample_rate=audio.sample_rate, crf=opt.crf,
                           preset=opt.preset or ENCODING.preset_for(paste is not None), **video) as writer:
                for frame in frames:
                    render = av.render(frame.cond)
                    if paste is None:
                        writer.write(to_uint8(render.image))
                    else:
                        writer.write(head_layers(render, frame.clip_frame))
                    if progress:
                        progress(frame.index + 1, n)
            _readable(tmp)
        t3 = time.perf_counter()
        return JobResult(job, "done", frames=n, audio_s=audio.duration_s, wall_s=t3 - t0,
                         timings_s={"decode": t1 - t0, "features": t2 - t1, "render_encode": t3 - t2}, note=note)


def _readable(path: Path) -> None:
    """Give the (private, mkstemp-made) temporary output the usual permissions of a new file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def run_jobs(avatar: Avatar, jobs: list[DubJob], options: RenderOptions, device: torch.device | None = None,
             on_start: Callable[[int, DubJob], None] | None = None, progress: Progress | None = None,
             on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Run every job; finished outputs (playable MP4s: a zero-byte or truncated file is redone) are skipped unless
    options.force; a failing job (its reason recorded) does not stop the others."""
    dubber = Dubber(avatar, options, device)
    threads = torch.get_num_threads()
    results = []
    try:
        for k, job in enumerate(jobs):
            if on_start:
                on_start(k, job)
            if dubber.device.type == "cpu":
                torch.set_num_threads(options.threads or threads)
            if not options.force and is_finished_mp4(job.output):
                result = JobResult(job, "skipped", "output exists")
            else:
                t0 = time.perf_counter()
                try:
                    result = dubber.dub(job, progress)
                except InstagError as exc:
                    result = JobResult(job, "failed", str(exc), wall_s=time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - whatever one job's input provokes, the others still run
                    result = JobResult(job, "failed", f"{type(exc).__name__}: {exc}", wall_s=time.perf_counter() - t0)
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        dubber.close()
        torch.set_num_threads(threads)
    return results
