"""`instag demo` / `make demo`: the whole job on a built-in sample, from nothing to a dubbed video.

Steps, each skipped when its output already exists (unless `force`), and re-run when an earlier step was:
  1. sample  — OUT/sample.mp4: the talking astronaut with a synthetic utterance (instag.demo.sample)
  2. adapt   — OUT/avatar: `adapt_from_clip` with its defaults (the GPU recipe on CUDA, the quick CPU recipe
               otherwise; the shipped UMF of the recipe's audio features (`umf.SHIPPED_UMFS`) when it fits); an interrupted run
               continues from its checkpoints
  3. line    — OUT/line.wav: a different synthetic utterance (another pitch and rhythm) to dub
  4. render  — OUT/dubbed/line.mp4: the avatar speaking that line (H.264 + AAC)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from instag.atomic import atomic_file, write_text_atomic
from instag.errors import InstagError

LINE_SECONDS = 8.0
LINE_SEED = 11
STEPS = ("sample", "adapt", "line", "render")
DemoProgress = Callable[[str, int, int | None, str], None]  # (step, done, total or None, note)


@dataclass
class DemoResult:
    out: Path
    sample: Path
    avatar: Path
    line: Path
    dubbed: Path
    umf: Path | None
    skipped: list[str] = field(default_factory=list)  # steps whose outputs already existed
    timings_s: dict[str, float] = field(default_factory=dict)  # wall time of each step that ran (adapt also
    # split into adapt:preprocess and adapt:adapt)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def preview_command(self) -> str:
        return f"instag preview {self.avatar} --audio {self.line}"


def _avatar_complete(avatar: Path, clip: Path) -> bool:
    return (avatar / "avatar.json").is_file() and (avatar / "source" / clip.name).is_file()


def run_demo(out: str | Path = "out/demo", force: bool = False, progress: DemoProgress | None = None,
             should_stop: Callable[[], bool] | None = None) -> DemoResult:
    """Make the sample, adapt an avatar to it, synthesise a different line and dub it; see the module doc."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out, out / "sample.mp4", out / "avatar", out / "line.wav", out / "dubbed" / "line.mp4", None)
    report = progress or (lambda step, done, total, note: None)
    redo = force

    def timed(step: str, fn) -> None:
        report(step, 0, None, "")
        t0 = time.perf_counter()
        fn()
        res.timings_s[step] = round(time.perf_counter() - t0, 1)

    if redo or not res.sample.is_file():
        timed("sample", lambda: _make_sample(res.sample, lambda d, t: report("sample", d, t, "frames")))
        redo = True
    else:
        res.skipped.append("sample")

    if redo or not _avatar_complete(res.avatar, res.sample):
        timed("adapt", lambda: _adapt(res, redo, report, should_stop))
        if res.interrupted:
            return res
        redo = True
    else:
        res.skipped.append("adapt")
        res.umf = _avatar_umf(res.avatar)

    if redo or not res.line.is_file():
        timed("line", lambda: _make_line(res.line))
        report("line", 1, 1, f"{LINE_SECONDS:.0f} s of speech")
        redo = True
    else:
        res.skipped.append("line")

    if redo or not res.dubbed.is_file():
        timed("render", lambda: _render(res, report))
    else:
        res.skipped.append("render")
    write_text_atomic(out / "demo.json", json.dumps(
        {"sample": str(res.sample), "avatar": str(res.avatar), "line": str(res.line), "dubbed": str(res.dubbed),
         "umf": str(res.umf) if res.umf else None, "timings_s": res.timings_s, "skipped": res.skipped},
        indent=2) + "\n")
    return res


def _make_sample(path: Path, progress: Callable[[int, int], None]) -> None:
    from instag.demo.sample import make_sample_clip

    make_sample_clip(path, progress=progress)


def _make_line(path: Path) -> None:
    import soundfile as sf

    from instag.audio.synthetic_speech import DUB_VOICE, synthesize
    from instag.demo.sample import usual_permissions

    utt = synthesize(LINE_SECONDS, DUB_VOICE, LINE_SEED)
    with atomic_file(path, suffix=".wav") as tmp:
        sf.write(tmp, utt.samples, utt.sample_rate, format="WAV", subtype="PCM_16")
        usual_permissions(tmp)


def _avatar_umf(avatar: Path) -> Path | None:
    """The pre-trained UMF an existing avatar was adapted from, as recorded in its avatar.json (if any)."""
    try:
        meta = json.loads((avatar / "avatar.json").read_text())
    except (OSError, ValueError):
        return None
    umf = meta.get("provenance", {}).get("umf")
    return Path(umf["path"]) if isinstance(umf, dict) and umf.get("path") else None


def _adapt(res: DemoResult, force: bool, report: DemoProgress, should_stop) -> None:
    from instag.train.from_clip import adapt_from_clip, default_run_dir

    def pre(stage: str, done: int, total: int) -> None:
        report("adapt", done, total, f"preprocess {stage}")

    def callback(event) -> None:
        report("adapt", event.step, event.total,
               f"{event.stage} loss {event.losses.get('loss', 0.0):.4f} {event.it_per_s:.2f} it/s")

    resume = not force and default_run_dir(res.avatar).is_dir()
    result = adapt_from_clip(res.sample, res.avatar, force=True, resume=resume, preprocess_progress=pre,
                             callback=callback, should_stop=should_stop)
    res.umf = result.umf
    res.warnings.extend(result.warnings)
    res.interrupted = result.interrupted
    res.timings_s.update({f"adapt:{k}": round(v, 1) for k, v in result.timings_s.items()})  # preprocess, adapt


def _render(res: DemoResult, report: DemoProgress) -> None:
    from instag.avatar.bundle import load_avatar
    from instag.avatar.dubbing import DubJob, RenderOptions, run_jobs
    from instag.machine import resolve_device

    av = load_avatar(res.avatar)
    dev = resolve_device("auto")
    av.to(dev)
    results = run_jobs(av, [DubJob(res.line, res.dubbed)], RenderOptions(force=True), dev,
                       progress=lambda d, t: report("render", d, t, "frames"))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise InstagError(f"demo: rendering {res.dubbed} failed: {failed[0].reason}")

