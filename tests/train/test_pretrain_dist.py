"""Identity-free pre-training under `torchrun --nproc-per-node 2` (gloo on CPU): identical UMF replicas on both
ranks, bit-for-bit resume from a mid-run checkpoint, a stop asked of one rank alone, and the UMF export."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from instag.avatar import load_avatar
from instag.config.model import ModelConfig
from instag.config.recipe import from_dict, to_dict
from instag.errors import InputError
from instag.motion import umf_file
from instag.motion.model import MotionModel
from instag.motion.umf_file import load_umf
from instag.train import umf as umf_module
from instag.train.adapt import adapt
from instag.train.pretrain import export_umf, pretrain
from instag.train.recipe import AdaptRecipe, PretrainRecipe
from instag.train.synthetic import TINY_MODEL, TINY_RECIPE, write_dataset
from instag.train.umf import choose_umf

BIN = Path(sys.executable).parent
TOTAL = 6


def _recipe(path: Path) -> Path:
    recipe = {
        **TINY_RECIPE,
        "lips": {"steps": 0},
        "seed": 3,
        "stages": {"face": 2, "mouth": 2, "joint": 2},
        "densify": {"every": 2, "start": 1, "stop_before_end": 0},
        "run": {"checkpoint_every": 3, "log_every": 1, "previews": 1, "threads": 1},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def _torchrun_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
            str(BIN / "instag"), *args]


def _torchrun(*args: str) -> None:
    proc = subprocess.run(_torchrun_cmd(*args), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _final(run: Path, rank: int, step: int = TOTAL) -> dict[str, torch.Tensor]:
    return load_file(str(run / f"rank{rank}" / "checkpoints" / f"step_{step:08d}" / "tensors.safetensors"))


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> tuple[Path, list[Path], Path]:
    root = tmp_path_factory.mktemp("pretrain")
    colours = [(200, 150, 120), (120, 90, 70), (230, 200, 180)]
    datasets = [write_dataset(root / f"ds{i}", colour=c, seed=i) for i, c in enumerate(colours)]
    recipe = _recipe(root / "recipe.yaml")
    run = root / "run_a"
    _torchrun("pretrain", *map(str, datasets), "-o", str(run), "--recipe", str(recipe))
    return run, datasets, root


def test_both_ranks_hold_identical_umf_weights(run_a):
    run, _, _ = run_a
    r0, r1 = _final(run, 0), _final(run, 1)
    shared = [k for k in r0 if k.startswith(("motion.", "personalized."))]
    assert shared and all(k in r1 for k in shared)
    for k in shared:
        assert torch.equal(r0[k], r1[k]), k
    # The ranks trained different identities: their Gaussians differ (rank 0 holds ids 0 and 2, rank 1 id 1).
    assert any(k.startswith("id0.face.") for k in r0) and any(k.startswith("id1.face.") for k in r1)
    # Training moved the UMF away from its initialisation.
    torch.manual_seed(3)
    fresh = MotionModel(from_dict(ModelConfig, TINY_MODEL)).state_dict()
    assert any(not torch.equal(fresh[k[len("motion."):]], r0[k]) for k in shared if k.startswith("motion."))
    rows = (run / "losses.csv").read_text().strip().splitlines()
    assert len(rows) == TOTAL + 1
    assert (run / "recipe.yaml").is_file() and list((run / "previews").glob("*.png"))


def test_resume_from_a_mid_run_checkpoint_equals_the_uninterrupted_run(run_a):
    run, datasets, root = run_a
    run_b = root / "run_b"
    shutil.copytree(run, run_b)
    for rank in (0, 1):
        shutil.rmtree(run_b / f"rank{rank}" / "checkpoints" / f"step_{TOTAL:08d}")
        assert (run_b / f"rank{rank}" / "checkpoints" / "step_00000003").is_dir()
    _torchrun("pretrain", *map(str, datasets), "-o", str(run_b), "--resume")
    for rank in (0, 1):
        a, b = _final(run, rank), _final(run_b, rank)
        assert a.keys() == b.keys()
        for k in a:
            if k.startswith("rng."):
                continue
            assert torch.equal(a[k], b[k]), (rank, k)


def _worker_of_rank(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with RANK=rank, if it has started."""
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(child)
    return None


def _checkpoint_steps(run: Path, rank: int) -> list[int]:
    return sorted(int(d.name.split("_")[1]) for d in (run / f"rank{rank}" / "checkpoints").glob("step_*"))


