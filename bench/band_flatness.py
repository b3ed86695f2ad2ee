"""Benchmark: band flatness (1-4 kHz) of real, codec-reconstructed and generated clips.

The figures behind ``MAX_BAND_FLATNESS`` (docs/evaluation.md): the band
flatness of each of the stand-in train split's real clips, of their
reconstructions by a model's codec at its level, of the model's clips for
the distinct val photos (true categories), and of white noise. Prints one
line per group (count, min, median, max) and, last,
``band_flatness=<json>``.

Usage::

    python bench/band_flatness.py                       # the shipped model
    python bench/band_flatness.py --model out/demo/model

About 2 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/standin")
    parser.add_argument("--model", default=None, help="a model folder (default: the shipped one)")
    args = parser.parse_args()

    from conchshell.datasets import load_bop
    from conchshell.demo import PRETRAINED, _originals, pretrained_model
    from conchshell.evaluation import band_flatness, real_clips
    from conchshell.evaluation.report import codec_reconstructions
    from conchshell.evaluation.transcription import MAX_BAND_FLATNESS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = pretrained_model(args.model or PRETRAINED)
    n = model._n_samples
    train, val = load_bop(args.data, "train"), load_bop(args.data, "val")
    waves = real_clips(train)[0][:, :n]
    keep = _originals(val.image_paths)
    truth = np.asarray(val.category_ids)[keep]
    generated = model.predict([str(val.image_paths[i]) for i in keep], categories=truth)
    groups = {
        "real": waves,
        "codec": codec_reconstructions(model, waves),
        "generated": generated,
        "noise": np.random.default_rng(0).normal(scale=0.1, size=(4, n)),
    }
    row = {"threshold": MAX_BAND_FLATNESS}
    for name, clips in groups.items():
        values = np.array([band_flatness(clip) for clip in clips])
        row[name] = {
            "n": len(values),
            "min": round(float(values.min()), 4),
            "median": round(float(np.median(values)), 4),
            "max": round(float(values.max()), 4),
            "at_most_threshold": round(float(np.mean(values <= MAX_BAND_FLATNESS)), 3),
        }
        print(name, row[name])
    print("band_flatness=" + json.dumps(row))


if __name__ == "__main__":
    main()
