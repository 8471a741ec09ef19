"""`instag bench render`: how fast an avatar renders and dubs.

- model + rasterization: median time of `Avatar.render` per frame (motion fields → deformed Gaussians →
  rasterize → composite) at the avatar's size, conditions prepared beforehand: no decoding, no encoding, no I/O.
  With `features_from` (a dataset of the avatar's feature kind) the conditions take its stored speech features
  instead of features of the audio: for a machine without the speech front end (the time does not depend on the
  features' values).
- end to end: a whole dubbing job (decode audio, features, render, H.264 + AAC encode, write) for a `seconds`-long
  audio and for a `short_s`-long one, each in a fresh process, so each one's peak RSS is its own: frames are
  encoded as they are rendered, so the long job's peak should be within 10 % of the short one's. With
  `paste_back` the jobs dub into the avatar's full-size source frames (the JSON says which clip, its size, rate
  and rotation), the output at the source's resolution.
- render scale (with `dataset`, the avatar's dataset): the face on held-out frames rendered at the avatar's size
  and upscaled against rendered at the source's scale (instag.bench.paste_scale); and the pasted face's colour
  and sharpness against the source's around it, with and without the seam matching (instag.bench.paste_seam).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

from instag.audio.synthetic_speech import VoiceStyle, synthesize
from instag.bench.record import header
from instag.errors import InputError
from instag.media.encoding import Encoding

WARMUP_FRAMES = 3


# A voice that talks without pausing: a voice detector (`audio.voice`) hears it in every 32 ms, so nothing rests.
_TALKER = VoiceStyle(f0_hz=150.0, syllable_s=(0.17, 0.3), phrase_syllables=(10_000, 10_000), pause_s=(0.0, 0.0),
                     pitch_swing=0.12)
_LEAD_IN_S = 0.3  # the synthesiser's silence before its first syllable


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """[N] float32: stands in for speech: a synthesised voice (`audio.synthetic_speech`) from its first syllable, over a
    150 Hz buzz whose loudness changes at the syllable rate (so no 40 ms of it is as quiet as a pause), and a
    little noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    voice = synthesize(seconds + 1.0, _TALKER, seed=seed, sample_rate=rate).samples[int(_LEAD_IN_S * rate):][:n]
    buzz = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2) * np.sign(np.sin(2 * np.pi * 150 * t))
    return (0.3 * voice / np.abs(voice).max() + 0.0375 * buzz + 0.0125 * rng.standard_normal(n)).astype(np.float32)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def stored_features(avatar_path: Path, dataset: Path, n: int) -> torch.Tensor:
    """n frames [n, K, D] of the speech features a dataset stores of the avatar's kind, repeated as needed."""
    from instag.avatar.bundle import load_avatar
    from instag.data.dataset import load_dataset

    av = load_avatar(avatar_path)
    kind, shape = av.meta["audio_feature"], tuple(int(v) for v in av.meta["audio_feature_shape"])
    feats = np.asarray(load_dataset(dataset).audio_features(kind), np.float32)
    if feats.shape[1:] != shape or len(feats) == 0:
        raise InputError(f"{dataset}: its '{kind}' features are {list(feats.shape)}, the avatar reads {list(shape)}")
    return torch.from_numpy(np.resize(feats, (n, *shape)))


def model_fps(avatar_path: Path, audio: np.ndarray, runs: int, threads: int, device: str,
              features: torch.Tensor | None = None) -> dict[str, Any]:
    """Median ms per `Avatar.render` over `runs` consecutive frames driven by `audio` (16 kHz mono), or by
    `features` [WARMUP_FRAMES + runs, K, D] where given."""
    from instag.avatar.bundle import load_avatar
    from instag.avatar.driving import audio_driver
    from instag.machine import resolve_device

    av = load_avatar(avatar_path)
    dev = resolve_device(device)
    av.to(dev)
    if threads > 0 and dev.type == "cpu":
        torch.set_num_threads(threads)
    n = WARMUP_FRAMES + runs
    driver = audio_driver(av, audio, n, device=dev, features=features)
    conds = [driver.condition(i).cond for i in range(n)]
    times, cpu = [], []
    for i, cond in enumerate(conds):
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        av.render(cond)
        _sync(dev)
        if i >= WARMUP_FRAMES:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    ms = statistics.median(times) * 1e3
    return {"size": f"{av.size}x{av.size}", "n_face": av.face.num_gaussians, "n_mouth": av.mouth.num_gaussians,
            "runs": runs, "ms_per_frame": ms, "ms_per_frame_min": min(times) * 1e3, "fps": 1e3 / ms,
            # CPU time of this process per frame: on a machine shared with other work, what the frame costs
            "cpu_ms_per_frame": statistics.median(cpu) * 1e3,
            "device": str(dev), "torch_threads": torch.get_num_threads()}


