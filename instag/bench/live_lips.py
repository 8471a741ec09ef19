"""`instag bench live-lips AVATAR DATASET…`: how well the preview's microphone mode predicts the lips, by how many
frames of look-ahead it waits for.

Each dataset's sound is fed to a live stream (`viewer.live.LiveStream`) in order, as a microphone would send it;
live frame k is predicted once the audio of the look-ahead after it has arrived, from the features the preview
computes (`viewer.live.LiveFeatures.windows`), through the avatar's audio nets and lip predictor. Scored against
the dataset's tracked lip shape (Pearson r per coefficient) and against the same nets driven by the whole file's
features (what a dub predicts). The calibration an avatar applies is affine per coefficient, so it leaves r as it
is; no rendering, so it runs over any number of people. Datasets whose clip the avatar's UMF was pre-trained on
are marked: their r is not a new person's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instag.audio.live_context import CONTEXT_S
from instag.avatar.bundle import load_avatar
from instag.bench.record import header
from instag.data.dataset import load_dataset
from instag.data.pose import lip_coefficients
from instag.errors import InputError
from instag.stats import correlation
from instag.viewer.live import MAX_CHUNK_SAMPLES, RATE, LiveFeatures, LiveStream, to_chunk


def live_lips(features: LiveFeatures, audio: np.ndarray, frames: list[int]) -> np.ndarray:
    """Predicted lip shapes [F, C] of live frames `frames` (ascending) of `audio` [N] at 16 kHz, each made as soon
    as the preview could make it."""
    stream = LiveStream(features.fps)
    umf = features.avatar.motion.umf
    out = []
    with torch.inference_mode():
        for k in frames:
            needed = min(features.heard_end(stream, k), len(audio))
            while stream.buffer.total < needed:
                piece = audio[stream.buffer.total:min(stream.buffer.total + MAX_CHUNK_SAMPLES, needed)]
                stream.push(to_chunk(piece), (stream.buffer.total + len(piece)) / RATE)
            windows = features.windows(stream, k)[None]
            out.append(umf.lip_shape(umf.audio_codes(windows), windows, live=True)[0].cpu().numpy())
    return np.stack(out)


def run(avatar: Path, datasets: list[Path], lookaheads: list[int], step: int = 2, context_s: float | None = None,
        progress: Callable[[str], None] | None = None, score_from_s: float = 0.0) -> dict[str, Any]:
    """r of the live lips against the tracked ones and the file-mode prediction, per dataset and look-ahead, with
    live features of `context_s` seconds (the preview's CONTEXT_S when None), over the frames from `score_from_s`
    on (and from the first with a full context behind it: runs of several contexts score the same frames when it
    is at least the longest)."""
    context_s = CONTEXT_S if context_s is None else context_s
    if not lookaheads or min(lookaheads) < 0:
        raise InputError(f"--lookahead: frames ≥ 0, got {lookaheads}")
    if step < 1:
        raise InputError(f"--step must be ≥ 1, got {step}")
    if score_from_s < 0:
        raise InputError(f"--score-from must be ≥ 0 s, got {score_from_s}")
    av = load_avatar(avatar)
    if not av.cfg.articulation:
        raise InputError(f"{avatar}: the avatar predicts no lip shape (its model has no articulation head)")
    coeffs = list(av.cfg.lip_coeffs)
    corpus = {c.get("source_sha256") for c in av.meta["provenance"].get("umf", {}).get("corpus", [])}
    try:
        fronts = {n: LiveFeatures(av, torch.device("cpu"), lookahead=n, context_s=context_s) for n in lookaheads}
    except ValueError as exc:
        raise InputError(f"--context: {exc}") from exc
    rows = []
    for path in datasets:
        ds = load_dataset(path)
        if ds.fps != av.meta["fps"]:
            raise InputError(f"{path}: {ds.fps} fps, the avatar was adapted at {av.meta['fps']}")
        audio, rate = ds.audio()
        if rate != RATE:
            raise InputError(f"{path}: audio.wav is {rate} Hz, the live mode hears {RATE}")
        kind = av.meta["audio_feature"]
        whole = torch.from_numpy(np.array(ds.audio_features(kind), np.float32))
        n = min(ds.n_frames, len(whole))
        # A full context behind every frame scored, and none before score_from_s
        first = max(max(f.n_frames for f in fronts.values()), int(math.ceil(score_from_s * ds.fps)))
        # Only frames whose whole context the file holds: the preview draws no other.
        frames = [k for k in range(first, n, step) if max(f.context_end(k) for f in fronts.values()) < n]
        if len(frames) < 10:
            raise InputError(f"{path}: too short to score ({n} frames)")
        tracked = lip_coefficients(ds.tracks, coeffs)[frames]
        with torch.inference_mode():
            _, file_lips = av.motion.umf.clip_lips(whole, frames, av.cfg.audio)
        file_lips = file_lips.cpu().numpy()
        row: dict[str, Any] = {"dataset": ds.path.name, "frames": len(frames),
                               "in_umf_corpus": ds.meta.get("source", {}).get("sha256") in corpus,
                               "file": {c: _r(tracked[:, i], file_lips[:, i]) for i, c in enumerate(coeffs)}}
        for n_ahead, front in fronts.items():
            lips = live_lips(front, audio, frames)
            row[f"lookahead_{n_ahead}"] = {
                "r": {c: _r(tracked[:, i], lips[:, i]) for i, c in enumerate(coeffs)},
                "r_vs_file": {c: _r(file_lips[:, i], lips[:, i]) for i, c in enumerate(coeffs)}}
        rows.append(row)
        if progress:
            progress(f"{ds.path.name}: file r {row['file'][coeffs[0]]}, live r "
                     + ", ".join(f"+{n}: {row[f'lookahead_{n}']['r'][coeffs[0]]}" for n in lookaheads))
    doc = header("live_lips")
    doc.update({"avatar": str(avatar), "fps": av.meta["fps"], "step": step, "context_s": context_s,
                "score_from_s": score_from_s,
                "lookaheads": lookaheads,
                "lip_coeffs": coeffs, "datasets": rows,
                "mean": {group: _means(rows, lookaheads, coeffs, keep)
                         for group, keep in (("new_people", False), ("all", None))}})
    return doc


def _r(a: np.ndarray, b: np.ndarray) -> float | None:
    r = correlation(a, b)
    return None if r is None else round(float(r), 4)


def _means(rows: list[dict[str, Any]], lookaheads: list[int], coeffs: list[str], in_corpus: bool | None
           ) -> dict[str, Any] | None:
    """Means over the rows (only those whose `in_umf_corpus` is `in_corpus`, unless None)."""
    rows = [r for r in rows if in_corpus is None or r["in_umf_corpus"] == in_corpus]
    if not rows:
        return None

    def mean(*keys: str) -> float | None:
        vals = []
        for r in rows:
            for k in keys:
                r = r[k]
            if r is not None:
                vals.append(r)
        return round(float(np.mean(vals)), 4) if vals else None

    out: dict[str, Any] = {"people": len(rows), "file": {c: mean("file", c) for c in coeffs}}
    for n in lookaheads:
        out[f"lookahead_{n}"] = {key: {c: mean(f"lookahead_{n}", key, c) for c in coeffs} for key in ("r", "r_vs_file")}
    return out


def markdown_table(doc: dict[str, Any]) -> str:
    """Per dataset and look-ahead, r of the first lip coefficient (the opening) against the tracked lips."""
    c = doc["lip_coeffs"][0]
    heads = ["dataset", "UMF saw it", "file"] + [f"+{n} frames" for n in doc["lookaheads"]]
    lines = [f"r of the predicted {c} against the tracked one (live: by look-ahead)", "",
             "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for row in doc["datasets"]:
        cells = [row["dataset"], "yes" if row["in_umf_corpus"] else "no", str(row["file"][c])]
        cells += [str(row[f"lookahead_{n}"]["r"][c]) for n in doc["lookaheads"]]
        lines.append("| " + " | ".join(cells) + " |")
    for group, m in doc["mean"].items():
        if m:
            cells = [f"mean, {group.replace('_', ' ')} ({m['people']})", "", str(m["file"][c])]
            cells += [str(m[f"lookahead_{n}"]["r"][c]) for n in doc["lookaheads"]]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
