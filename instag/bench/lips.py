"""`instag bench lips DATASET…`: how well each audio front end predicts the lips of a person it never saw.

Leave one person out: a ridge map from a frame's audio features (that frame and `CONTEXT` frames either side) to
its tracked lip-shape coefficients (`LIP_COEFFS`, standardised per person) is fitted on every other dataset and
scored on the one left out (Pearson r per coefficient). It needs only tracked landmarks and audio, no rendering,
so it runs over every clip there is; it is how the front end and its layer were chosen.

Each person's audio-to-picture offset is also estimated from the held-out predictions over a wide lag range,
to flag clips whose sync is off before training on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instag.audio import features as af
from instag.audio import whisper
from instag.bench.record import header
from instag.data.dataset import load_dataset
from instag.data.pose import lip_coefficients, lip_standardisation
from instag.motion.audio import frame_audio_windows
from instag.stats import correlation, ridge_from_moments, ridge_moments

LIP_COEFFS = ("mouth_open", "mouth_width")
CONTEXT = 2  # neighbouring frames each side in a ridge input
ALPHAS = (100.0, 1000.0, 10000.0)  # ridge strengths: the penalty is alpha · n / D (inputs standardised)
MAX_LAG = 8  # frames each side searched by the sync check


@dataclass
class Person:
    name: str
    features: dict[str, np.ndarray]  # variant → [T, D] per-frame inputs (with context)
    lips: np.ndarray  # [T, C] standardised LIP_COEFFS


def variant_features(variant: str, audio: np.ndarray, fps: float, n: int, front: whisper.WhisperFrontEnd | None
                     ) -> np.ndarray:
    """Per-frame features of `variant`: 'mel' [T, 4·80] (its sub-frame steps: a log-mel step has no context of
    its own), or 'whisperL' [T, 512], encoder layer L (1..6), its two 20 ms states averaged (each already sees
    the whole window)."""
    if variant == "mel":
        return af.mel_features(audio, af.FEATURE_RATE, fps, n).reshape(n, -1)
    if not variant.startswith("whisper") or front is None:
        raise ValueError(f"unknown variant {variant!r} (mel | whisperL)")
    front.layer = int(variant.removeprefix("whisper"))
    return af.whisper_features(front, audio, fps, n).mean(1)


def with_context(x: np.ndarray, context: int = CONTEXT) -> np.ndarray:
    """[T, D] → [T, (2·context + 1)·D]: each frame beside its neighbours (edges repeated)."""
    t = len(x)
    idx = np.clip(np.arange(t)[:, None] + np.arange(-context, context + 1)[None, :], 0, t - 1)
    return x[idx].reshape(t, -1)


def load_person(path: Path, variants: list[str], front: whisper.WhisperFrontEnd | None) -> Person:
    ds = load_dataset(path)
    n = ds.n_frames
    audio, sr = ds.audio()
    if sr != af.FEATURE_RATE:
        raise ValueError(f"{path}: audio.wav is {sr} Hz, expected {af.FEATURE_RATE}")
    lips = lip_coefficients(ds.tracks, LIP_COEFFS)
    mean, std = lip_standardisation(lips, np.arange(n))
    lips = ((lips - mean) / std).astype(np.float64)
    feats = {v: with_context(variant_features(v, audio, ds.fps, n, front)).astype(np.float64) for v in variants}
    return Person(path.name, feats, lips)


def best_lag(pred: np.ndarray, tracked: np.ndarray, max_lag: int = MAX_LAG) -> tuple[int, float]:
    """The lag (frames; > 0: the sound is late) at which `pred` [T] follows `tracked` [T] best, and that r."""
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        a = tracked[max(0, -lag): len(tracked) - max(0, lag)]
        b = pred[max(0, lag): len(pred) - max(0, -lag)]
        r = correlation(a, b) or 0.0
        if r > best[1]:
            best = (lag, r)
    return best


def lopo(people: list[Person], variant: str) -> dict[float, list[dict[str, Any]]]:
    """Leave-one-person-out r per lip coefficient for one variant, per ridge strength (ALPHAS)."""
    moments = [ridge_moments(p.features[variant], p.lips) for p in people]
    total = {k: sum(m[k] for m in moments) for k in moments[0]}
    rows: dict[float, list[dict[str, Any]]] = {a: [] for a in ALPHAS}
    for p, m in zip(people, moments, strict=True):
        mx, sx, ws, my = ridge_from_moments({k: total[k] - m[k] for k in total}, ALPHAS)
        for a, w in ws.items():
            pred = ((p.features[variant] - mx) / sx) @ w + my
            row: dict[str, Any] = {"person": p.name, "frames": len(p.lips)}
            for c, name in enumerate(LIP_COEFFS):
                row[f"r_{name}"] = round(correlation(p.lips[:, c], pred[:, c]) or 0.0, 4)
            lag, r = best_lag(pred[:, 0], p.lips[:, 0])
            row["best_lag_frames"], row["r_open_at_best_lag"] = lag, round(r, 4)
            rows[a].append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for name in LIP_COEFFS:
        rs = np.array([r[f"r_{name}"] for r in rows])
        out[f"mean_r_{name}"] = round(float(rs.mean()), 4)
        out[f"median_r_{name}"] = round(float(np.median(rs)), 4)
    return out


def run(datasets: list[Path], variants: list[str],
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every variant at every ridge strength; the strength is picked per variant by the mean r of the opening
    over the held-out people (reported with all the others, so the pick is visible)."""
    front = whisper.load_whisper() if any(v.startswith("whisper") for v in variants) else None
    people = []
    for path in datasets:
        people.append(load_person(Path(path), variants, front))
        if progress:
            progress(f"loaded {path.name} ({len(people[-1].lips)} frames)")
    results = {}
    for v in variants:
        by_alpha = lopo(people, v)
        best = max(ALPHAS, key=lambda a: summary(by_alpha[a])["mean_r_mouth_open"])
        results[v] = {"alpha": best, **summary(by_alpha[best]), "people": by_alpha[best],
                      "mean_r_open_by_alpha": {str(a): summary(r)["mean_r_mouth_open"] for a, r in by_alpha.items()}}
        if progress:
            progress(f"{v}: mean r opening {results[v]['mean_r_mouth_open']}, width {results[v]['mean_r_mouth_width']}"
                     f" (alpha {best})")
    doc = header("lips")
    doc.update({"datasets": [str(p) for p in datasets], "lip_coeffs": list(LIP_COEFFS), "context_frames": CONTEXT,
                "alphas": list(ALPHAS), "variants": results})
    return doc


