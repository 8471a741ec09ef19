"""The pre-trained UMF asset (DESIGN §4): `<name>.safetensors` (UMF incl. audio nets, and the face-mouth hook) +
`<name>.json` (format, audio feature kind, the model sizes it was trained with, corpus, iterations, device, time)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from instag.atomic import atomic_file, write_text_atomic
from instag.config.model import ModelConfig
from instag.config.recipe import from_dict, to_dict
from instag.errors import InputError
from instag.motion.audio import frame_audio_windows
from instag.motion.model import MotionModel
from instag.train.model_card import card_path, model_card, write_loss_curves
from instag.train.run import read_losses, training_seconds
from instag.versioned import read_versioned_json

UMF_DIR = Path(__file__).resolve().parents[2] / "assets" / "umf"
# The shipped UMF each audio front end starts from by default (stems in UMF_DIR).
SHIPPED_UMFS = {"whisper": "whisper_v1", "mel": "mel_v3"}
UMF_FORMAT = "instag-umf"
UMF_VERSION = 1
SHARED_SIZES = ("audio", "expression_dim", "articulation", "lip_coeffs", "umf", "hook")  # ModelConfig fields a UMF file fixes
# Of those, what an adaptation takes over from the UMF it starts from. The audio front end is not among them: it
# decides the dataset's features, so it must already agree (a recipe whose audio differs gets no default UMF).
ADOPTED_SIZES = tuple(k for k in SHARED_SIZES if k != "audio")


def _saved_sizes(doc: dict[str, Any]) -> dict[str, Any]:
    """The model sizes a UMF description records; files from before the articulation head (or before it read
    more than the opening) lack those keys."""
    return {"articulation": False, "lip_coeffs": ["mouth_open"]} | doc["config"]


def umf_paths(stem: str | Path) -> tuple[Path, Path]:
    """`assets/umf/NAME` or `NAME.safetensors` or `NAME.json` → (safetensors path, json path)."""
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def choose_umf(umf: str | Path | None, use_umf: bool, cfg: ModelConfig, audio_feature: str) -> tuple[Path | None, str]:
    """The UMF an adaptation starts from, and why: `umf` when given (it must exist), none when `use_umf` is off,
    else the shipped UMF when its audio features (kind and front-end sizes) match the recipe's. The motion sizes
    it fixes replace the recipe's (`with_umf_sizes`), which the note says."""
    if not use_umf:
        return None, "none (--no-umf)"
    if umf is not None:
        st_path, json_path = umf_paths(umf)
        if not st_path.is_file() or not json_path.is_file():
            raise InputError(f"{umf}: no such UMF ({st_path.name} and {json_path.name} are both needed)")
        return st_path, str(st_path) + _adoption_note(cfg, _umf_doc(json_path))
    stem = shipped_umf(audio_feature)
    if stem is None:
        return None, f"none (no shipped UMF reads {audio_feature} features)"
    st_path, json_path = umf_paths(stem)
    doc = _umf_doc(json_path)
    if doc.get("audio_feature") != audio_feature:
        return None, f"none (the shipped UMF is for {doc.get('audio_feature')} features, the recipe uses {audio_feature})"
    if _saved_sizes(doc).get("audio") != to_dict(cfg)["audio"]:
        return None, "none (the recipe's model.audio differs from the shipped UMF's)"
    return st_path, f"{st_path} (shipped)" + _adoption_note(cfg, doc)


def shipped_umf(audio_feature: str) -> Path | None:
    """The stem of the shipped UMF for `audio_feature` features, None when there is none."""
    name = SHIPPED_UMFS.get(audio_feature)
    if name is None:
        return None
    st_path, json_path = umf_paths(UMF_DIR / name)
    return UMF_DIR / name if st_path.is_file() and json_path.is_file() else None


def _umf_doc(json_path: Path) -> dict[str, Any]:
    return read_versioned_json(json_path, UMF_FORMAT, UMF_VERSION, "UMF description")


def _adopted(cfg: ModelConfig, doc: dict[str, Any]) -> list[str]:
    """The ADOPTED_SIZES on which the recipe's model differs from the UMF described by `doc`."""
    mine, saved = to_dict(cfg), _saved_sizes(doc)
    return [key for key in ADOPTED_SIZES if saved.get(key) != mine[key]]


def _adoption_note(cfg: ModelConfig, doc: dict[str, Any]) -> str:
    keys = _adopted(cfg, doc)
    return f"; its sizes replace the recipe's model.{{{', '.join(keys)}}}" if keys else ""


