"""Reading a pre-trained UMF asset (DESIGN §4): `<name>.safetensors` (UMF incl. audio nets, and the face-mouth
hook) + `<name>.json` (format, audio feature kind, the sizes it was trained with, corpus, …), the shipped UMF of
each audio front end, and the mouth opening a UMF reads off audio features. Writing one, and choosing one for an
adaptation, is training's (`instag.train.umf`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from instag.config.model import ModelConfig
from instag.config.recipe import from_dict, to_dict
from instag.errors import InputError
from instag.motion.fields import FILE_LIP_MODULES
from instag.motion.model import MotionModel
from instag.package_data import package_dir
from instag.versioned import read_versioned_json

UMF_DIR = package_dir("assets/umf")
# The shipped UMF each audio front end starts from by default (stems in UMF_DIR).
SHIPPED_UMFS = {"whisper": "whisper_v4", "mel": "mel_v3"}
UMF_FORMAT = "instag-umf"
UMF_VERSION = 1
# ModelConfig fields a UMF file fixes
SHARED_SIZES = ("audio", "expression_dim", "articulation", "lip_coeffs", "lip_readout", "live_readout", "umf", "hook")


def saved_sizes(doc: dict[str, Any]) -> dict[str, Any]:
    """The model sizes a UMF description records; files from before the articulation head (or before it read
    more than the opening, or before the lip read-outs) lack those keys."""
    return {"articulation": False, "lip_coeffs": ["mouth_open"], "lip_readout": False, "live_readout": False} | doc["config"]


def umf_paths(stem: str | Path) -> tuple[Path, Path]:
    """`DIR/NAME`, `NAME.safetensors` or `NAME.json` → (safetensors path, json path)."""
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def find_umf(umf: str | Path) -> tuple[Path, Path]:
    """The (safetensors, json) paths of an existing UMF the user named: files at `umf`, else the shipped UMF of
    that bare name (`whisper_v1`, or `assets/umf/whisper_v1` from the checkout's layout before the UMFs moved
    into the package). Never for writing: a new UMF goes where it is told."""
    st_path, json_path = umf_paths(umf)
    if not st_path.is_file() and st_path.parent in (Path("."), Path("assets/umf")):
        shipped_st, shipped_json = umf_paths(UMF_DIR / st_path.stem)
        if shipped_st.is_file():
            return shipped_st, shipped_json
    if not st_path.is_file() or not json_path.is_file():
        raise InputError(f"{umf}: no such UMF ({st_path.name} and {json_path.name} are both needed)")
    return st_path, json_path


def shipped_umf(audio_feature: str) -> Path | None:
    """The stem of the shipped UMF for `audio_feature` features, None when there is none."""
    name = SHIPPED_UMFS.get(audio_feature)
    if name is None:
        return None
    st_path, json_path = umf_paths(UMF_DIR / name)
    return UMF_DIR / name if st_path.is_file() and json_path.is_file() else None


def umf_doc(json_path: Path) -> dict[str, Any]:
    return read_versioned_json(json_path, UMF_FORMAT, UMF_VERSION, "UMF description")


def load_umf(stem: str | Path, motion: MotionModel, cfg: ModelConfig) -> dict[str, Any]:
    """Load a UMF file into `motion` (UMF + hook); its sizes must match `cfg`. Returns provenance for the avatar."""
    st_path, json_path = umf_paths(stem)
    doc = umf_doc(json_path)
    mine, saved = to_dict(cfg), saved_sizes(doc)
    for key in SHARED_SIZES:
        if saved.get(key) != mine[key]:
            raise InputError(f"{json_path}: the UMF was trained with model.{key} = {saved.get(key)}, "
                             f"the recipe has {mine[key]}")
    tensors = read_umf_tensors(st_path)
    try:
        motion.umf.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("umf.")})
        motion.hook.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("hook.")})
    except RuntimeError as exc:
        raise InputError(f"{st_path}: weights do not fit the described sizes ({exc})") from exc
    digest = hashlib.sha256(st_path.read_bytes()).hexdigest()
    return {"path": str(st_path), "sha256": digest, "audio_feature": doc.get("audio_feature"),
            "iterations": doc.get("iterations"), "corpus": doc.get("corpus")}


def read_umf_tensors(st_path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a UMF's safetensors file (`umf.*`, `hook.*`); an unreadable or malformed file is an
    `InputError`."""
    try:
        return load_file(str(st_path))
    except (OSError, SafetensorError) as exc:
        raise InputError(f"{st_path}: not a valid safetensors file ({exc})") from exc


def lip_predictor_sha256(stem: str | Path) -> str:
    """sha256 of what a UMF's file-mode lip prediction (`UniversalMotionField.clip_lips`) reads: the tensors of
    FILE_LIP_MODULES and the sizes of its audio features and lip shape. Two UMF files with the same digest place a
    clip's sound identically (`instag.data.preprocess`'s sync), whatever else differs between them."""
    st_path, json_path = umf_paths(stem)
    sizes = saved_sizes(umf_doc(json_path))
    digest = hashlib.sha256(json.dumps({k: sizes.get(k) for k in ("audio", "lip_coeffs")}, sort_keys=True).encode())
    prefixes = tuple(f"umf.{m}." for m in FILE_LIP_MODULES)
    tensors = read_umf_tensors(st_path)
    for name in sorted(k for k in tensors if k.startswith(prefixes)):
        value = tensors[name]
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
    doc = umf_doc(json_path)
    cfg = from_dict(ModelConfig, saved_sizes(doc), f"{json_path}: config")
    if doc.get("audio_feature") != audio_feature or not cfg.articulation or features.shape[-1] != cfg.audio.feature_dim:
        return None
    motion = MotionModel(cfg, with_aligner=False)
    load_umf(stem, motion, cfg)
    feats = torch.from_numpy(np.array(features, dtype=np.float32))  # a copy: a memory-mapped file is read-only
    with torch.no_grad():
        return motion.umf.clip_lips(feats, list(range(len(feats))), cfg.audio)[1][:, 0].numpy()
