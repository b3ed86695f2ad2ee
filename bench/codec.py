"""Benchmark: train the small codec for a fixed time and score its reconstructions.

Trains ``JukeboxCodec.sized("small")`` (all three levels) on the train split of a
BOP-layout dataset (the stand-in dataset by default) for ``--minutes`` of wall
time, then encodes, quantises and decodes every distinct piece of the val
split at each level and reports mel-L1, SI-SDR, wide-band PESQ, STOI and
codebook usage (perplexity and share of codes used). It prints a table and,
as its last line, one JSON object with every figure.

Targets for the Deep level (hop 8): PESQ >= 3.0 and STOI >= 0.80.

Usage::

    python bench/codec.py --minutes 15 --threads 2 --save runs/codec.safetensors

On a machine shared with other jobs, ``--threads 1`` is often faster than 2
(OpenMP threads wait on each other when cores are taken).
"""

from __future__ import annotations

import os

# Idle OpenMP workers must sleep, not spin, when other jobs share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from conchshell import metrics
from conchshell.codec.jukebox import JukeboxCodec
from conchshell.datasets import load_bop
from conchshell.levels import level_name

MAX_MINUTES = 15.0
TARGETS = {"pesq": 3.0, "stoi": 0.80}


def distinct_pieces(dataset) -> torch.Tensor:
    """The first 8 s of every distinct piece of a split (many images share one)."""
    first: dict[str, int] = {}
    for i, path in enumerate(dataset.audio_paths):
        first.setdefault(str(path), i)
    return dataset.stack_audio(sorted(first.values()))


def evaluate(codec: JukeboxCodec, audio: torch.Tensor, level: int) -> dict[str, float]:
    """Reconstruction and codebook figures of one level on ``audio`` (n, samples)."""
    recon, codes = [], []
    for chunk in audio.split(4):
        c = codec.encode(chunk, level)
        codes.append(c)
        with torch.no_grad():
            recon.append(codec.decode(c, level, length=chunk.shape[-1]).cpu())
    ref, est = audio.numpy(), torch.cat(recon).numpy()
    pesq_mean, pesq_nan = metrics.nanmean_count(metrics.pesq_wb(ref, est))
    usage = metrics.codebook_usage(torch.cat(codes), codec.l_bins)
    return {
        "mel_l1": metrics.mel_l1(ref, est),
        "si_sdr": float(np.nanmean(metrics.si_sdr(ref, est))),
        "pesq": pesq_mean,
        "pesq_nan": pesq_nan,
        "stoi": float(np.mean(metrics.stoi(ref, est))),
        "perplexity": usage["perplexity"],
        "used_fraction": usage["used_fraction"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/standin", help="BOP-layout dataset root")
    parser.add_argument("--minutes", type=float, default=MAX_MINUTES, help="training budget")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the trained codec (.safetensors)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='override a JukeboxCodec.sized("small") parameter (Python literal), e.g. lr=1e-3',
    )
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be in (0, {MAX_MINUTES:g}], got {args.minutes}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        import ast

        overrides[key] = ast.literal_eval(value)
    root = Path(args.data)
    if not (root / "Label").is_dir():
        parser.error(f"{root} is not a BOP-layout dataset; build one with `make data`")
    torch.set_num_threads(args.threads)

    train, val = load_bop(root, "train"), load_bop(root, "val")
    val_audio = distinct_pieces(val)
    params = {"max_steps": 10**9, "max_time": args.minutes * 60, "random_state": args.seed}
    params.update(overrides)
    codec = JukeboxCodec.sized("small", **params)
    print(f"training {codec!r} on {len(train)} train items for {args.minutes:g} min", flush=True)
    start = time.monotonic()
    codec.fit(train)
    train_s = time.monotonic() - start
    if args.save:
        codec.save(args.save)

    results: dict = {
        "preset": "small",
        "overrides": overrides,
        "threads": args.threads,
        "minutes": args.minutes,
        "train_seconds": round(train_s, 1),
        "steps": codec.n_steps_,
        "final_loss": float(np.mean([r["loss"] for r in codec.history_[-20:]])),
        "val_pieces": int(val_audio.shape[0]),
        "levels": {},
    }
    for level in range(codec.levels):
        results["levels"][level_name(level)] = evaluate(codec, val_audio, level)
    deep = results["levels"]["deep"]
    results["deep_targets_met"] = bool(
        deep["pesq"] >= TARGETS["pesq"] and deep["stoi"] >= TARGETS["stoi"]
    )

    print(
        f"\n{codec.n_steps_} steps in {train_s:.0f} s on {args.threads} thread(s); "
        f"val: {results['val_pieces']} distinct 8-s pieces"
    )
    header = f"{'level':<6} {'hop':>4} {'mel-L1':>7} {'SI-SDR':>7} {'PESQ':>6} {'STOI':>6}"
    print(header + f" {'perplexity':>10} {'codes used':>10}")
    for level in range(codec.levels):
        r = results["levels"][level_name(level)]
        nan = f" ({r['pesq_nan']} NaN)" if r["pesq_nan"] else ""
        print(
            f"{level_name(level):<6} {codec.hop_length(level):>4} {r['mel_l1']:>7.3f} "
            f"{r['si_sdr']:>7.2f} {r['pesq']:>6.3f} {r['stoi']:>6.3f} "
            f"{r['perplexity']:>10.1f} {r['used_fraction']:>10.1%}{nan}"
        )
    print(f"deep targets (PESQ >= 3.0, STOI >= 0.80) met: {results['deep_targets_met']}")
    print(json.dumps(results, sort_keys=True))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
