"""Ceiling of the music-aware relevance measures on a BOP-layout dataset.

Trains the :class:`~conchshell.evaluation.RelevanceClassifier` and the
:class:`~conchshell.evaluation.DescriptorProfile` on the *real* clips of the
train split and scores the real clips of the val split: what a generator that
produced real music of the right category could reach. Two reference rows put
generated clips in context: a "right category, other piece" oracle (each val
pair's clip replaced by another val clip of the same category) and a white-noise
floor at the same loudness.

Usage::

    python bench/relevance.py --data data/standin
    python bench/relevance.py --data data/standin --json relevance.json

Each distinct audio file counts once (many images share one piece); val clips
whose file is also used in the train split are reported separately, since a
classifier has heard them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from conchshell.datasets import load_bop
from conchshell.evaluation import (
    DESCRIPTORS,
    DescriptorProfile,
    RelevanceClassifier,
    estimate_loudness,
    evaluate_audio,
    real_clips,
)


def same_category_other(waves: np.ndarray, cats: np.ndarray, rng) -> np.ndarray:
    """For each clip, another clip of its category (itself when it is the only one)."""
    out = np.empty_like(waves)
    for i, c in enumerate(cats):
        others = np.flatnonzero((cats == c) & (np.arange(len(cats)) != i))
        out[i] = waves[rng.choice(others)] if others.size else waves[i]
    return out


def loudness_matched_noise(waves: np.ndarray, rng) -> np.ndarray:
    noise = rng.normal(size=waves.shape).astype(np.float32)
    gain_db = estimate_loudness(waves) - estimate_loudness(noise)
    return noise * (10 ** (gain_db / 20))[:, None].astype(np.float32)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/standin"), help="BOP-layout root")
    parser.add_argument("--small", action="store_true", help="use Label_small.xlsx")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    train = load_bop(args.data, "train", small=args.small, augment=False)
    val = load_bop(args.data, "val", small=args.small, augment=False)
    train_waves, train_cats, train_paths = real_clips(train)
    val_waves, val_cats, val_paths = real_clips(val)
    load_s = time.perf_counter() - t0
    n_cat = train.n_categories
    unseen = np.array([p not in set(train_paths) for p in val_paths])
    print(
        f"{args.data}: {n_cat} categories; train {len(train)} pairs / {len(train_paths)} "
        f"distinct clips; val {len(val)} pairs / {len(val_paths)} distinct clips, "
        f"{int(unseen.sum())} not used in train (loaded in {load_s:.1f} s)"
    )

    t0 = time.perf_counter()
    clf = RelevanceClassifier().fit(train_waves, train_cats)
    clf_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    profile = DescriptorProfile().fit(train_waves, train_cats)
    prof_s = time.perf_counter() - t0
    print(
        f"fit: RelevanceClassifier {clf_s:.1f} s, DescriptorProfile {prof_s:.1f} s (CPU, 1 thread)"
    )

    results: dict[str, object] = {
        "data": str(args.data),
        "n_categories": n_cat,
        "chance": 1 / n_cat,
        "n_train_clips": len(train_paths),
        "n_val_clips": len(val_paths),
        "n_val_clips_unseen": int(unseen.sum()),
        "fit_seconds": {"relevance_classifier": clf_s, "descriptor_profile": prof_s},
    }
    rows = {}
    for name, mask in (
        ("val (all distinct clips)", np.ones_like(unseen)),
        ("val (unseen clips)", unseen),
    ):
        if not mask.any():
            continue
        rows[name] = {
            "relevance_accuracy": float(clf.score(val_waves[mask], val_cats[mask])),
            **profile.report(val_waves[mask], val_cats[mask]),
        }
    rows["train (fit data)"] = {
        "relevance_accuracy": float(clf.score(train_waves, train_cats)),
        **profile.report(train_waves, train_cats),
    }
    # context for generated clips: full evaluate_audio against the val pairs
    for name, generated in (
        ("oracle: same category, other piece", same_category_other(val_waves, val_cats, rng)),
        ("floor: loudness-matched white noise", loudness_matched_noise(val_waves, rng)),
    ):
        rows[name] = evaluate_audio(val_waves, generated, val_cats, classifier=clf, profile=profile)
    results["rows"] = rows

    columns = ["relevance_accuracy", "descriptor_agreement", "abs_z_mean"] + [
        f"abs_z_{d}" for d in DESCRIPTORS
    ]
    extra = ["paired_retrieval", "mrstft", "beat_coverage", "beat_hit"]
    print(f"\nchance accuracy = 1/{n_cat} = {1 / n_cat:.3f}\n")
    print("| clips | " + " | ".join(columns + extra) + " |")
    print("|---" * (1 + len(columns) + len(extra)) + "|")
    for name, row in rows.items():
        cells = [f"{row[c]:.3f}" if c in row else "" for c in columns + extra]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nper-category mean descriptors (train):")
    for c, means in zip(profile.classes_, profile.means_, strict=True):
        name = train.categories[int(c)]
        print(
            f"  {name:>12}: "
            + ", ".join(f"{d}={m:.2f}" for d, m in zip(DESCRIPTORS, means, strict=True))
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
