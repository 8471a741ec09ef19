"""Training checkpoints: every tensor (model, optimizer moments, RNG states) in one safetensors file, everything
else (step, optimizer hyper-parameters, sizes) in JSON. No pickle: a resumed run rebuilds its objects from these.

Layout: RUN/checkpoints/step_NNNNNNNN/{tensors.safetensors, state.json}, each directory written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from instag.atomic import atomic_dir
from instag.errors import InputError
from instag.versioned import read_versioned_json

CHECKPOINT_FORMAT = "instag-checkpoint"
CHECKPOINT_VERSION = 1
TENSORS = "tensors.safetensors"
STATE = "state.json"


def module_tensors(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def sub_tensors(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under `prefix.` with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_state(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[dict]]:
    """(tensors of the per-parameter state, JSON-ready param groups)."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"{prefix}.{idx}.{key}"] = value
    groups = [_plain(g) for g in sd["param_groups"]]
    return tensors, groups


def load_optimizer_state(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, Tensor],
                         groups: list[dict]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in sub_tensors(tensors, prefix).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if torch.is_tensor(v):
        return v.item()
    return v


def rng_tensors(gen: torch.Generator) -> dict[str, Tensor]:
    """The global torch RNG (and the current CUDA device's), and the run's own generator."""
    out = {"rng.torch": torch.get_rng_state(), "rng.run": gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(tensors: dict[str, Tensor], gen: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.run"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}"


def save_checkpoint(path: Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Write tensors + JSON state into the directory `path` (atomically; an existing one is replaced)."""
    with atomic_dir(path, force=True) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp / TENSORS))
        doc = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}
        (tmp / STATE).write_text(json.dumps(doc, indent=1) + "\n")


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    state = read_versioned_json(path / STATE, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "checkpoint")
    try:
        tensors = load_file(str(path / TENSORS))
    except (OSError, SafetensorError) as exc:
        raise InputError(f"{path / TENSORS}: not a readable safetensors file ({exc})") from exc
    return tensors, state


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE).is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` checkpoints."""
    import shutil

    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
