"""Benchmark: how much scene an average of real latents keeps (issue 19's diagnosis).

The shipped generator's Deep latents move about their mean far less than real
ones (temporal spread 3.4 against 8.5), which is what an average of several
pieces looks like: L1 regression and IMLE both pull an output towards the
mean of the targets it cannot tell apart. This measures what that costs. It
holds out 4 clips per category of the stand-in train split (as
``bench/generator_heldout.py`` does), and for each category and ``k`` decodes
the mean of the codec latents of ``k`` random kept clips of that category,
four draws per category, then prints per ``k``:

- ``spread``: the mean per-channel standard deviation over time of the
  averaged latents;
- ``relevance``: a codec-matched :class:`~conchshell.evaluation.RelevanceClassifier`
  (fitted on the kept clips' reconstructions) on the decoded averages, with
  their category as the truth;
- ``descriptor``: :class:`~conchshell.evaluation.DescriptorProfile` agreement.

``k=1`` is a real clip through the codec (the ceiling); ``k=all`` is the
category's mean.

Usage::

    python bench/latent_averaging.py
    python bench/latent_averaging.py --ks 1 2 3 4 8 --draws 8

The last line is ``latent_averaging=<json>``.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/standin")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--draws", type=int, default=4, help="averages per category and k")
    parser.add_argument("--per-category", type=int, default=4, help="held-out clips")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from _heldout import decode, held_out

    from conchshell.demo import pretrained_model
    from conchshell.evaluation import DescriptorProfile, RelevanceClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped model's untrained I3D
        model = pretrained_model()
    n = model._n_samples
    rng = np.random.RandomState(args.seed)
    split = held_out(model, args.data, args.per_category, rng)
    clip_cat, audio, latents, kept = split.clip_cat, split.audio, split.latents, split.kept
    n_cat = len(split.train.categories)
    judge = RelevanceClassifier().fit(decode(model, latents[kept], n), clip_cat[kept])
    profile = DescriptorProfile().fit(audio.numpy()[kept], clip_cat[kept])

    rows = []
    for k in [*args.ks, None]:
        means, truth = [], []
        for c in range(n_cat):
            pool = kept[clip_cat[kept] == c]
            for _ in range(1 if k is None else args.draws):
                pick = pool if k is None else rng.choice(pool, min(k, len(pool)), replace=False)
                means.append(latents[pick].mean(0))
                truth.append(c)
        means_t, truth_a = torch.stack(means), np.asarray(truth)
        waves = decode(model, means_t, n)
        rows.append(
            {
                "k": "all" if k is None else k,
                "spread": round(float(means_t.std(-1).mean()), 2),
                "relevance": round(float(judge.score(waves, truth_a)), 3),
                "descriptor": round(float(profile.score(waves, truth_a)), 3),
            }
        )
        print(rows[-1])
    print("latent_averaging=" + json.dumps(rows))


if __name__ == "__main__":
    main()
