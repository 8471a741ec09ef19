"""The model card of an exported UMF: `NAME_MODEL_CARD.md` beside the weights and its loss-curve PNG (DESIGN §4).

Training-loop time comes from losses.csv (instag.train.run.training_seconds), which a run resumed across
sessions keeps appending to, so it covers every segment of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from instag.atomic import atomic_file
from instag.plot import line_plot


def card_path(st_path: Path) -> Path:
    """The model card of the UMF whose weights are `st_path`: NAME_MODEL_CARD.md beside them (one folder holds
    the UMFs of several audio front ends)."""
    return st_path.with_name(f"{st_path.stem}_MODEL_CARD.md")
SMOOTH_ROWS = 25  # losses are logged for one identity at a time; a moving mean shows the trend across them


def _smoothed(values: np.ndarray) -> np.ndarray:
    k = min(SMOOTH_ROWS, len(values))
    kernel = np.ones(k) / k
    padded = np.concatenate([np.full(k - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def write_loss_curves(rows: list[dict[str, str]], out: Path, width: int = 900) -> Path:
    """log10 of the total and photometric loss, and of the negative contrast (and articulation) loss, against
    steps (PNG)."""
    steps = np.array([int(r["step"]) for r in rows], np.float64)

    def column(name: str) -> np.ndarray:
        v = np.array([float(r[name]) if r.get(name) else np.nan for r in rows])
        v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
        v = np.log10(v)
        fill = np.nanmin(v) if np.isfinite(v).any() else 0.0
        return _smoothed(np.where(np.isfinite(v), v, fill))

    per_1000 = 1000 / max(float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0, 1.0)
    top = line_plot(width, 200, [("loss", column("loss"), (255, 200, 90)), ("photo", column("photo"), (90, 200, 255))],
                    f"log10 loss over {int(steps[-1])} steps (tick = 1000 steps)", per_1000)
    series = [("contrast", column("contrast"), (255, 110, 200))]
    if any(r.get("articulation") for r in rows):
        series.append(("articulation", column("articulation"), (120, 230, 120)))
    bottom = line_plot(width, 140, series, "log10 " + " and ".join(n for n, _, _ in series) + " loss", per_1000)
    img = np.concatenate([top, bottom], 0)
    with atomic_file(out, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), img[..., ::-1])
    return out


def _readout_line(doc: dict[str, Any]) -> str:
    """The card's line on the lip read-out: how strong its ridge, on what, and whether it was fitted later onto
    weights trained without it."""
    fit = doc.get("lip_readout") or {}
    alpha = fit.get("alpha", (doc.get("lip_stage") or {}).get("readout_alpha"))
    strength = "" if alpha is None else f" (strength {alpha:g})"
    line = (f"- lip read-out: a ridge regression{strength} from the audio features to the lip shape, "
            "fitted in closed form over the identities' frames; the predicted lip shape is its mean with the "
            "articulation head's")
    return line + _refitted(fit)


def _live_readout_line(doc: dict[str, Any]) -> str:
    """The card's line on the live read-out: what it was fitted on, or that it was not."""
    fit = doc.get("live_readout_fit") or {}
    if not fit.get("fitted"):
        why = fit.get("not_fitted")
        return ("- live read-out: not fitted" + (f" ({why})" if why else "")
                + "; the preview's microphone mode reads the lip read-out")
    line = (f"- live read-out: the same ridge on the features the preview's microphone mode computes "
            f"({fit['context_s']:g} s of sound ending {fit['lookahead_frames']} frames after the frame, feature "
            f"passes shared by {fit['feature_hop']} frames); the microphone mode reads it in place of the lip "
            "read-out, its lip shape scaled by " + " and ".join(f"{g:.3f}" for g in fit.get("gain", []))
            + " (how much more widely the corpus's file predictions spread than its live ones)")
    return line + _refitted(fit)


def _refitted(fit: dict[str, Any]) -> str:
    """The clause of a read-out's line that says it was fitted later onto another UMF's weights, if it was."""
    if "refitted_from" not in fit:
        return ""
    src = fit["refitted_from"]
    return (f"; fitted afterwards onto the weights of `{src['umf']}` (sha256 {src['sha256'][:12]}…), over "
            f"{fit['frames']} frames of {len(fit['datasets'])} clips, every other weight unchanged")


def model_card(name: str, doc: dict[str, Any], curves: str | None, notes: str | None) -> str:
    """Markdown: what the UMF is, how it was trained (corpus by file name, steps, device, time), the loss
    curves, known limits (`notes`, written by whoever trained it) and how to use it."""
    tri = doc["config"]["umf"]["triplane"]
    corpus = doc.get("corpus") or []
    hours = doc.get("training_s", 0.0) / 3600
    stages = ", ".join(f"{k} {v}" for k, v in (doc.get("stages") or {}).items())
    lines = [
        f"# UMF `{name}`",
        "",
        "Universal Motion Field of instag (InsTaG identity-free pre-training): audio encoder and attention"
        + (f", the articulation head (lip shape from the audio: {', '.join(doc['config'].get('lip_coeffs') or ['mouth_open'])})"
           if doc["config"].get("articulation") else "")
        + ", face",
        "and mouth motion branches, and the face-mouth hook. No footage and no per-person Gaussians are in it.",
        "",
        "## Training",
        "",
        f"- audio features: `{doc.get('audio_feature')}`",
        f"- tri-plane: {tri['n_levels']} levels × {tri['n_features']} feature(s), 2^{tri['log2_table_size']} "
        f"tables, resolution {tri['base_resolution']}–{tri['max_resolution']}",
        f"- iterations: {doc.get('iterations')} ({stages}), one frame of one identity per step, "
        f"{doc.get('ranks', 1)} rank(s)",
        *([f"- lip stage first: {lips['steps']} steps of {lips['batch']} frames across identities (audio nets and "
           "articulation head from the tracked landmarks; fixed afterwards)"]
          if (lips := doc.get("lip_stage") or {}).get("steps") else []),
        *([_readout_line(doc)] if doc["config"].get("lip_readout") else []),
        *([_live_readout_line(doc)] if doc["config"].get("lip_readout") and doc["config"].get("live_readout") else []),
        f"- device: {doc.get('device')}",
        f"- training-loop time: {hours:.2f} h (from the logged rates)",
        f"- exported {doc.get('time')}",
        "",
        f"Corpus ({len(corpus)} identities, one clip each):",
        "",
    ]
    lines += [f"- `{c.get('source', c['dataset'])}`" + (f": {c['frames']} frames" if c.get("frames") else "")
              for c in corpus]
    if curves:
        lines += ["", "## Loss curves", "", f"![loss curves]({curves})", "",
                  f"Moving means over {SMOOTH_ROWS} logged rows (each row is one identity's frame)."]
    lines += ["", "## Known limits", "", notes.strip() if notes else "Not stated by the trainer.", "",
              "## Use", "",
              f"`instag adapt DATASET -o AVATAR --umf {name}`: its motion sizes replace the recipe's. Without",
              "`--umf`, adaptation starts from the UMF shipped for the recipe's audio features",
              "(`instag.motion.umf_file.SHIPPED_UMFS`). Intended for adapting to one consenting person's clip.",
              ""]
    return "\n".join(lines)