def markdown_table(doc: dict[str, Any]) -> str:
    """The summary per variant, then each person's r and best lag for every variant."""
    variants = doc["variants"]
    lines = [f"# Audio → lip shape, leave one person out ({len(doc['datasets'])} people)", "",
             f"Command: `{doc.get('command', 'instag bench lips …')}`", "",
             f"Machine: {doc['machine']['cpu']}; commit {doc['commit']}; ridge over each frame and "
             f"{doc['context_frames']} frames either side, strength picked per variant from {doc['alphas']}.", "",
             "| variant | alpha | mean r opening | median r opening | mean r width | median r width |",
             "| --- | --- | --- | --- | --- | --- |"]
    for v, r in variants.items():
        lines.append(f"| {v} | {r['alpha']:g} | {r['mean_r_mouth_open']:.3f} | {r['median_r_mouth_open']:.3f} | "
                     f"{r['mean_r_mouth_width']:.3f} | {r['median_r_mouth_width']:.3f} |")
    names = list(variants)
    lines += ["", "Per person: r of the opening / of the width, and the lag (frames; > 0: the sound is late) at "
              "which the held-out prediction follows the tracked opening best, with its r.", "",
              "| person | frames | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for i, row in enumerate(variants[names[0]]["people"]):
        cells = []
        for v in names:
            p = variants[v]["people"][i]
            cells.append(f"{p['r_mouth_open']:.2f} / {p['r_mouth_width']:.2f}, lag {p['best_lag_frames']:+d} "
                         f"({p['r_open_at_best_lag']:.2f})")
        lines.append(f"| {row['person']} | {row['frames']} | " + " | ".join(cells) + " |")
    for stage in doc.get("lip_stage", []):
        cols = [k for k in stage["runs"][0] if "_mean_r_" in k]
        readout = (f" The lip read-out: ridge strength {stage['readout_alpha']:g}; `mean` is what the UMF predicts."
                   if stage.get("readout_alpha") else "")
        lines += ["", f"## Lip stage of `{stage['recipe']}` ({stage['audio_feature']}), {stage['folds']} folds", "",
                  f"Each of the {len(stage['people'])} people scored by the predictor fitted on the other folds "
                  f"(every {stage['folds']}th person a fold): audio encoder, attention and articulation head (`head`; "
                  f"batch {stage['batch']}, learning rate {stage['lr']} with a cosine to 0).{readout}", "",
                  "| steps | " + " | ".join(k.replace("_mean_r_", " ") for k in cols)
                  + " |", "| --- |" + " --- |" * len(cols)]
        for run in stage["runs"]:
            lines.append(f"| {run['steps']} | " + " | ".join(f"{run[k]:.3f}" for k in cols) + " |")
        for run in stage["runs"]:
            beats = [f"{k.removeprefix('mean_beats_head_')} {v} of {len(run['people'])}"
                     for k, v in run.items() if k.startswith("mean_beats_head_")]
            if beats:
                lines += ["", f"At {run['steps']} steps the mean follows the tracked lips better than the head alone "
                          f"for: {', '.join(beats)} people."]
    return "\n".join(lines) + "\n"


def _predictions(umf, features, audio_cfg) -> dict[str, Any]:
    """A clip's lip shape [T, C] by the head alone, and (with a read-out) by the read-out alone and by their mean,
    the UMF's prediction; from features [T, K, D], in chunks of AUDIO_CODE_CHUNK frames."""
    import torch

    from instag.motion.fields import AUDIO_CODE_CHUNK

    parts: dict[str, list] = {}
    t = len(features)
    for i in range(0, t, AUDIO_CODE_CHUNK):
        frames = range(i, min(t, i + AUDIO_CODE_CHUNK))
        windows = torch.stack([frame_audio_windows(features, f, audio_cfg) for f in frames])
        codes = umf.audio_codes(windows)
        chunk = {"head": umf.articulation(codes)}
        if umf.lip_readout is not None:
            chunk |= {"readout": umf.lip_readout(windows), "mean": umf.lip_shape(codes, windows)}
        for key, value in chunk.items():
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in parts.items()}


