"""Benchmark: the IMLE candidate search of the small Deep generator, on all frames or a few.

``Generator.fit`` with ``n_candidates > 1`` runs the generator once per
candidate noise, without gradients, to find the output nearest each target;
with ``search_frames`` it compares them on that many random latent frames.
For each setting this prints, on a trained model's IMLE generator (``--model``;
the shipped model's generator is a mosaic since issue 19, so train one with
``conchshell demo --train --preset conchshell --out out/imle``) and the
stand-in training clips' codec latents (the targets a warm start regresses):

- ``search_s``: seconds of one search (batch 8, 8 candidates), median;
- ``step_s``: the search plus the regression step (forward, backward, update);
- ``agree``: how often the search picks the candidate an exact search picks;
- ``excess``: the picked candidate's whole-output L1 above the exact pick's,
  relative to it (what a wrong pick costs).

Usage::

    python bench/imle_search.py --model out/imle/model     # needs `make data`
    python bench/imle_search.py --model out/imle/model --frames 4000 2000 500 --batches 24

The last line is ``imle_search=<json>``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/standin")
    parser.add_argument("--model", required=True, help="a model folder with an IMLE Generator")
    parser.add_argument("--frames", nargs="+", default=["all", "4000", "2000", "1000"])
    parser.add_argument("--batches", type=int, default=12, help="batches of 8 targets")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from conchshell.data.audio import fit_length
    from conchshell.datasets import load_bop
    from conchshell.demo import pretrained_model
    from conchshell.gan.generator import Generator

    model = pretrained_model(args.model)
    if type(model.generator_) is not Generator:
        parser.error(
            f"{args.model} has a {type(model.generator_).__name__}, not an IMLE Generator: "
            "train one with `conchshell demo --train --preset conchshell`"
        )
    train = load_bop(args.data, "train", random_state=0)
    n = 8 * args.batches
    items = np.random.RandomState(0).permutation(len(train))[:n]
    images = train.stack_images(items)
    cats = torch.as_tensor(np.asarray(train.category_ids)[items])
    with torch.no_grad():
        features = model._features(images)
        audio = fit_length(train.stack_audio(items), model._n_samples)
        latents = torch.cat([model.codec_.transform(a, level=model.level_) for a in audio.split(8)])
    gen = model.generator_
    gen.set_params(n_candidates=8)
    x, c = gen._check_inputs(features, cats)
    module = gen.module_.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.0)  # lr 0: timing, no drift
    rows = []
    for setting in args.frames:
        frames = None if setting == "all" else int(setting)
        gen.set_params(search_frames=frames)
        rng, exact_rng = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        searches, steps, agree, excess = [], [], 0, []
        for b in range(args.batches):
            sl = slice(8 * b, 8 * b + 8)
            xb, cb, yb = x[sl], c[sl], latents[sl]
            start = time.perf_counter()
            noise = gen._nearest_noise(xb, cb, yb, rng)
            searches.append(time.perf_counter() - start)
            loss = F.l1_loss(module(xb, cb, noise), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps.append(time.perf_counter() - start)
            # The same draws searched exactly, on the whole output.
            draws = torch.randn(8, 8, gen.noise_dim_, generator=exact_rng)
            if frames is not None and frames < gen.n_frames_:
                torch.randperm(gen.n_frames_, generator=exact_rng)
            with torch.no_grad():
                whole = torch.stack(
                    [(module(xb, cb, draws[:, j]) - yb).abs().mean((1, 2)) for j in range(8)], 1
                )
            pick = torch.stack([(draws[i] == noise[i]).all(1).nonzero()[0, 0] for i in range(8)])
            best = whole.min(1).values
            agree += int((pick == whole.argmin(1)).sum())
            excess.append(float(((whole[torch.arange(8), pick] - best) / best).mean()))
        row = {
            "search_frames": setting,
            "search_s": round(statistics.median(searches[1:]), 4),
            "step_s": round(statistics.median(steps[1:]), 4),
            "agree": round(agree / n, 3),
            "excess": float(f"{np.mean(excess):.2e}"),
        }
        rows.append(row)
        print(row, flush=True)
    print("imle_search=" + json.dumps(rows))


if __name__ == "__main__":
    main()
