"""Writing a pre-trained UMF asset (DESIGN §4) with its model card, and choosing the UMF an adaptation starts from
(with the motion sizes it lends). Reading one is `instag.motion.umf_file`'s."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from instag.atomic import atomic_file, write_text_atomic
from instag.audio import live_context as lc
from instag.config.model import ModelConfig
from instag.config.recipe import from_dict, to_dict
from instag.errors import InputError
from instag.motion.model import MotionModel
from instag.motion.umf_file import (
    SHARED_SIZES,
    UMF_FORMAT,
    UMF_VERSION,
    find_umf,
    read_umf_tensors,
    saved_sizes,
    shipped_umf,
    umf_doc,
    umf_paths,
)
from instag.train.lips import fit_lip_readout, fit_live_readout, live_feature_model, load_lip_clip
from instag.train.model_card import card_path, model_card, write_loss_curves
from instag.train.run import read_losses, training_seconds

# Of the sizes a UMF fixes, what an adaptation takes over from the UMF it starts from. The audio front end is not among them: it
# decides the dataset's features, so it must already agree (a recipe whose audio differs gets no default UMF).
ADOPTED_SIZES = tuple(k for k in SHARED_SIZES if k != "audio")


def choose_umf(umf: str | Path | None, use_umf: bool, cfg: ModelConfig, audio_feature: str) -> tuple[Path | None, str]:
    """The UMF an adaptation starts from, and why: `umf` when given (it must exist), none when `use_umf` is off,
    else the shipped UMF when its audio features (kind and front-end sizes) match the recipe's. The motion sizes
    it fixes replace the recipe's (`with_umf_sizes`), which the note says."""
    if not use_umf:
        return None, "none (--no-umf)"
    if umf is not None:
        st_path, json_path = find_umf(umf)
        return st_path, str(st_path) + _adoption_note(cfg, umf_doc(json_path))
    stem = shipped_umf(audio_feature)
    if stem is None:
        return None, f"none (no shipped UMF reads {audio_feature} features)"
    st_path, json_path = umf_paths(stem)
    doc = umf_doc(json_path)
    if doc.get("audio_feature") != audio_feature:
        return None, f"none (the shipped UMF is for {doc.get('audio_feature')} features, the recipe uses {audio_feature})"
    if saved_sizes(doc).get("audio") != to_dict(cfg)["audio"]:
        return None, "none (the recipe's model.audio differs from the shipped UMF's)"
    return st_path, f"{st_path} (shipped)" + _adoption_note(cfg, doc)


def _adopted(cfg: ModelConfig, doc: dict[str, Any]) -> list[str]:
    """The ADOPTED_SIZES on which the recipe's model differs from the UMF described by `doc`."""
    mine, saved = to_dict(cfg), saved_sizes(doc)
    return [key for key in ADOPTED_SIZES if saved.get(key) != mine[key]]


def _adoption_note(cfg: ModelConfig, doc: dict[str, Any]) -> str:
    keys = _adopted(cfg, doc)
    return f"; its sizes replace the recipe's model.{{{', '.join(keys)}}}" if keys else ""


def with_umf_sizes(cfg: ModelConfig, stem: str | Path) -> ModelConfig:
    """`cfg` with the motion sizes the UMF fixes (ADOPTED_SIZES: tri-plane, networks, hook, conditions) taken from
    its description, so any recipe can start from any UMF of its audio features: a paper-sized GPU recipe from the
    CPU-sized shipped one, say. The rest of the recipe (Gaussians, aligner, losses, schedule) stays its own."""
    json_path = umf_paths(stem)[1]
    doc = umf_doc(json_path)
    keys = _adopted(cfg, doc)
    if not keys:
        return cfg
    saved = saved_sizes(doc)
    missing = [key for key in keys if key not in saved]
    if missing:
        raise InputError(f"{json_path}: config does not record model.{missing[0]}, which the UMF fixes")
    return from_dict(ModelConfig, to_dict(cfg) | {key: saved[key] for key in keys}, f"{json_path}: config")


