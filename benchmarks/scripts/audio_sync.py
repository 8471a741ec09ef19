"""Does preprocessing's audio sync find offsets beyond the detectability window without moving clips that are in
sync, on people its predictor never saw?

    python benchmarks/scripts/audio_sync.py DATASET... [--json OUT.json]

The datasets' own audio is taken as in sync (each was placed by its preprocessing, or by hand where the clip is
known to be off). Two predictors of the mouth opening from the sound:
- `lopo`: the lip read-out of `instag bench lips` (ridge from Whisper layer-3 features, four frames of context),
  fitted on every other dataset, so every person is one it never saw;
- `shipped`: the shipped Whisper UMF's head, as preprocessing uses it (it saw most corpus people in training).

Measured with `instag.audio.sync.estimate_lag` as preprocessing calls it, over 125-frame windows (a user's 5 s; up
to four per clip, 22 frames clear of either end so that every shift reads real frames):
- shifted: the prediction moved by k frames (k = 0, ±4, ±6, ±8, ±10): the share of windows whose offset is found
  within a frame of k; for k = 0, the share moved out of the window (a false move);
- unrelated: one person's lips against another person's sound (every ordered pair, first 125 frames): the share
  moved out of the window (a false move: no offset is there to find), the share moved at all, and the share the rule
  before moved (within the window);
- the first 125 frames of each clip as recorded (its hand-set or preprocessed offset undone): the offset found
  before the wider search (the window only) and with it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from instag.audio import sync, whisper
from instag.bench.lips import load_person
from instag.bench.record import header
from instag.data.dataset import load_dataset
from instag.motion.umf_file import predict_opening
from instag.stats import ridge_from_moments, ridge_moments

WINDOW = 125
CLEAR = 22  # frames kept clear of either end: the largest shift plus the search's half-width
SHIFTS = (0, 4, -4, 6, -6, 8, -8, 10, -10)
ALPHA = 1000.0


def shifted(x: np.ndarray, k: int) -> np.ndarray:
    """x [T] as the sound k frames late would give it (x'[t + k] = x[t]), the ends held."""
    if k == 0:
        return x
    if k > 0:
        return np.concatenate([np.full(k, x[0]), x[:-k]])
    return np.concatenate([x[-k:], np.full(-k, x[-1])])


def window_only(est: sync.SyncEstimate, fps: float, n: int) -> int:
    """The offset the rule before gave: the detectability window alone, every one of the n frames counted as an
    independent pair."""
    corr = {k: est.correlations[k] for k in sync.candidate_lags(fps)}
    return sync.pick_lag(corr, fps, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    front = whisper.load_whisper()
    people = [load_person(p, ["whisper3"], front) for p in args.datasets]
    moments = [ridge_moments(p.features["whisper3"], p.lips) for p in people]
    total = {k: sum(m[k] for m in moments) for k in moments[0]}
    clips = []
    for path, person, m in zip(args.datasets, people, moments, strict=True):
        mx, sx, ws, my = ridge_from_moments({k: total[k] - m[k] for k in total}, (ALPHA,))
        ds = load_dataset(path)
        shipped = predict_opening(ds.audio_features("whisper"), "whisper")
        applied = round(float(ds.meta["audio"].get("sync", {}).get("offset_s", 0.0)) * ds.fps)
        clips.append({"name": path.name, "fps": ds.fps, "tracked": ds.tracks["mouth_open"].astype(np.float64),
                      "applied": applied, "lopo": ((person.features["whisper3"] - mx) / sx @ ws[ALPHA] + my)[:, 0],
                      "shipped": shipped})

    doc: dict = {**header("audio_sync"), "command": "python benchmarks/scripts/audio_sync.py DATASET...",
                 "datasets": [str(p) for p in args.datasets], "window": WINDOW, "shifts": list(SHIFTS),
                 "search_max_s": sync.SEARCH_MAX_S, "outside_margin": sync.OUTSIDE_MARGIN,
                 "outside_z": sync.OUTSIDE_Z}
    for kind in ("lopo", "shipped"):
        found = {k: [] for k in SHIFTS}
        before = {k: [] for k in SHIFTS}
        for c in clips:
            t = len(c["tracked"])
            for s in list(range(CLEAR, t - WINDOW - CLEAR + 1, WINDOW))[:4]:
                frames = np.arange(s, s + WINDOW)
                for k in SHIFTS:
                    est = sync.estimate_lag(shifted(c[kind], k), c["tracked"], frames, c["fps"])
                    found[k].append(est.lag_frames)
                    before[k].append(window_only(est, c["fps"], WINDOW))
        window = sync.candidate_lags(clips[0]["fps"])

        def within_1(picks: dict[int, list[int]]) -> dict[str, float]:
            return {str(k): round(float(np.mean(np.abs(np.array(v) - k) <= 1)), 3) for k, v in picks.items()}

        res = {"windows": len(found[0]), "found_within_1": within_1(found),
               "window_only_found_within_1": within_1(before),
               "false_moves_in_sync": round(float(np.mean([not window[0] <= v <= window[-1] for v in found[0]])), 3)}
        moved, moved_any, moved_before, pairs = 0, 0, 0, 0
        for a in clips:
            for b in clips:
                n = min(len(a["tracked"]), len(b[kind]), WINDOW)
                if a is b or n < 100:
                    continue
                est = sync.estimate_lag(b[kind][:n], a["tracked"][:n], np.arange(n), a["fps"])
                moved += not window[0] <= est.lag_frames <= window[-1]
                moved_any += est.lag_frames != 0
                moved_before += window_only(est, a["fps"], n) != 0
                pairs += 1
        res["unrelated_pairs"], res["unrelated_false_moves"] = pairs, round(moved / pairs, 4)
        res["unrelated_moves"] = round(moved_any / pairs, 4)
        res["unrelated_window_only_moves"] = round(moved_before / pairs, 4)  # within the window, by construction
        res["as_recorded"] = []
        for c in clips:
            n = min(len(c["tracked"]), WINDOW)
            est = sync.estimate_lag(shifted(c[kind], c["applied"]), c["tracked"], np.arange(n), c["fps"])
            res["as_recorded"].append({"clip": c["name"], "set_offset_frames": c["applied"],
                                       "window_only": window_only(est, c["fps"], n), "found": est.lag_frames,
                                       "r": round(est.correlations[est.lag_frames], 3),
                                       "effective_frames": round(est.effective_frames, 1)})
        doc[kind] = res
        print(f"== {kind}: {res['windows']} windows; found within a frame of k: {res['found_within_1']} (window "
              f"only: {res['window_only_found_within_1']}); "
              f"in sync but moved out of the window: {res['false_moves_in_sync']}; unrelated pairs moved out: "
              f"{moved}/{pairs}")
        for row in res["as_recorded"]:
            print(f"  {row['clip'][:44]:44s} set {row['set_offset_frames']:+d}  window only {row['window_only']:+d}"
                  f"  found {row['found']:+d}  r {row['r']:.2f}  n_eff {row['effective_frames']}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
