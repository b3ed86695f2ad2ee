"""Benchmark: the paper's Table 2 for the small ConchShell, Baseline-1 and Baseline-2.

Trains the small presets (``presets.get(name, "small")``, sized for two CPU cores) on the train
split of a BOP-layout dataset (the stand-in dataset by default), saves each
under ``OUT/<name>`` and runs :func:`conchshell.reports.table2` on them, which
writes ``OUT/report/table2.{md,csv,png}`` and prints the markdown.

The stages every preset shares are trained once, as in the paper (where the
TCNN is trained alone first and the Jukebox VQ-VAE is pretrained): the TCNN-6
scene classifier and the audio codec are fitted here, saved under
``OUT/shared/`` and handed to every preset as ``encoder__weights`` and
``codec__weights``. Only the GAN differs between the presets: its level
(Deep, High, Low) and hence its generator and discriminator.

Budgets (the codec dominates on two CPU cores; see ``bench/codec.py``)::

    python bench/table2.py --codec-max-time 900 --gan-max-time 600   # about 50 min
    python bench/table2.py --codec-max-time 120 --gan-max-time 120 \\
        --encoder-max-epochs 8 --max-items 24                         # about 15 min

``--set KEY=VALUE`` (repeatable) passes any further ``set_params`` key to every
preset, e.g. ``--set max_steps=300 --set batch_size=2``.
"""

from __future__ import annotations

import os

# Idle OpenMP workers must sleep, not spin, when other jobs share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from sklearn.base import clone

from conchshell import presets
from conchshell.cli import _parse_sets
from conchshell.datasets import load_bop
from conchshell.reports import table2

PRESETS = ("conchshell", "baseline_1", "baseline_2")


def _log(message: str) -> None:
    print(f"[table2 {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def shared_stages(train, out: Path, args: argparse.Namespace) -> dict[str, str]:
    """Fit the TCNN-6 and the codec of the small preset once; return their weight files."""
    base = presets.conchshell("small", random_state=args.seed, verbose=1)
    params = base.get_params(deep=False)
    out.mkdir(parents=True, exist_ok=True)
    weights: dict[str, str] = {}

    encoder_file = out / "tcnn6.safetensors"
    if args.encoder_weights is not None:
        weights["encoder__weights"] = str(args.encoder_weights)
    elif encoder_file.is_file() and not args.retrain:
        weights["encoder__weights"] = str(encoder_file)
    else:
        encoder = clone(params["encoder"]).set_params(
            n_categories=train.n_categories, random_state=args.seed, verbose=1
        )
        if args.encoder_max_epochs is not None:
            encoder.set_params(max_epochs=args.encoder_max_epochs)
        t0 = time.perf_counter()
        encoder.fit(train.stack_images(), torch.as_tensor(train.category_ids))
        encoder.save_weights(encoder_file)
        _log(f"TCNN-6 fitted in {time.perf_counter() - t0:.0f} s -> {encoder_file}")
        weights["encoder__weights"] = str(encoder_file)

    codec_file = out / "codec.safetensors"
    if args.codec_weights is not None:
        weights["codec__weights"] = str(args.codec_weights)
    elif codec_file.is_file() and not args.retrain:
        weights["codec__weights"] = str(codec_file)
    else:
        codec = clone(params["codec"]).set_params(
            max_time=args.codec_max_time, random_state=args.seed, verbose=1
        )
        t0 = time.perf_counter()
        codec.fit(train)
        codec.save(codec_file)
        steps = len(getattr(codec, "history_", []))
        _log(f"codec fitted in {time.perf_counter() - t0:.0f} s ({steps} steps) -> {codec_file}")
        weights["codec__weights"] = str(codec_file)
    return weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/standin"), help="BOP-layout root")
    parser.add_argument("--out", type=Path, default=Path("out/table2"), help="output folder")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--codec-max-time", type=float, default=900.0, help="codec seconds")
    parser.add_argument("--gan-max-time", type=float, default=600.0, help="GAN seconds per preset")
    parser.add_argument("--encoder-max-epochs", type=int, default=None, help="TCNN-6 epochs")
    parser.add_argument("--encoder-weights", type=Path, default=None, help="a fitted TCNN-6")
    parser.add_argument("--codec-weights", type=Path, default=None, help="a fitted small codec")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--max-items", type=int, default=None, help="images per split")
    parser.add_argument("--retrain", action="store_true", help="refit what OUT already holds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="I3DExtractor has no weights")
    started = time.perf_counter()

    train = load_bop(args.data, "train", random_state=args.seed)
    _log(f"train: {train.describe()}")
    shared = shared_stages(train, args.out / "shared", args)
    extra = _parse_sets(args.set)
    folders, timings, steps = [], {}, {}
    for name in args.presets:
        folder = args.out / name
        if (folder / "params.json").is_file() and not args.retrain:
            _log(f"{name}: reusing {folder}")
            folders.append(folder)
            continue
        model = presets.get(
            name, "small", random_state=args.seed, verbose=1, max_time=args.gan_max_time
        )
        model.set_params(**shared, **extra)
        t0 = time.perf_counter()
        model.fit(train)
        timings[name] = time.perf_counter() - t0
        steps[name] = len(model.history_)
        model.save(folder)
        _log(f"{name}: {len(model.history_)} GAN steps in {timings[name]:.0f} s -> {folder}")
        folders.append(folder)

    report = table2(folders, args.data, args.splits, max_items=args.max_items, verbose=1)
    report.meta["train_seconds"] = timings
    report.meta["command"] = " ".join(["python", "bench/table2.py", *(argv or sys.argv[1:])])
    if timings:
        report.notes.append(
            f"Trained by `{report.meta['command']}`: shared TCNN-6 and codec, then the GAN of each "
            "preset ("
            + ", ".join(f"{k}: {steps[k]} GAN steps in {v:.0f} s" for k, v in timings.items())
            + ")."
        )
    written = report.save(args.out / "report")
    print(report.to_markdown())
    for path in written:
        _log(f"wrote {path}")
    total = time.perf_counter() - started
    _log(f"done in {total / 60:.1f} min")
    print(json.dumps({"rows": report.rows, "seconds": total}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