def write_umf(stem: str | Path, motion: MotionModel, cfg: ModelConfig, info: dict[str, Any],
              losses: Path | None = None, notes: str | None = None,
              curves_of: Path | None = None) -> tuple[Path, Path]:
    """Write the UMF and hook of `motion` with their sizes and `info` (audio_feature, corpus, iterations, …), and
    its model card (`model_card.card_path`) with the loss curves of `losses` (a run's losses.csv; or a copy of
    `curves_of`, the plot of another UMF whose weights these are) and the trainer's `notes`."""
    st_path, json_path = umf_paths(stem)
    tensors: dict[str, Tensor] = {f"umf.{k}": v for k, v in motion.umf.state_dict().items()}
    tensors |= {f"hook.{k}": v for k, v in motion.hook.state_dict().items()}
    model = to_dict(cfg)
    rows = read_losses(losses) if losses is not None and losses.is_file() else []
    live = motion.umf.lip_readout_live
    if live is not None:
        # what the live read-out was fitted on (`train.lips.fit_live_readout`)
        info = info | {"live_readout_fit": info.get("live_readout_fit", {}) | {
            "fitted": bool(live.fitted), "lookahead_frames": lc.LOOKAHEAD_FRAMES, "feature_hop": lc.CPU_FEATURE_HOP,
            "context_s": lc.CONTEXT_S, "gain": [round(float(g), 4) for g in live.gain]}}
    # `info` may carry training_s: a UMF refitted from another keeps the training time of its weights.
    doc = {"format": UMF_FORMAT, "format_version": UMF_VERSION, "training_s": round(training_seconds(rows)), **info,
           "config": {k: model[k] for k in SHARED_SIZES}, "backend": cfg.backend}
    with atomic_file(st_path, suffix=".safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    curves = None
    if rows:
        curves = write_loss_curves(rows, st_path.with_name(f"{st_path.stem}_losses.png")).name
    elif curves_of is not None and curves_of.is_file():
        plot = st_path.with_name(f"{st_path.stem}_losses.png")
        with atomic_file(plot, suffix=".png") as tmp:
            shutil.copyfile(curves_of, tmp)
        curves = plot.name
    write_text_atomic(card_path(st_path), model_card(st_path.stem, doc, curves, notes))
    return st_path, json_path




def refit_lip_readout(stem: str | Path, datasets: list[str | Path], out: str | Path, alpha: float,
                      notes: str | None = None, progress: Callable[[int, int], None] | None = None,
                      keep_readout: bool = False) -> tuple[Path, Path]:
    """Write the UMF `stem` as `out` with its lip read-outs (the read-out and the live one) fitted on `datasets`
    (their training frames) at ridge strength `alpha`, every other weight as it was: the read-outs need tracked
    landmarks and audio only, so a UMF trained before they existed gains them without pre-training again. Its
    model card says so (`notes`: the known limits). `keep_readout`: the UMF's fitted read-out stays as it is and
    only the live one is fitted, so files are driven exactly as before. `progress(clips done, clips)` follows the
    live read-out's fit, which runs the feature model over the audio; where it cannot be fitted
    (`train.lips.live_feature_model`), the UMF's JSON says why."""
    st_path, json_path = find_umf(stem)
    doc = umf_doc(json_path)
    sizes = saved_sizes(doc)
    if not sizes.get("articulation"):
        raise InputError(f"{json_path}: this UMF has no articulation head, so no lip read-out to fit")
    if keep_readout and not sizes.get("lip_readout"):
        raise InputError(f"{json_path}: no fitted lip read-out to keep")
    cfg = from_dict(ModelConfig, sizes | {"lip_readout": True, "live_readout": True}, f"{json_path}: config")
    motion = MotionModel(cfg, with_aligner=False)
    tensors = read_umf_tensors(st_path)
    # read-outs it may already have are fitted anew
    refit = ("lip_readout_live.",) if keep_readout else ("lip_readout.", "lip_readout_live.")
    own = {k[4:]: v for k, v in tensors.items() if k.startswith("umf.") and not k[4:].startswith(refit)}
    try:
        missing, unexpected = motion.umf.load_state_dict(own, strict=False)
        motion.hook.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("hook.")})
    except RuntimeError as exc:
        raise InputError(f"{st_path}: weights do not fit the described sizes ({exc})") from exc
    if unexpected or any(not k.startswith(refit) for k in missing):
        raise InputError(f"{st_path}: weights do not fit the described sizes (missing {missing}, "
                         f"unexpected {unexpected})")
    clips = [load_lip_clip(d, doc["audio_feature"], cfg) for d in datasets]
    if keep_readout and not float(motion.umf.lip_readout.fitted):
        raise InputError(f"{st_path}: no fitted lip read-out to keep")
    if not keep_readout:
        fit_lip_readout(motion.umf, clips, cfg, alpha)
    front, why = live_feature_model(clips, doc["audio_feature"])
    source = {"umf": st_path.name, "sha256": hashlib.sha256(st_path.read_bytes()).hexdigest()}
    names = [c.name for c in clips]
    live = ({"alpha": alpha, "datasets": names,
             "frames": fit_live_readout(motion.umf, clips, cfg, alpha, doc["audio_feature"], front, progress)}
            if why is None else {"not_fitted": why})
    kept = {k: v for k, v in doc.items() if k not in ("format", "format_version", "config", "backend")}
    info = kept | {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "live_readout_fit": live | {"refitted_from": source}}
    if not keep_readout:  # a kept read-out keeps the description it had
        info["lip_readout"] = {"alpha": alpha, "datasets": names,
                               "frames": int(sum(len(c.frames) for c in clips)), "refitted_from": source}
    return write_umf(out, motion, cfg, info, notes=notes,
                     curves_of=st_path.with_name(f"{st_path.stem}_losses.png"))
