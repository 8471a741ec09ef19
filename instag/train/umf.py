"""The pre-trained UMF asset (DESIGN §4): `<name>.safetensors` (UMF incl. audio nets, and the face-mouth hook) +
`<name>.json` (format, audio feature kind, the model sizes it was trained with, corpus, iterations, device, time)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from instag.atomic import atomic_file, write_text_atomic
from instag.config.model import ModelConfig
from instag.config.recipe import to_dict
from instag.errors import InputError
from instag.motion.model import MotionModel
from instag.versioned import read_versioned_json

UMF_FORMAT = "instag-umf"
UMF_VERSION = 1
SHARED_SIZES = ("audio", "expression_dim", "umf", "hook")  # ModelConfig fields a UMF file fixes


def umf_paths(stem: str | Path) -> tuple[Path, Path]:
    """`assets/umf/NAME` or `NAME.safetensors` or `NAME.json` → (safetensors path, json path)."""
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def write_umf(stem: str | Path, motion: MotionModel, cfg: ModelConfig, info: dict[str, Any]) -> tuple[Path, Path]:
    """Write the UMF and hook of `motion` with their sizes and `info` (audio_feature, corpus, iterations, …)."""
    st_path, json_path = umf_paths(stem)
    tensors: dict[str, Tensor] = {f"umf.{k}": v for k, v in motion.umf.state_dict().items()}
    tensors |= {f"hook.{k}": v for k, v in motion.hook.state_dict().items()}
    model = to_dict(cfg)
    with atomic_file(st_path, suffix=".safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    doc = {"format": UMF_FORMAT, "format_version": UMF_VERSION, **info,
           "config": {k: model[k] for k in SHARED_SIZES}, "backend": cfg.backend}
    write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    write_text_atomic(json_path.with_suffix(".md"), _model_card(st_path.stem, doc))
    return st_path, json_path


def _model_card(name: str, doc: dict[str, Any]) -> str:
    """A short model card beside the weights (DESIGN §4)."""
    corpus = doc.get("corpus") or []
    tri = doc["config"]["umf"]["triplane"]
    lines = [
        f"# UMF `{name}`",
        "",
        "Universal Motion Field of instag (InsTaG identity-free pre-training): audio nets, face and mouth motion",
        "branches and the face-mouth hook. Load it with `instag adapt DATASET -o AVATAR --umf "
        f"assets/umf/{name}`; the adaptation recipe's model sizes must match `{name}.json`.",
        "",
        f"- audio features: `{doc.get('audio_feature')}`",
        f"- tri-plane: {tri['n_levels']} levels x {tri['n_features']} feature(s), 2^{tri['log2_table_size']} tables",
        f"- iterations: {doc.get('iterations')} on {len(corpus)} identities over {doc.get('ranks', 1)} rank(s)",
        f"- device: {doc.get('device')}; written {doc.get('time')}",
        "",
        "Corpus: " + (", ".join(c.get("dataset", "?") for c in corpus) or "not recorded") + ".",
        "Intended use: initialising adaptation to one consenting person's clip; it carries no footage.",
        "",
    ]
    return "\n".join(lines)


def load_umf(stem: str | Path, motion: MotionModel, cfg: ModelConfig) -> dict[str, Any]:
    """Load a UMF file into `motion` (UMF + hook); its sizes must match `cfg`. Returns provenance for the avatar."""
    st_path, json_path = umf_paths(stem)
    doc = read_versioned_json(json_path, UMF_FORMAT, UMF_VERSION, "UMF description")
    mine = to_dict(cfg)
    for key in SHARED_SIZES:
        if doc["config"].get(key) != mine[key]:
            raise InputError(f"{json_path}: the UMF was trained with model.{key} = {doc['config'].get(key)}, "
                             f"the recipe has {mine[key]}")
    try:
        tensors = load_file(str(st_path))
    except (OSError, SafetensorError) as exc:
        raise InputError(f"{st_path}: not a valid safetensors file ({exc})") from exc
    try:
        motion.umf.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("umf.")})
        motion.hook.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("hook.")})
    except RuntimeError as exc:
        raise InputError(f"{st_path}: weights do not fit the described sizes ({exc})") from exc
    digest = hashlib.sha256(st_path.read_bytes()).hexdigest()
    return {"path": str(st_path), "sha256": digest, "audio_feature": doc.get("audio_feature"),
            "iterations": doc.get("iterations"), "corpus": doc.get("corpus")}
