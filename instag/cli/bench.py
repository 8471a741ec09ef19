"""`instag bench …`: measured medians written as JSON with the machine and the commit (DESIGN §7.8)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from instag.atomic import write_text_atomic
from instag.bench.record import write_json
from instag.cli.adapt import NO_UMF_OPTION, UMF_OPTION
from instag.media.encoding import Encoding
from instag.viewer.config import LIVE_LOOKAHEAD_FRAMES, MAX_LIVE_LOOKAHEAD_FRAMES


def _command() -> str:
    """The command line that made a benchmark document, as it was typed (for its record)."""
    return "instag " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _save(doc: dict[str, Any], json_path: Path | None, con: Console, table: str | None = None) -> None:
    """Write a benchmark document where --json asks for it, with the command that made it, and its Markdown
    `table` beside it as .md."""
    if json_path:
        write_json({"command": _command()} | doc, json_path)
        con.print(f"wrote {json_path}")
        if table is not None:
            write_text_atomic(json_path.with_suffix(".md"), table)
            con.print(f"wrote {json_path.with_suffix('.md')}")


app = typer.Typer(help="Benchmarks: print a table and write JSON (machine, commit, medians).", no_args_is_help=True)


@app.command("kernels")
def kernels(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
    runs: int = typer.Option(10, "--runs", help="Timed runs per case (medians; at least 10)."),
    quick: bool = typer.Option(False, "--quick", help="One small case an op: a smoke run in seconds."),
) -> None:
    """Rasterize (10k@256², 50k@512²) and the hash encoders (50k, 500k points) on every backend present, the
    tri-plane beside its dense reference (the same lookups by torch's grid_sample)."""
    from instag.bench import kernels as bench_kernels

    con = Console()
    table = Table(title=f"kernels on {device} (medians of {runs} runs, ms)")
    for col in ("op", "backend", "impl", "N", "size", "fwd_ms", "fwd_bwd_ms"):
        table.add_column(col, justify="right" if col.endswith("ms") or col == "N" else "left")

    def show(case: dict[str, Any]) -> None:
        con.print(f"  {case['op']} {case['backend']} N={case['N']} {case['size']}: fwd {case['fwd_ms']:.2f} ms, fwd+bwd {case['fwd_bwd_ms']:.2f} ms")
        table.add_row(case["op"], case["backend"], case["impl"], str(case["N"]), case["size"], f"{case['fwd_ms']:.2f}", f"{case['fwd_bwd_ms']:.2f}")

    doc = bench_kernels.run(device=device, runs=runs, progress=show, quick=quick)
    con.print(table)
    _save(doc, json_path, con)


@app.command("preprocess")
def preprocess(
    clip: Path = typer.Argument(..., help="Clip to preprocess (into a temporary directory)."),
    size: int = typer.Option(512, "--size", help="Output frame side."),
    fps: float = typer.Option(25.0, "--fps", help="Output frame rate."),
    runs: int = typer.Option(1, "--runs", help="Runs (medians); one run of a clip already takes seconds."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
) -> None:
    """Wall time per preprocessing stage (probe, detect, track, pose, labels, …) and peak RSS."""
    from instag.bench import preprocess as bench_preprocess
    from instag.config.preprocess import PreprocessConfig

    con = Console()
    doc = bench_preprocess.run(clip, PreprocessConfig(size=size, fps=fps), runs=runs)
    table = Table(title=f"preprocess {clip.name} at {size}px ({doc['frames']} frames; median of {runs})")
    table.add_column("stage")
    table.add_column("s", justify="right")
    for stage, sec in doc["stages_s"].items():
        table.add_row(stage, f"{sec:.2f}")
    table.add_row("total", f"{doc['total_s']:.2f}")
    con.print(table)
    con.print(f"peak RSS {doc['peak_rss_mb']:.0f} MiB")
    _save(doc, json_path, con)


@app.command("geometry")
def geometry(
    clip: Path = typer.Argument(..., help="Clip whose tracked face meshes are rasterised."),
    size: int = typer.Option(512, "--size", help="Prior side in pixels."),
    every: int = typer.Option(10, "--every", min=1, help="Compare with the exact float64 ray cast every N frames."),
    threads: int = typer.Option(1, "--threads", min=0, help="Open3D ray-cast threads (0: all); ours uses one."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
) -> None:
    """Depth/normal prior rasteriser: ms per frame and exactness against a float64 ray cast, with Open3D's
    RaycastingScene beside it where open3d is importable."""
    from instag.bench import geometry as bench_geometry
    from instag.config.preprocess import PreprocessConfig

    con = Console()
    doc = bench_geometry.run(clip, PreprocessConfig(size=size), every, threads, progress=lambda m: con.print(f"  {m}"))
    table = Table(title=f"depth/normal priors of {clip.name} at {size}² ({doc['frames']} frames, "
                        f"{doc['triangles']} triangles; exactness on {len(doc['exact_frames'])} frames)")
    cols = ("rasteriser", "ms/frame", "face px", "extra px", "missed px", "depth mean/max mm", "px >1 mm",
            "normal mean/max °")
    for col in cols:
        table.add_column(col, justify="left" if col == "rasteriser" else "right")
    for name, c in doc["against_exact"].items():
        table.add_row(name, f"{doc['ms_per_frame'][name]:.2f}", f"{c['face_px']:.0f}", f"{c['px_only_got']:.1f}",
                      f"{c['px_only_want']:.1f}", f"{c['depth_mean_abs_mm']:.4f} / {c['depth_max_abs_mm']:.3f}",
                      f"{c['px_depth_over_1mm']:.1f}", f"{c['normal_mean_deg']:.3f} / {c['normal_max_deg']:.1f}")
    con.print(table)
    _save(doc, json_path, con)


@app.command("train")
def train(
    recipe: Path = typer.Option(Path("adapt_quick_cpu"), "--recipe", help="Adaptation recipe to time (a path or a shipped name)."),
    runs: int = typer.Option(10, "--runs", help="Timed iterations per size (medians)."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads (default: the recipe's)."),
    sizes: list[int] | None = typer.Option(None, "--size", help="Image side to time (repeatable; default 256 and 512)."),
    umf: Path | None = UMF_OPTION,
    no_umf: bool = NO_UMF_OPTION,
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
) -> None:
    """Seconds per adaptation iteration (alignment stage) at 256² and 512² on synthetic data, from the UMF an
    adaptation would start from, on the recipe's run.device (auto: CUDA when torch sees one)."""
    from instag.bench import train as bench_train

    con = Console()
    doc = bench_train.run(recipe, runs=runs, threads=threads, sizes=tuple(sizes) if sizes else bench_train.SIZES,
                          umf=umf, use_umf=not no_umf,
                          progress=lambda c: con.print(f"  {c['size']}: {c['s_per_it']:.3f} s/it "
                                                       f"({c['n_face']}+{c['n_mouth']} Gaussians)"))
    con.print(f"UMF: {escape(doc['umf'])}", highlight=False)
    table = Table(title=f"adaptation iterations ({recipe.name}, {doc['device']}, {doc['threads']} thread(s), "
                        f"median of {runs})")
    for col in ("size", "stage", "Gaussians", "s/it", "it/s", "device wait s/it"):
        table.add_column(col, justify="left" if col in ("size", "stage") else "right")
    for c in doc["cases"]:
        table.add_row(c["size"], c["stage"], f"{c['n_face'] + c['n_mouth']}", f"{c['s_per_it']:.3f}",
                      f"{1 / c['s_per_it']:.2f}", f"{c['device_wait_s_per_it']:.3f}")
    con.print(table)
    _save(doc, json_path, con)


@app.command("render")
def render(
    avatar: Path = typer.Argument(..., help="Avatar dir to time."),
    audio: Path | None = typer.Option(None, "--audio", help="Audio for the end-to-end case (default: a synthetic "
                                      "speech-like signal); looped when shorter than --seconds."),
    seconds: float = typer.Option(60.0, "--seconds", help="Length of the end-to-end dubbing job."),
    short: float = typer.Option(10.0, "--short", help="Length of the short job the peak RSS is compared with."),
    runs: int = typer.Option(50, "--runs", help="Frames timed for model + rasterization (median)."),
    threads: int = typer.Option(0, "--threads", help="torch threads on CPU (0: torch's default)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Dub into the avatar's full-size source frames "
                                    "(the source clip must be findable, as for `instag render --paste-back`)."),
    crf: int = typer.Option(Encoding.crf, "--crf", min=0, max=51, help="x264 quality of the dubs."),
    preset: str | None = typer.Option(None, "--preset", help="x264 preset of the dubs (default: `instag render`'s)."),
    dataset: Path | None = typer.Option(None, "--dataset", help="The avatar's dataset: also score its face on "
                                        "held-out frames rendered at its size and upscaled vs at the source's scale, "
                                        "and the pasted face's colour and sharpness with and without seam matching."),
    features_from: Path | None = typer.Option(None, "--features-from", help="Time the model on the speech features "
                                              "this dataset stores (of the avatar's kind) instead of computing them "
                                              "from the audio: for a machine without the speech front end."),
    model_only: bool = typer.Option(False, "--model-only", help="Time the model and rasterization only, no dubs."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
) -> None:
    """Model + rasterization frames/s (no I/O) and end-to-end dubbing speed (× real time) and peak RSS; with
    --paste-back, dubbing into the full-size source frames."""
    from instag.bench import render as bench_render

    con = Console()

    def show(name: str, c: dict[str, Any]) -> None:
        if name == "render_scale":
            for size, f in c["per_render_size"].items():
                con.print(f"  face rendered at {size}² → {c['crop_side_px']}²: PSNR {f['psnr']:.2f} dB, SSIM "
                          f"{f['ssim']:.3f}, sharpness {f['sharpness']:.2f} of the source's")
        elif name == "seam":
            for variant, f in c["variants"].items():
                dub, held = f["dub"], f["held_out"]
                con.print(f"  seam matching {variant}: face sharpness {dub['face_sharpness']:.2f} (dub) / "
                          f"{held['face_sharpness']:.2f} (held out) of the source's, colour cast ΔE "
                          f"{dub['seam_cast_delta_e']:.2f} / {held['seam_cast_delta_e']:.2f}, held-out face PSNR "
                          f"{held['face_psnr']:.2f} dB")
        elif name == "model":
            con.print(f"  model+raster {c['size']} ({c['n_face']}+{c['n_mouth']} Gaussians, {c['device']}): "
                      f"{c['ms_per_frame']:.1f} ms/frame = {c['fps']:.1f} frames/s "
                      f"(CPU {c['cpu_ms_per_frame']:.1f} ms/frame)")
        else:
            con.print(f"  dub {c['audio_s']:.0f} s: {c['wall_s']:.1f} s = {c['x_real_time']:.2f}× real time "
                      f"(process CPU {c['cpu_s']:.1f} s), peak RSS {c['peak_rss_mb']:.0f} MiB")

    doc = bench_render.run(avatar, audio, seconds, short, runs, threads, device, paste_back, crf, preset, dataset,
                           features_from, model_only, progress=show)
    pasted = doc.get("source")
    into = f"; pasted into {pasted['width']}×{pasted['height']} at {pasted['fps']:g} fps" if pasted else ""
    table = Table(title=f"render {avatar} ({doc['model']['size']}, {doc['model']['device']}, "
                        f"{doc['model']['torch_threads']} thread(s); x264 {doc['encoding']['preset']} crf {crf}{into})")
    for col in ("case", "frames/s", "× real time", "wall s", "peak RSS MiB"):
        table.add_column(col, justify="left" if col == "case" else "right")
    m = doc["model"]
    table.add_row("model + rasterization (no I/O)", f"{m['fps']:.1f}", "", "", "")
    for name, c in doc.get("end_to_end", {}).items():
        table.add_row(f"dub {c['audio_s']:.0f} s ({name})", f"{c['frames'] / c['wall_s']:.1f}",
                      f"{c['x_real_time']:.2f}", f"{c['wall_s']:.1f}", f"{c['peak_rss_mb']:.0f}")
    con.print(table)
    if "peak_rss_ratio_long_short" in doc:
        con.print(f"peak RSS long/short: {doc['peak_rss_ratio_long_short']:.3f}")
    _save(doc, json_path, con)


def _print_measures(title: str, rows: list[tuple[str, str]], con: Console) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    con.print(table)


@app.command("preview")
def preview(
    avatar: Path = typer.Argument(..., help="Avatar dir to serve."),
    audio: Path | None = typer.Option(None, "--audio", help="Audio to play, or with --live the speech the "
                                      "microphone hears (default: a synthetic speech-like signal)."),
    seconds: float = typer.Option(10.0, "--seconds", help="Seconds of playback (--live: of microphone) measured."),
    live: bool = typer.Option(False, "--live", help="Measure the microphone mode in a headless Chromium whose "
                              "microphone plays the audio, with pauses put in: voice-to-lips latency, frames/s, "
                              "the mouth in silence."),
    size: int | None = typer.Option(None, "--size", help="Frame side (default: 256 on CPU, the avatar's on a GPU)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    threads: int = typer.Option(1, "--threads", help="torch threads on CPU (0: torch's default)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Frames rendered at once."),
    lookahead: int = typer.Option(LIVE_LOOKAHEAD_FRAMES, "--live-lookahead", min=0, max=MAX_LIVE_LOOKAHEAD_FRAMES,
                                  help="With --live: frames of "
                                  "sound heard after a frame before it is drawn."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
) -> None:
    """Frames/s the preview page receives and shows, audio-to-frame latency, sync, seek/orbit response; with
    --live, voice-to-lips latency of the microphone mode."""
    con = Console()

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f}"

    def r2(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    if live:
        from instag.bench import preview_live

        doc = preview_live.run(avatar, audio, seconds, size, device, threads, workers, lookahead)
        lv = doc["live"]
        rows = [("live frames/s drawn", f"{lv['fps_drawn']:.1f}"), ("frames skipped", str(lv["frames_skipped"])),
                ("features + render ms/frame (median)", f"{ms(lv['feature_ms_median'])} + "
                 f"{ms(lv['render_ms_median'] - (lv['feature_ms_median'] or 0))}")]
        rows.append(("onset → first frame that heard it, ms (median / p95)",
                     f"{ms(lv['first_frame_ms']['median'])} / {ms(lv['first_frame_ms']['p95'])}"))
        for q, lat in lv["latency_ms"].items():
            rows.append((f"voice → lips {float(q):.0%} open, ms (median / p95; missed)",
                         f"{ms(lat['median'])} / {ms(lat['p95'])}; {lat['missed']}"))
        vs = doc.get("versus_file_mode")
        if vs and vs["best_shift_frames"] is not None:
            rows.append(("lips vs the same sound dubbed as a file: r (at the best shift, frames)",
                         f"{r2(vs['r_by_shift_frames'][0])} ({r2(vs['r_by_shift_frames'][vs['best_shift_frames']])}"
                         f" at {vs['best_shift_frames']})"))
            rows.append(("live mouth's spread in speech over the dub's", r2(vs["speech_opening"].get("spread_ratio"))))
        for q, on in (vs or {}).get("onsets", {}).items():
            rows.append((f"the dub's own delay to {float(q):.0%} open; voice → lips less it, ms (median / p95)",
                         f"{ms(on['file_ms']['median'])} / {ms(on['file_ms']['p95'])}; "
                         f"{ms(on['live_less_file_ms']['median'])} / {ms(on['live_less_file_ms']['p95'])}"))
        rows.append(("capture before the page hears it, ms (Chromium's figure)",
                     ms(lv["capture_latency_ms_reported"])))
        rows.append(("silence: opening on the 0–1 scale (median / p95)",
                     f"{lv['silence']['scaled_opening_median']:.2f} / {lv['silence']['scaled_opening_p95']:.2f}"
                     if lv["silence"]["frames"] else "–"))
        _print_measures(f"preview --live {avatar} ({doc['size']}, {doc['device']}, {doc['workers']} worker(s) × "
                        f"{doc['torch_threads']} thread(s), {lv['captured_s']:.1f} s heard, {lv['onsets']} onsets; "
                        f"{doc['uptime_before']})", rows, con)
        _save(doc, json_path, con)
        return

    from instag.bench import preview as bench_preview

    doc = bench_preview.run(avatar, audio, seconds, size, device, threads, workers)
    p = doc["play"]
    rows = [("frames/s received", f"{p['fps_received']:.1f}"),
            ("frames/s shown in time", f"{p['fps_shown']:.1f}"),
            ("render ms/frame (median)", ms(p["render_ms_median"])),
            ("process CPU ms/frame", ms(p["cpu_ms_per_frame"])),
            ("cores used / load average", f"{p['cpu_load_share']:.2f} / {doc['load_average_1m']:.1f}"),
            ("audio-to-frame latency ms (median / p95)",
             f"{ms(p['latency_ms_median'])} / {ms(p['latency_ms_p95'])}"),
            ("arrival ahead of the clock ms (median)", ms(p["arrival_margin_ms_median"])),
            ("max sync error (frames)", str(p["max_sync_error_frames"])),
            ("time within one frame of the clock", f"{100 * p['share_in_sync']:.0f} %"),
            ("seek → first frame ms (median)", ms(p["seek_ms_median"])),
            ("orbit → first frame ms (median)", ms(p["orbit_ms_median"])),
            ("idle loop frames/s", f"{p['idle_fps']:.1f}")]
    _print_measures(f"preview {avatar} ({doc['size']}, {doc['device']}, {doc['n_gaussians']} Gaussians, "
                    f"{doc['workers']} worker(s) × {doc['torch_threads']} thread(s), {p['audio_s']:.1f} s of audio)",
                    rows, con)
    _save(doc, json_path, con)


@app.command("umf-ablation")
def umf_ablation(
    cases: list[str] = typer.Argument(..., help="CLIP@SECONDS: a clip of a person outside the UMF's corpus; frames "
                                      "from SECONDS on are the test split."),
    umf: Path | None = typer.Option(None, "--umf", help="The pre-trained UMF to test (default: the shipped one)."),
    recipe: Path = typer.Option(Path("adapt_quick_cpu"), "--recipe", help="Adaptation recipe of both arms (a path or a shipped name)."),
    work: Path = typer.Option(..., "--work", help="Datasets and avatars (reused when they match, so a stopped "
                              "ablation continues)."),
    size: int = typer.Option(256, "--size", help="Frame side."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads (default: the recipe's)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds; each arm is the mean over them."),
    arms: str = typer.Option("without_umf,with_umf", "--arms", help="Comma-separated arms to run."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file, and the "
                                          "table beside it as .md."),
) -> None:
    """Adapt with and without the pre-trained UMF on held-out clips; eval both on the test split."""
    from instag.bench import umf_ablation as bench_ablation
    from instag.config.recipe import load_recipe
    from instag.errors import InputError
    from instag.motion.umf_file import shipped_umf
    from instag.train.recipe import AdaptRecipe

    con = Console()
    try:
        seed_list = tuple(int(x) for x in seeds.split(",") if x.strip())
    except ValueError as exc:
        raise InputError(f"--seeds {seeds}: expected comma-separated integers") from exc
    if umf is None:
        kind = load_recipe(recipe, AdaptRecipe).audio_feature
        umf = shipped_umf(kind)
        if umf is None:
            raise InputError(f"{recipe}: no shipped UMF reads its {kind} features; pass --umf")
        umf = Path(os.path.relpath(umf))
    doc = bench_ablation.run(cases, umf, recipe, work, size, threads, seed_list,
                             report=lambda msg: con.print(msg, highlight=False),
                             arms=tuple(a.strip() for a in arms.split(",") if a.strip()))
    command = _command()
    doc["command"] = command
    table = bench_ablation.markdown_table(doc, command)
    con.print(table, highlight=False)
    _save(doc, json_path, con, table)


@app.command("audio")
def audio(
    path: Path = typer.Argument(..., help="Speech file (any format PyAV decodes); a minute or more is best."),
    runs: int = typer.Option(3, "--runs", help="Timed runs of the whole-file encode (medians)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
) -> None:
    """Whisper front end: CPU seconds per second of audio, and the short-context mode's distance to the
    whole-file states at several context lengths."""
    from instag.bench import audio as bench_audio

    con = Console()
    doc = bench_audio.run(path, runs=runs, progress=lambda m: con.print("  " + m, highlight=False))
    table = Table(title=f"whisper layer {doc['layer']} on {path.name} ({doc['audio_s']:.0f} s, {doc['machine']['cpu']})")
    cols = ("context_s", "steps", "cosine_median", "channel_corr_median", "channel_corr_p10")
    for col in cols:
        table.add_column(col, justify="right")
    for c in doc["short_context"]:
        table.add_row(*(str(c[k]) for k in cols))
    con.print(table)
    con.print(f"encode: {doc['cpu_s_per_audio_s']:.3f} s of CPU and {doc['wall_s_per_audio_s']:.3f} s of wall time "
              "per second of audio", highlight=False)
    _save(doc, json_path, con)


@app.command("lips")
def lips(
    datasets: list[Path] = typer.Argument(..., help="Dataset dirs, one person each (preprocessed with the "
                                          "features the variants need: audio.wav and tracks)."),
    variants: str = typer.Option("mel,whisper3,whisper4,whisper5", "--variants",
                                 help="Comma-separated: mel and/or whisperL (encoder layer L)."),
    lip_stages: list[Path] = typer.Option([], "--lip-stage", help="Pre-training recipe whose lip stage and lip "
                                         "read-out to score on people held out, four folds (repeatable: one per "
                                         "audio front end)."),
    lip_stage_steps: str = typer.Option("100,200,300,500", "--lip-stage-steps", help="Step counts to score."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file, and the "
                                          "table beside it as .md."),
) -> None:
    """Leave one person out: ridge maps from audio features to the lip shape, r on the person left out, and
    each person's best audio offset (a sync check before training on a clip); with --lip-stage, the shipped
    predictor (the lip stage's nets) on held-out people."""
    from instag.bench import lips as bench_lips

    con = Console()
    doc = bench_lips.run(datasets, [v.strip() for v in variants.split(",") if v.strip()],
                         progress=lambda m: con.print("  " + m, highlight=False))
    steps = [int(x) for x in lip_stage_steps.split(",") if x.strip()]
    doc["lip_stage"] = [bench_lips.lip_stage_holdout(datasets, r, steps,
                                                     progress=lambda m: con.print("  " + m, highlight=False))
                        for r in lip_stages]
    doc["command"] = _command()
    table = bench_lips.markdown_table(doc)
    con.print(table, highlight=False)
    _save(doc, json_path, con, table)


@app.command("live-lips")
def live_lips(
    avatar: Path = typer.Argument(..., help="Avatar dir (its audio nets and lip predictor)."),
    datasets: list[Path] = typer.Argument(..., help="Dataset dirs: their sound is the microphone, their tracked "
                                          "lips the truth."),
    lookahead: str = typer.Option("0,1,2,3,4", "--lookahead", help="Comma-separated frames of look-ahead to score."),
    step: int = typer.Option(2, "--step", help="Score every step-th frame."),
    context: float | None = typer.Option(None, "--context", help="Seconds of sound the live features are "
                                         "computed from (default: the preview's)."),
    score_from: float = typer.Option(0.0, "--score-from", help="Score frames from this second on (at least the "
                                     "longest context, to compare runs of several on the same frames)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file, and the "
                                          "table beside it as .md."),
) -> None:
    """The preview's microphone mode, by look-ahead: r of its predicted lips against the tracked ones and against
    a dub's prediction of the same sound."""
    from instag.bench import live_lips as bench_live_lips
    from instag.errors import InputError

    con = Console()
    try:
        ahead = [int(x) for x in lookahead.split(",") if x.strip()]
    except ValueError as exc:
        raise InputError(f"--lookahead {lookahead!r}: comma-separated whole frames") from exc
    doc = bench_live_lips.run(avatar, datasets, ahead, step, context,
                              progress=lambda m: con.print("  " + m, highlight=False), score_from_s=score_from)
    table = bench_live_lips.markdown_table(doc)
    con.print(table, highlight=False)
    _save(doc, json_path, con, table)


@app.command("dub")
def dub(
    avatar: Path = typer.Argument(..., help="Avatar dir."),
    dataset: Path = typer.Argument(..., help="The dataset dir it was adapted on (the person's own opening)."),
    audios: list[Path] = typer.Option(..., "--audio", help="Speech file to dub (repeatable)."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", help="Dub at most this much of each file."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results to this JSON file."),
) -> None:
    """Per dub: the rendered mouth opening's spread against the person's own, and how open it stays in the
    audio's pauses between phrases and in its silences."""
    from instag.bench import dub as bench_dub

    con = Console()
    doc = bench_dub.run(avatar, dataset, audios, max_seconds,
                        progress=lambda m: con.print("  " + m, highlight=False))
    table = Table(title=f"dubs of {avatar.name} (own opening std {doc['own_opening_std']})",
                  caption=f"openness: 0 = the person's 10th percentile (shut), 1 = their 90th; pauses 0.2 s up to "
                          f"{doc['silence_min_s']:g} s, silences longer")
    heads = {"audio": "audio", "seconds": "s", "spread": "spread", "pause_frames": "pause frames",
             "pause_openness": "in pauses", "silent_frames": "silent frames", "silence_openness": "in silence",
             "speech_openness": "in speech"}
    cols = tuple(heads)
    for col in cols:
        table.add_column(heads[col], justify="left" if col == "audio" else "right")
    for row in doc["files"]:
        table.add_row(*(escape(str(row[c])) for c in cols))
    con.print(table)
    _save(doc, json_path, con)