def with_umf_sizes(cfg: ModelConfig, stem: str | Path) -> ModelConfig:
    """`cfg` with the motion sizes the UMF fixes (ADOPTED_SIZES: tri-plane, networks, hook, conditions) taken from
    its description, so any recipe can start from any UMF of its audio features: a paper-sized GPU recipe from the
    CPU-sized shipped one, say. The rest of the recipe (Gaussians, aligner, losses, schedule) stays its own."""
    json_path = umf_paths(stem)[1]
    doc = _umf_doc(json_path)
    keys = _adopted(cfg, doc)
    if not keys:
        return cfg
    saved = _saved_sizes(doc)
    missing = [key for key in keys if key not in saved]
    if missing:
        raise InputError(f"{json_path}: config does not record model.{missing[0]}, which the UMF fixes")
    return from_dict(ModelConfig, to_dict(cfg) | {key: saved[key] for key in keys}, f"{json_path}: config")


def write_umf(stem: str | Path, motion: MotionModel, cfg: ModelConfig, info: dict[str, Any],
              losses: Path | None = None, notes: str | None = None) -> tuple[Path, Path]:
    """Write the UMF and hook of `motion` with their sizes and `info` (audio_feature, corpus, iterations, …), and
    its model card (`model_card.card_path`) with the loss curves of `losses` (a run's losses.csv) and the trainer's `notes`."""
    st_path, json_path = umf_paths(stem)
    tensors: dict[str, Tensor] = {f"umf.{k}": v for k, v in motion.umf.state_dict().items()}
    tensors |= {f"hook.{k}": v for k, v in motion.hook.state_dict().items()}
    model = to_dict(cfg)
    rows = read_losses(losses) if losses is not None and losses.is_file() else []
    doc = {"format": UMF_FORMAT, "format_version": UMF_VERSION, **info, "training_s": round(training_seconds(rows)),
           "config": {k: model[k] for k in SHARED_SIZES}, "backend": cfg.backend}
    with atomic_file(st_path, suffix=".safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    curves = None
    if rows:
        curves = write_loss_curves(rows, st_path.with_name(f"{st_path.stem}_losses.png")).name
    write_text_atomic(card_path(st_path), model_card(st_path.stem, doc, curves, notes))
    return st_path, json_path


def load_umf(stem: str | Path, motion: MotionModel, cfg: ModelConfig) -> dict[str, Any]:
    """Load a UMF file into `motion` (UMF + hook); its sizes must match `cfg`. Returns provenance for the avatar."""
    st_path, json_path = umf_paths(stem)
    doc = _umf_doc(json_path)
    mine, saved = to_dict(cfg), _saved_sizes(doc)
    for key in SHARED_SIZES:
        if saved.get(key) != mine[key]:
            raise InputError(f"{json_path}: the UMF was trained with model.{key} = {saved.get(key)}, "
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


AUDIO_CODE_CHUNK = 256  # frames per audio-code batch: a long clip's windows at once would take hundreds of MB


def predict_opening(features: np.ndarray, audio_feature: str, stem: str | Path | None = None) -> np.ndarray | None:
    """The UMF's mouth opening [T] (standardised units, uncalibrated) read off audio features [T, K, D] of kind
    `audio_feature` (`stem`: the shipped UMF of that kind when None); None when there is no such UMF, it reads
    another kind or size of feature, or it has no articulation head. Preprocessing uses it to find the sound's
    offset to the picture (`instag.audio.sync`)."""
    stem = shipped_umf(audio_feature) if stem is None else stem
    if stem is None:
        return None
    st_path, json_path = umf_paths(stem)
    if not st_path.is_file() or not json_path.is_file():
        return None
    doc = _umf_doc(json_path)
    cfg = from_dict(ModelConfig, _saved_sizes(doc), f"{json_path}: config")
    if doc.get("audio_feature") != audio_feature or not cfg.articulation or features.shape[-1] != cfg.audio.feature_dim:
        return None
    motion = MotionModel(cfg, with_aligner=False)
    load_umf(stem, motion, cfg)
    feats = torch.from_numpy(np.array(features, dtype=np.float32))  # a copy: a memory-mapped file is read-only
    out = []
    with torch.no_grad():
        for start in range(0, len(feats), AUDIO_CODE_CHUNK):
            windows = torch.stack([frame_audio_windows(feats, i, cfg.audio)
                                   for i in range(start, min(start + AUDIO_CODE_CHUNK, len(feats)))])
            out.append(motion.umf.lip_shape(motion.umf.audio_codes(windows))[:, 0])
    return torch.cat(out).numpy()