def test_a_stop_asked_of_one_rank_stops_both_after_the_same_logged_step(tmp_path):
    # The summed stop flags are read only on logged steps (every 8th here), so a step in between waits on no
    # device value; both ranks must still stop together and leave matching checkpoints to resume from.
    datasets = [write_dataset(tmp_path / f"ds{i}", seed=i) for i in range(2)]
    total, every = 600, 8
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        **TINY_RECIPE, "lips": {"steps": 0}, "seed": 3, "stages": {"face": total, "mouth": 0, "joint": 0},
        "densify": {"every": 0}, "run": {"checkpoint_every": 0, "log_every": every, "previews": 0, "threads": 1}}))
    run = tmp_path / "run"
    proc = subprocess.Popen(_torchrun_cmd("pretrain", *map(str, datasets), "-o", str(run), "--recipe", str(recipe)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        losses = run / "losses.csv"
        while time.monotonic() < deadline and proc.poll() is None:
            if losses.is_file() and len(losses.read_text().splitlines()) > 4:  # past the first logged steps
                break
            time.sleep(0.2)
        worker = _worker_of_rank(proc.pid, 1)
        assert worker is not None and proc.poll() is None, "the run ended or never started"
        os.kill(worker, signal.SIGTERM)  # rank 1 only: rank 0 learns of it through the all-reduce
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "interrupted at step" in output, output[-3000:]
    steps = [_checkpoint_steps(run, rank) for rank in (0, 1)]
    assert steps[0] == steps[1], steps
    last = steps[0][-1]
    assert 0 < last < total and last % every == 0, steps
    rows = losses.read_text().strip().splitlines()
    assert rows[-1].split(",")[0] == str(last)  # rank 0 logged that step and no later one


def test_export_writes_the_umf_asset(run_a):
    run, _, root = run_a
    stem = root / "assets" / "umf" / "tiny"
    limits = root / "limits.md"
    limits.write_text("Trained on three synthetic identities.\n")
    proc = subprocess.run([str(BIN / "instag"), "pretrain", "--export", str(run), "-o", str(stem),
                           "--limits", str(limits)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert stem.with_suffix(".safetensors").is_file() and stem.with_suffix(".json").is_file()
    card = (stem.parent / f"{stem.name}_MODEL_CARD.md").read_text()
    assert "# UMF `tiny`" in card and "Trained on three synthetic identities." in card
    assert card.count("- `synthetic`") == 3 and f"iterations: {TOTAL}" in card  # the corpus by name, the steps
    curves = cv2.imread(str(stem.parent / "tiny_losses.png"))
    assert curves is not None and curves.shape[0] > 100 and curves.std() > 5  # drawn, not blank
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["training_s"] >= 0 and "CPU" in doc["device"]
    cfg = from_dict(ModelConfig, TINY_MODEL)
    motion = MotionModel(cfg, with_aligner=True)
    meta = load_umf(stem, motion, cfg)
    assert meta["iterations"] == TOTAL and len(meta["corpus"]) == 3
    r0 = _final(run, 0)
    for k, v in motion.umf.state_dict().items():
        assert torch.equal(v, r0[f"motion.umf.{k}"]), k


def test_single_process_pretraining_and_refusals(tmp_path):
    datasets = [write_dataset(tmp_path / f"ds{i}", seed=i) for i in range(2)]
    recipe = from_dict(PretrainRecipe, {**TINY_RECIPE, "lips": {"steps": 0},
                                        "stages": {"face": 1, "mouth": 1, "joint": 1},
                                        "run": {"checkpoint_every": 0, "threads": 1}})
    result = pretrain(datasets, tmp_path / "run", recipe)
    assert result.steps_done == 3 and result.extra["world"] == 1
    assert (tmp_path / "run" / "rank0" / "checkpoints" / "step_00000003").is_dir()
    with pytest.raises(InputError, match="--resume"):
        pretrain(datasets, tmp_path / "run", recipe)
    with pytest.raises(InputError, match="two identities"):
        pretrain(datasets[:1], tmp_path / "run1", recipe)


def test_adaptation_starts_from_an_exported_umf(run_a):
    run, datasets, root = run_a
    stem = root / "umf_for_adapt"
    export_umf(run, stem)
    recipe = from_dict(AdaptRecipe, {**TINY_RECIPE,
                                     "stages": {"warmup": 1, "align": 1, "fuse": 0},
                                     "run": {"checkpoint_every": 0, "threads": 1}})
    adapt(datasets[0], root / "av_umf", recipe, umf=stem)
    meta = json.loads((root / "av_umf" / "avatar.json").read_text())
    assert meta["provenance"]["umf"]["iterations"] == TOTAL and len(meta["provenance"]["umf"]["sha256"]) == 64
    # The UMF stays fixed by default (the aligner, hook and Gaussians adapt); fix_umf: false fine-tunes it.
    exported = MotionModel(recipe.model)
    load_umf(stem, exported, recipe.model)
    for fix, same in ((True, True), (False, False)):
        tuned = from_dict(AdaptRecipe, {**to_dict(recipe), "fix_umf": fix})
        adapt(datasets[0], root / f"av_fix_{fix}", tuned, umf=stem)
        umf = load_avatar(root / f"av_fix_{fix}").motion.umf.state_dict()
        assert all(torch.equal(v, umf[k]) for k, v in exported.umf.state_dict().items()) == same
    # Resuming that run with another UMF is refused: its checkpoint would silently replace the UMF asked for.
    other = root / "other_umf"
    export_umf(run, other)
    tensors = load_file(str(other.with_suffix(".safetensors")))
    save_file({k: v + 0.01 for k, v in tensors.items()}, str(other.with_suffix(".safetensors")))
    with pytest.raises(InputError, match="another UMF"):
        adapt(datasets[0], root / "av_umf", None, umf=other, resume=True)
    # A recipe of other motion sizes takes the UMF's (the rest of its model stays its own) and is saved with them.
    wider = {**TINY_MODEL, "umf": {**TINY_MODEL["umf"], "hidden_dim": 32},
             "aligner": {**TINY_MODEL["aligner"], "hidden_dim": 12}}
    adapt(datasets[0], root / "av_wider", from_dict(AdaptRecipe, {**to_dict(recipe), "model": wider}), umf=stem)
    saved = yaml.safe_load((root / "av_wider.run" / "recipe.yaml").read_text())["model"]
    assert saved["umf"] == to_dict(recipe.model)["umf"] and saved["aligner"]["hidden_dim"] == 12
    # Its audio front end decides the dataset's features, so a UMF of another one is refused, not adopted.
    other_audio = {**TINY_MODEL, "audio": {**TINY_MODEL["audio"], "code_dim": 6}}
    with pytest.raises(InputError, match="model.audio"):
        adapt(datasets[0], root / "av_bad", from_dict(AdaptRecipe, {**to_dict(recipe), "model": other_audio}),
              umf=stem)


def test_the_shipped_umf_is_chosen_when_its_audio_fits_and_lends_its_motion_sizes(run_a, monkeypatch):
    run, _, root = run_a
    shipped = root / "shipped" / "mel_v3"
    export_umf(run, shipped)
    monkeypatch.setattr(umf_file, "UMF_DIR", shipped.parent)
    cfg = from_dict(ModelConfig, TINY_MODEL)
    path, why = choose_umf(None, True, cfg, "mel")
    assert path == shipped.with_suffix(".safetensors") and "shipped" in why, why
    assert choose_umf(None, False, cfg, "mel")[0] is None
    path, why = choose_umf(None, True, cfg, "hubert")
    assert path is None and "no shipped UMF reads hubert features" in why
    wider = from_dict(ModelConfig, {**TINY_MODEL, "umf": {**TINY_MODEL["umf"], "hidden_dim": 32}})
    path, why = choose_umf(None, True, wider, "mel")  # chosen, and the note says its sizes will be taken
    assert path == shipped.with_suffix(".safetensors") and "replace the recipe's model.{umf}" in why
    adopted = umf_module.with_umf_sizes(wider, shipped)
    assert adopted.umf == cfg.umf and adopted.gaussians == wider.gaussians
    load_umf(shipped, MotionModel(adopted), adopted)
    assert umf_module.with_umf_sizes(cfg, shipped) is cfg  # nothing to take: the recipe's own config
    other_audio = from_dict(ModelConfig, {**TINY_MODEL, "audio": {**TINY_MODEL["audio"], "code_dim": 6}})
    path, why = choose_umf(None, True, other_audio, "mel")
    assert path is None and "model.audio" in why
    with pytest.raises(InputError, match="no such UMF"):
        choose_umf(root / "missing", True, cfg, "mel")
    # A description written before the articulation head existed means a UMF without one.
    doc = json.loads(shipped.with_suffix(".json").read_text())
    del doc["config"]["articulation"]
    shipped.with_suffix(".json").write_text(json.dumps(doc))
    assert choose_umf(None, True, cfg, "mel")[0] == shipped.with_suffix(".safetensors")
    load_umf(shipped, MotionModel(cfg), cfg)
    talking = from_dict(ModelConfig, {**TINY_MODEL, "articulation": True})
    assert "model.{articulation}" in choose_umf(None, True, talking, "mel")[1]
    with pytest.raises(InputError, match="model.articulation"):
        load_umf(shipped, MotionModel(talking), talking)
    assert not umf_module.with_umf_sizes(talking, shipped).articulation
    del doc["config"]["hook"]  # a description that does not say what it fixes is refused, not guessed
    shipped.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="does not record model.hook"):
        umf_module.with_umf_sizes(cfg, shipped)
    monkeypatch.setattr(umf_file, "UMF_DIR", root / "nowhere")
    assert choose_umf(None, True, cfg, "mel") == (None, "none (no shipped UMF reads mel features)")
