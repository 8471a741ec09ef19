"""The live mode's lip predictor on people held out in four folds (every 4th person, as `instag bench lips
--lip-stage` splits them): for each fold the lip stage of `pretrain_quick_cpu` (audio nets and articulation head)
is trained on the other three, the lip read-out is fitted on their whole files' features and the live read-out on
the live mode's (`instag.train.lips.live_windows`: 1 s contexts ending 2 frames after the frame, the CPU's hop);
each held-out person is then predicted from live windows, as the preview's microphone mode predicts them.

    python benchmarks/scripts/live_readout_folds.py DATASET...

Prints the mean r of the opening and width over the held-out people per predictor, how many people each
follows better than the live predictor before (the head averaged with the file read-out), the median spread of
each prediction's opening over the dub's (whole-file prediction), and, calibrated as an avatar is (the gain that
gives the dub's prediction the tracked spread over the person's first 5 s), the median spread of the opening over
the tracked one on the frames after those 5 s (people with at least 7 s). The shipped live predictor is scaled by
the live read-out's gain: the median over the training people of the dub's spread over its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from instag.audio import features as af
from instag.config.recipe import load_recipe
from instag.data.dataset import load_dataset
from instag.motion.audio import frame_audio_windows
from instag.motion.fields import LIVE_HEAD_WEIGHT
from instag.motion.model import MotionModel
from instag.package_data import package_dir
from instag.stats import correlation, ridge_from_moments, ridge_moments
from instag.train.lips import fit_lip_predictor, live_windows, load_lip_clip
from instag.train.recipe import PretrainRecipe

FOLDS = 4
CALIBRATION_FRAMES = 125  # an avatar's 5 s at 25 fps


def main(paths: list[Path]) -> None:
    recipe = load_recipe(package_dir("recipes") / "pretrain_quick_cpu.yaml", PretrainRecipe)
    cfg, kind = recipe.model, recipe.audio_feature
    front = af.load_front_end(kind, None)
    clips = [load_lip_clip(p, kind, cfg) for p in sorted(paths)]
    readout = MotionModel(cfg).umf.lip_readout  # only its `inputs`, which hold no weights
    people = []
    for c in clips:
        ds = load_dataset(c.path)
        audio, _ = ds.audio()
        frames, live = [], []
        for group, windows in live_windows(audio, ds.fps, list(range(len(c.features))), len(c.features), kind,
                                           front, cfg.audio, c.features.shape[2]):
            frames += group
            live.append(windows)
        live_w = torch.cat(live)
        file_w = torch.stack([frame_audio_windows(c.features, t, cfg.audio) for t in frames])
        people.append({"name": c.name, "lips": c.lips[frames].numpy(), "live_w": live_w, "file_w": file_w,
                       "live_in": readout.inputs(live_w).numpy(), "file_in": readout.inputs(file_w).numpy()})
        print(f"{c.name}: {len(frames)} frames", flush=True)
    alpha = recipe.lips.readout_alpha
    preds: dict[str, dict[str, np.ndarray]] = {}
    for fold in range(FOLDS):
        train = [p for i, p in enumerate(people) if i % FOLDS != fold]
        torch.manual_seed(recipe.seed)
        umf = MotionModel(cfg).umf
        fit_lip_predictor(umf, [c for i, c in enumerate(clips) if i % FOLDS != fold], cfg, recipe.lips, recipe.seed)
        ridge = {key: _ridge(train, key, alpha) for key in ("file_in", "live_in")}
        gain = np.median([(0.5 * (hf + ridge["file_in"](p["file_in"]))).std(0) / _blend(ridge, hl, p).std(0)
                          for p in train for hl, hf in [_heads(umf, p)]], axis=0)
        for p in people[fold::FOLDS]:
            head_live, head_file = _heads(umf, p)
            file_ro, live_ro = ridge["file_in"](p["file_in"]), ridge["live_in"](p["live_in"])
            preds[p["name"]] = {
                "dub: mean(head, read-out)": 0.5 * (head_file + file_ro),
                "live: mean(head, read-out) (before)": 0.5 * (head_live + ridge["file_in"](p["live_in"])),
                "live: head alone": head_live,
                "live: live read-out alone": live_ro,
                "live: mean(head, live read-out)": 0.5 * (head_live + live_ro),
                f"live: {LIVE_HEAD_WEIGHT:g} head + {1 - LIVE_HEAD_WEIGHT:g} live read-out":
                    LIVE_HEAD_WEIGHT * head_live + (1 - LIVE_HEAD_WEIGHT) * live_ro,
                "live: the same × the gain (shipped)": _blend(ridge, head_live, p) * gain,
            }
        print(f"fold {fold} done, gain {np.round(gain, 3)}", flush=True)
    before = "live: mean(head, read-out) (before)"
    print(f"\n{len(people)} people, four folds, ridge strength {alpha:g}\n")
    dub = "dub: mean(head, read-out)"
    long = [p for p in people if len(p["lips"]) >= CALIBRATION_FRAMES + 50]
    print("| predictor | mean r opening / width | better than before (opening) | spread over the dub's "
          f"| calibrated spread over the tracked ({len(long)} people) |")
    print("| --- | --- | --- | --- | --- |")
    for variant in preds[people[0]["name"]]:
        r = np.array([[_r(p["lips"][:, j], preds[p["name"]][variant][:, j]) for j in range(2)] for p in people])
        better = sum(_r(p["lips"][:, 0], preds[p["name"]][variant][:, 0])
                     > _r(p["lips"][:, 0], preds[p["name"]][before][:, 0]) for p in people)
        spread = np.median([preds[p["name"]][variant][:, 0].std() / preds[p["name"]][dub][:, 0].std() for p in people])
        calibrated = np.median([_calibrated_spread(p["lips"][:, 0], preds[p["name"]][dub][:, 0],
                                                   preds[p["name"]][variant][:, 0]) for p in long])
        print(f"| {variant} | {r[:, 0].mean():.3f} / {r[:, 1].mean():.3f} | {better} of {len(people)} | {spread:.2f} "
              f"| {calibrated:.2f} |")


def _heads(umf, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """The articulation head's lip shape from a person's live windows and from their file windows."""
    with torch.no_grad():
        return (umf.articulation(umf.audio_codes(p["live_w"])).numpy(),
                umf.articulation(umf.audio_codes(p["file_w"])).numpy())


def _blend(ridge: dict, head_live: np.ndarray, p: dict) -> np.ndarray:
    return LIVE_HEAD_WEIGHT * head_live + (1 - LIVE_HEAD_WEIGHT) * ridge["live_in"](p["live_in"])


def _calibrated_spread(tracked: np.ndarray, dub: np.ndarray, pred: np.ndarray) -> float:
    """The spread of `pred` over the tracked one's after the first 5 s, scaled by the gain that gives the dub's
    prediction the tracked spread over those 5 s (`train.adapt.lip_gain`, without its evidence test)."""
    n = CALIBRATION_FRAMES
    return float(tracked[:n].std() / dub[:n].std() * pred[n:].std() / tracked[n:].std())


def _ridge(people: list[dict], key: str, alpha: float):
    total: dict[str, np.ndarray] = {}
    for p in people:
        total = {k: total.get(k, 0) + v for k, v in ridge_moments(p[key], p["lips"]).items()}
    mean, scale, weights, bias = ridge_from_moments(total, (alpha,))
    return lambda x: ((x - mean) / scale) @ weights[alpha] + bias


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(correlation(a, b) or 0.0)


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