def lip_stage_holdout(datasets: list[Path], recipe_path: Path, steps: list[int], folds: int = 4,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The lip stage of a pre-training recipe (its model, audio features and lip stage settings), scored on people
    it never saw: the people are split into `folds` groups (every `folds`-th one), and for each group and step
    count in `steps` the lip stage (and, where the recipe has one, the lip read-out) is fitted on the others and
    scored on that group. Per step count: the mean over everyone of r per lip coefficient, for the articulation
    head alone, the read-out alone and their mean (what the UMF predicts)."""
    import dataclasses

    import torch

    from instag.config.recipe import load_recipe
    from instag.motion.model import MotionModel
    from instag.train.lips import fit_lip_predictor, fit_lip_readout, load_lip_clip
    from instag.train.recipe import PretrainRecipe

    recipe = load_recipe(recipe_path, PretrainRecipe)
    cfg = recipe.model
    clips = [load_lip_clip(p, recipe.audio_feature, cfg) for p in datasets]
    names = list(cfg.lip_coeffs)
    rows = []
    for n in steps:
        scores: dict[str, list[list[float]]] = {}  # predictor → per held-out person, r per coefficient
        for fold in range(folds):
            held = [c for i, c in enumerate(clips) if i % folds == fold]
            train = [c for i, c in enumerate(clips) if i % folds != fold]
            torch.manual_seed(recipe.seed)
            umf = MotionModel(cfg).umf
            fit_lip_predictor(umf, train, cfg, dataclasses.replace(recipe.lips, steps=n), recipe.seed)
            if umf.lip_readout is not None:
                fit_lip_readout(umf, train, cfg, recipe.lips.readout_alpha)
            with torch.no_grad():
                for c in held:
                    preds = _predictions(umf, c.features, cfg.audio)
                    for key, pred in preds.items():
                        scores.setdefault(key, []).append(
                            [correlation(c.lips[:, j].numpy(), pred[:, j].numpy()) or 0.0 for j in range(len(names))])
        row: dict[str, Any] = {"steps": n}
        for key, r in scores.items():
            r = np.array(r)
            row |= {f"{key}_mean_r_{name}": round(float(r[:, j].mean()), 4) for j, name in enumerate(names)}
        if "mean" in scores:
            # How many people the UMF's prediction (the mean) follows better than the head alone, per coefficient.
            gain = np.array(scores["mean"]) - np.array(scores["head"])
            row |= {f"mean_beats_head_{name}": int((gain[:, j] > 0).sum()) for j, name in enumerate(names)}
        row["people"] = {c.name: {k: [round(x, 4) for x in r[i]] for k, r in scores.items()}
                         for i, c in enumerate(c for f in range(folds) for j, c in enumerate(clips) if j % folds == f)}
        rows.append(row)
        if progress:
            progress(f"lip stage {n} steps, {folds} folds: held-out mean r " + ", ".join(
                f"{k} {v}" for k, v in row.items() if k not in ("steps", "people")))
    return {"recipe": str(recipe_path), "audio_feature": recipe.audio_feature, "folds": folds,
            "people": [c.name for c in clips], "batch": recipe.lips.batch, "lr": recipe.lips.lr,
            "readout_alpha": recipe.lips.readout_alpha if cfg.lip_readout and cfg.articulation else None,
            "runs": rows}
