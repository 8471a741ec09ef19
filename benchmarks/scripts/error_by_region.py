"""Where two avatars' test-frame errors differ: mean squared error per label region (the dataset's face parsing),
over every `--every`-th test frame, rendered as `instag eval` renders them.

    python benchmarks/scripts/error_by_region.py AVATAR_A DATASET_A AVATAR_B DATASET_B [--every 6]

Each region's share of the difference is its summed per-pixel difference over all pixels, so the shares add up to
the difference of the whole-frame MSE. A pixel's region is the label it has in most of the sampled frames.
"""

from __future__ import annotations

import argparse

import numpy as np

from instag.avatar.bundle import load_avatar
from instag.data.dataset import load_dataset
from instag.eval.runner import render_split


def error_map(avatar: str, dataset: str, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared error per pixel [S, S] over the sampled test frames, and their label maps [F, S, S]."""
    av, ds = load_avatar(avatar), load_dataset(dataset)
    total, labels = None, []
    for i, (t, pred, gt, _) in enumerate(render_split(av, dataset)):
        if i % every:
            continue
        err = ((pred.astype(np.float64) - gt) ** 2).mean(-1)
        total = err if total is None else total + err
        labels.append(ds.label(t))
    return total / len(labels), np.stack(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar_a"), ap.add_argument("dataset_a"), ap.add_argument("avatar_b"), ap.add_argument("dataset_b")
    ap.add_argument("--every", type=int, default=6)
    args = ap.parse_args()
    a, labels = error_map(args.avatar_a, args.dataset_a, args.every)
    b, _ = error_map(args.avatar_b, args.dataset_b, args.every)
    names = {v: k for k, v in load_dataset(args.dataset_a).meta["labels"].items()}
    region = np.apply_along_axis(lambda v: np.bincount(v).argmax(), 0, labels.reshape(len(labels), -1)).reshape(a.shape)
    print(f"whole frame: MSE A {a.mean():.1f}, B {b.mean():.1f}, A − B {a.mean() - b.mean():.1f}")
    for k in np.unique(region):
        m = region == k
        print(f"{names.get(int(k), k):>15}: {int(m.sum()):6d} px, MSE A {a[m].mean():6.1f}, B {b[m].mean():6.1f}, "
              f"share of A − B {(a - b)[m].sum() / a.size:6.2f}")


if __name__ == "__main__":
    main()