def _dub_in_child(avatar: Path, audio: Path, out: Path, threads: int, device: str, paste_back: bool,
                  crf: int, preset: str) -> dict[str, Any]:
    code = ("import json, sys; from instag.bench.render import dub_once; "
            "print(json.dumps(dub_once(*sys.argv[1:])))")
    proc = subprocess.run([sys.executable, "-c", code, str(avatar), str(audio), str(out), str(threads), device,
                           "1" if paste_back else "0", str(crf), preset],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"bench render: the dubbing job failed:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _source_info(avatar: Path) -> dict[str, Any]:
    """The clip a paste-back dub of `avatar` is pasted into: path, displayed size, rate, rotation, codec."""
    import av

    from instag.avatar.bundle import load_avatar
    from instag.avatar.paste_back import find_source_clip
    from instag.data.video import probe

    clip = find_source_clip(load_avatar(avatar))
    info = probe(clip, 0.0)
    with av.open(str(clip)) as c:
        rate = float(c.streams.video[0].average_rate or 0)
    return {"path": str(clip), "width": info.width, "height": info.height, "fps": rate,
            "rotation_deg": 90 * info.rotation_k, "codec": info.codec, "duration_s": info.duration_s}


def dub_once(avatar: str, audio: str, out: str, threads: str, device: str, paste_back: str = "0",
             crf: str = str(Encoding.crf), preset: str = Encoding.preset) -> dict[str, Any]:
    """One dubbing job in this process; its wall time, stage times and this process's peak RSS."""
    from instag.avatar.bundle import load_avatar
    from instag.avatar.dubbing import DubJob, RenderOptions, run_jobs
    from instag.machine import resolve_device

    t0 = time.perf_counter()
    av = load_avatar(avatar)
    dev = resolve_device(device)
    av.to(dev)
    load_s = time.perf_counter() - t0
    options = RenderOptions(threads=int(threads), force=True, crf=int(crf), preset=preset)
    [r] = run_jobs(av, [DubJob(Path(audio), Path(out), paste_back == "1")], options, dev)
    if r.status != "done":
        raise RuntimeError(r.reason)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"audio_s": r.audio_s, "frames": r.frames, "wall_s": r.wall_s, "load_s": load_s,
            "x_real_time": r.speed, "stages_s": r.timings_s,
            # CPU seconds of the whole process (render + encoder threads, start-up included)
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "output_mb": Path(out).stat().st_size / 2**20}


def run(avatar: Path, audio: Path | None = None, seconds: float = 60.0, short_s: float = 10.0, runs: int = 50,
        threads: int = 0, device: str = "auto", paste_back: bool = False, crf: int = Encoding.crf,
        preset: str | None = None, dataset: Path | None = None, features_from: Path | None = None,
        model_only: bool = False, progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    from instag.media.audio import FEATURE_RATE, decode_audio

    preset = preset or Encoding().preset_for(paste_back)

    if audio is not None:
        mono = decode_audio(audio).mono16k
        if mono.size < seconds * FEATURE_RATE:
            mono = np.resize(mono, int(seconds * FEATURE_RATE))  # loop a shorter file
    else:
        mono = speech_like(seconds)
    doc = header("render")
    doc["avatar"] = str(avatar)
    doc["paste_back"] = paste_back
    doc["encoding"] = {"crf": crf, "preset": preset}
    doc["load_average_1_5_15"] = list(os.getloadavg())  # other work on the machine during the run
    if paste_back:
        doc["source"] = _source_info(avatar)
    doc["audio"] = str(audio) if audio else f"synthetic speech-like {seconds:g} s"
    features = None
    if features_from is not None:
        features = stored_features(avatar, features_from, WARMUP_FRAMES + runs)
        doc["model_features_from"] = str(features_from)
    doc["model"] = model_fps(avatar, mono, runs, threads, device, features)
    if progress:
        progress("model", doc["model"])
    if model_only:
        return doc
    with tempfile.TemporaryDirectory(prefix="instag-bench-render-") as tmp:
        cases = {}
        for name, secs in (("short", short_s), ("long", seconds)):
            wav = Path(tmp) / f"{name}.wav"
            soundfile.write(wav, mono[: int(secs * FEATURE_RATE)], FEATURE_RATE, subtype="PCM_16")
            cases[name] = _dub_in_child(avatar, wav, Path(tmp) / f"{name}.mp4", threads, device, paste_back,
                                        crf, preset)
            if progress:
                progress(name, cases[name])
    doc["end_to_end"] = cases
    if dataset is not None:
        from instag.bench.paste_scale import compare_scales
        from instag.bench.paste_seam import compare_seams

        doc["render_scale"] = compare_scales(avatar, dataset)
        if progress:
            progress("render_scale", doc["render_scale"])
        doc["seam"] = compare_seams(avatar, dataset)
        if progress:
            progress("seam", doc["seam"])
    doc["x_real_time"] = cases["long"]["x_real_time"]
    doc["peak_rss_ratio_long_short"] = cases["long"]["peak_rss_mb"] / cases["short"]["peak_rss_mb"]
    return doc
