"""Benchmark: a generator recipe fitted for a fixed time, judged on held-out training clips.

Settings of the generator's IMLE stage are chosen on the training split, not
on val (issue 19). This holds out 4 clips per category of the stand-in train
split, with every photo paired with them; fits a generator from scratch (by
default the small ``conchshell`` preset's IMLE generator, plus ``--set``
overrides) on the rest, on the shipped model's features and codec latents,
for ``--minutes``;
then, for the held-out photos with their true categories, prints:

- ``steps`` and the last epoch's ``loss`` (L1 of the regressed candidate);
- ``relevance``: a codec-matched :class:`~conchshell.evaluation.RelevanceClassifier`
  (fitted on the codec's reconstructions of the kept clips) on the generated
  clips, and ``ceiling``, the same judge on the held-out clips' reconstructions;
  ``relevance_real_judge``, a judge fitted on the kept real clips themselves (stricter
  for clips that carry the codec's sound);
- ``descriptor``: :class:`~conchshell.evaluation.DescriptorProfile` agreement;
- ``variety``: within-category log-mel distance of the generated clips over
  that of the real clips they are paired with;
- ``near``: fraction within 10 dB SI-SDR of a kept training clip;
- ``music``: the fraction heard as piano music, ``clean`` as clean piano
  music (no hiss floor between 1 and 4 kHz), and their mean ``band_flatness``
  (:func:`~conchshell.evaluation.transcription.music_measure`);
- ``rms_ratio``: the generated clips' RMS over the paired real clips'.

``--save FILE.npz`` writes the generated clips, their categories and the
paired real clips. ``--generator flow`` fits the ``flow`` preset's
:class:`~conchshell.gan.flow.FlowGenerator` instead (``--set`` then sets its
parameters), ``--generator model`` a clone of the shipped model's generator, and
``--generator mosaic``
fits the ``mosaic`` preset's :class:`~conchshell.gan.mosaic.MosaicGenerator`
(on the latents snapped to the codebook, as the estimator fits it; it trains
no steps, so ``--minutes`` does not apply).

Usage::

    python bench/generator_heldout.py --minutes 20                       # the preset recipe
    python bench/generator_heldout.py --minutes 20 --set search_frames=null
    python bench/generator_heldout.py --minutes 20 --set lr=0.001 --threads 1
    python bench/generator_heldout.py --minutes 40 --generator flow
    python bench/generator_heldout.py --minutes 20 --threads 1 --guidance 1 2 2.5 3
    python bench/generator_heldout.py --generator mosaic --set photo_temperature=0.3

``--guidance`` judges the one fit at each value (the generator's own by
default; the flow generator's guidance is its classifier-free weight).

Each ``--set`` value is JSON (``null``, numbers, strings in quotes where
ambiguous). Fits are time-bounded: compare recipes run side by side on the
same machine, or one after the other on a quiet one. Each result is a line
``generator_heldout=<json>``, one per guidance value.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/standin")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--per-category", type=int, default=4, help="held-out clips")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--generator",
        choices=("imle", "flow", "mosaic", "model"),
        default="imle",
        help="what to fit (model: a clone of the shipped model's generator)",
    )
    parser.add_argument(
        "--save", default=None, metavar="FILE.npz", help="write the generated clips there"
    )
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        default=None,
        help="judge the one fit at each of these guidance values (default: the generator's own)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key] = _value(value)

    from _heldout import decode, held_out
    from sklearn.base import clone

    from conchshell import presets
    from conchshell.demo import pretrained_model
    from conchshell.evaluation import DescriptorProfile, RelevanceClassifier
    from conchshell.evaluation.report import near_copies, within_category_distance
    from conchshell.evaluation.transcription import music_measure

    model = pretrained_model()
    n = model._n_samples
    split = held_out(model, args.data, args.per_category, np.random.RandomState(0))
    cats, clip_of, clip_cat = split.cats, split.clip_of, split.clip_cat
    audio, latents, held, kept = split.audio, split.latents, split.held, split.kept
    with torch.no_grad():
        features = model._features(split.train.stack_images())
    out = np.isin(clip_of, held)

    base = {
        "model": lambda: model.generator_,
        "imle": lambda: presets.conchshell("small").generator,
        "flow": lambda: presets.flow("small").generator,
        "mosaic": lambda: presets.mosaic("small").generator,
    }[args.generator]()
    gen = clone(base)
    budget = {
        "warm_start": False,
        "max_time": 60.0 * args.minutes,
        "max_steps": None,
        "max_epochs": 10**6,
    }
    settings = {k: v for k, v in budget.items() if k in gen.get_params()}
    gen.set_params(level=model.level_, verbose=0, random_state=0, **settings, **overrides)
    pieces = latents
    if getattr(gen, "snapped_targets", False):
        # As ImageToMusic fits it: on the latents snapped to the codebook (each distinct
        # piece once, a few at a time: the search over all at once takes tens of GB).
        with torch.no_grad():
            pieces = torch.cat(
                [model.codec_.snap(chunk, level=model.level_).cpu() for chunk in latents.split(8)]
            )
    targets = pieces[clip_of[~out]]
    start = time.perf_counter()
    gen.fit(features[~out], targets, cats[~out])
    fit_s = time.perf_counter() - start

    waves = audio.numpy()
    truth = np.asarray(cats[out])
    real = waves[clip_of[out]]
    judge = RelevanceClassifier().fit(decode(model, latents[kept], n), clip_cat[kept])
    real_judge = RelevanceClassifier().fit(audio.numpy()[kept], clip_cat[kept])
    profile = DescriptorProfile().fit(waves[kept], clip_cat[kept])
    ceiling = judge.score(decode(model, latents[held], n), clip_cat[held])
    values = [getattr(gen, "guidance", None)] if args.guidance is None else args.guidance
    for guidance in values:
        if guidance is not None:
            gen.set_params(guidance=guidance)
        with torch.no_grad():
            generated = decode(model, gen.transform(features[out], cats[out]), n)
        heard = music_measure(generated)
        row = {
            "generator": args.generator,
            "set": overrides,
            "guidance": guidance,
            "minutes": args.minutes,
            "steps": gen.history_[-1].get("step", 0),
            "loss": round(gen.history_[-1].get("loss", float("nan")), 3),
            "fit_s": round(fit_s, 1),
            "n_heldout_photos": int(out.sum()),
            "relevance": round(float(judge.score(generated, truth)), 3),
            "ceiling": round(float(ceiling), 3),
            "relevance_real_judge": round(float(real_judge.score(generated, truth)), 3),
            "descriptor": round(float(profile.score(generated, truth)), 3),
            "variety": round(
                within_category_distance(generated, truth) / within_category_distance(real, truth),
                3,
            ),
            "near": round(near_copies(generated, waves[kept]), 3),
            "music": round(float(np.mean([m["is_music"] for m in heard])), 3),
            "clean": round(float(np.mean([m["is_clean_music"] for m in heard])), 3),
            "band_flatness": round(float(np.mean([m["band_flatness"] for m in heard])), 3),
            "rms_ratio": round(float(np.sqrt((generated**2).mean() / (real**2).mean())), 3),
        }
        if args.save:
            # For listening and spectrograms: the clips, their categories and the paired real
            # ones (the last guidance value's, with several).
            np.savez_compressed(args.save, generated=generated, categories=truth, real=real)
        print("generator_heldout=" + json.dumps(row))


if __name__ == "__main__":
    main()
