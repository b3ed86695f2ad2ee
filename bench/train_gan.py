"""Benchmark: GAN training steps per second, per preset size, level and speed lever.

Each configuration builds the ConchShell preset untrained
(``presets.conchshell(size, level=...).initialize()``), freezes its codec,
and times :func:`conchshell.gan.training.gan_step` (the step ``fit`` runs) on
random features and audio at the preset's batch size: one warm-up step, then
the median of ``--reps`` steps. Beside steps per second it prints where a
step's time goes (medians, seconds):

- ``gen``: encoding the real clips and the generator's forward pass;
- ``D``: the discriminator's update (forward on real and fake, backward, step);
- ``G``: the discriminator's forward on the fake and real latents for the
  generator's adversarial and feature-matching terms;
- ``audio``: quantising and decoding the fake latents, and the loss terms;
- ``G_bwd``: the generator's backward (through D and the decoder) and update.

Levers (each takes several values; every combination is timed):

- ``--crop``: latent frames the discriminator and the losses see per step
  (``none``: the whole sequence, as the paper; ``default``: the preset's
  ``gan_crop``);
- ``--scales``: the discriminator's number of scales (``default``: the preset's);
- ``--precision``: the arithmetic of the discriminator's passes, ``float32``
  (what ``fit`` runs) or ``bfloat16`` (autocast; ``gan_step``'s ``precision``).

``--baseline`` adds, for every size and level, the recipe before the speed
levers (``gan_crop=None``: the whole sequence, as the paper) and times it
beside the other configurations, level by level, so the speed-up is read off
one run.

Usage::

    python bench/train_gan.py                     # small and tiny, every level, the presets
    python bench/train_gan.py --sizes small --baseline
    python bench/train_gan.py --sizes small --levels deep --crop none 250 1000 \\
        --precision float32 bfloat16
    python bench/train_gan.py --paper --levels high --reps 1   # paper size (slow)

The last line is ``train_gan=<json>``: one object per configuration.
"""

from __future__ import annotations

import os

# Idle OpenMP workers must sleep, not spin, when other jobs share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import time
import warnings
from typing import Any

LEVELS = ("deep", "low", "high")
PARTS = ("generate", "d_pass", "g_pass", "audio", "g_backward")
PART_LABELS = {"generate": "gen", "d_pass": "D", "g_pass": "G", "audio": "audio"}
PART_LABELS["g_backward"] = "G_bwd"
# The presets' settings before the speed levers of issue 19 (the "baseline" recipe).
BASELINE = {"gan_crop": None}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _value(text: str) -> Any:
    """``default`` -> the preset's value (no override), ``none`` -> None, digits -> int."""
    if text == "default":
        return "default"
    if text == "none":
        return None
    return int(text) if text.isdigit() else text


def _model(size: str, level: str, overrides: dict[str, Any]) -> Any:
    from conchshell import presets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained I3D: "no weights file"
        return presets.conchshell(
            size, level=level, random_state=0, verbose=0, device="cpu", **overrides
        ).initialize()


def time_steps(
    size: str, level: str, overrides: dict[str, Any], precision: str, reps: int
) -> dict[str, Any]:
    """Median seconds of one GAN step of a preset, and of each of its parts.

    Parameters
    ----------
    size : {"paper", "small", "tiny"}
    level : {"deep", "low", "high"}
    overrides : dict
        ``ImageToMusic.set_params`` keys (``gan_crop``, ``discriminator__num_scales``, ...).
    precision : {"float32", "bfloat16"}
        Arithmetic of the discriminator's passes.
    reps : int
        Timed steps after the warm-up step.

    Returns
    -------
    dict
        The configuration, ``step_s`` (median), ``steps_per_s`` and the median
        seconds of each part.
    """
    import torch

    from conchshell.gan.training import gan_step, make_optimizers

    model = _model(size, level, overrides)
    model.codec_.freeze()
    gen, disc = model.generator_.module_, model.discriminator_.module_
    gen.train()
    disc.train()
    opt_g, opt_d, _, _ = make_optimizers(
        gen,
        disc,
        lr_g=model.lr_g,
        lr_d=model.lr_d,
        betas=model.betas,
        weight_decay=model.weight_decay,
        lr_step=model.lr_step,
        lr_gamma_g=model.lr_gamma_g,
        lr_gamma_d=model.lr_gamma_d,
    )
    batch = model.batch_size
    rng = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, model.generator_.in_features_, generator=rng)
    cats = torch.randint(0, len(model.categories_), (batch,), generator=rng)
    audio = 0.1 * torch.randn(batch, model._n_samples, generator=rng)
    frames = model.codec_.latent_length(model._n_samples, model.level_)
    crop = model.gan_crop if model.gan_crop is not None and model.gan_crop < frames else None

    def step() -> dict[str, float]:
        parts: dict[str, float] = {}
        window: dict[str, Any] = {}
        if crop is not None:  # as GANTrainer draws them
            offsets = torch.randint(0, frames - crop + 1, (batch,), generator=rng)
            window = {"crop": crop, "offsets": offsets}
        start = time.perf_counter()
        gan_step(
            gen,
            disc,
            opt_g,
            opt_d,
            model.codec_,
            model.loss_,
            feats,
            cats,
            audio,
            model.level_,
            precision=precision,
            timings=parts,
            **window,
        )
        parts["step"] = time.perf_counter() - start
        return parts

    load = _load()
    step()  # warm-up: allocations, first-call dispatch
    runs = [step() for _ in range(reps)]
    median = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in ("step", *PARTS)}
    return {
        "size": size,
        "level": level,
        "crop": crop,
        "frames": frames,
        "scales": model.discriminator_.num_scales,
        "precision": precision,
        "batch": batch,
        "step_s": round(median["step"], 4),
        "steps_per_s": round(1.0 / median["step"], 3),
        **{f"{k}_s": round(median[k], 4) for k in PARTS},
        "load": load,
    }


def _configs(args: argparse.Namespace) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """(size, level, label, overrides, precision) of every configuration, level by level."""
    sizes = list(args.sizes) + (["paper"] if args.paper and "paper" not in args.sizes else [])
    from conchshell import presets

    configs = []
    for size in sizes:
        # A preset without a crop is the baseline already.
        cropped = presets.conchshell(size).gan_crop is not None
        for level in args.levels:
            if args.baseline and cropped:
                configs.append((size, level, "baseline", dict(BASELINE), "float32"))
            for crop in args.crop:
                for scales in args.scales:
                    for precision in args.precision:
                        over: dict[str, Any] = {}
                        if crop != "default":
                            over["gan_crop"] = crop
                        if scales != "default":
                            over["discriminator__num_scales"] = scales
                        label = "preset" if not over and precision == "float32" else "lever"
                        if label == "preset" and args.baseline and not cropped:
                            label = "baseline"
                        configs.append((size, level, label, over, precision))
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "tiny"])
    parser.add_argument("--paper", action="store_true", help="also the paper size (slow)")
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    parser.add_argument("--reps", type=int, default=3, help="timed steps after the warm-up")
    parser.add_argument("--crop", nargs="+", type=_value, default=["default"])
    parser.add_argument("--scales", nargs="+", type=_value, default=["default"])
    parser.add_argument(
        "--precision", nargs="+", default=["float32"], choices=("float32", "bfloat16")
    )
    parser.add_argument("--baseline", action="store_true", help="also the paper's recipe")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {_load()}")
    rows = []
    for size, level, label, over, precision in _configs(args):
        row = time_steps(size, level, over, precision, args.reps)
        row["config"] = label
        rows.append(row)
        split = " ".join(f"{PART_LABELS[k]} {row[f'{k}_s']:.3f}" for k in PARTS)
        print(
            f"{size:>5} {level:>4} {label:>8} crop={row['crop']!s:>5} "
            f"scales={row['scales']} {row['precision']:>8}: {row['steps_per_s']:7.3f} steps/s "
            f"({row['step_s']:.3f} s: {split}) load {row['load']}",
            flush=True,
        )
    for size, level in dict.fromkeys((r["size"], r["level"]) for r in rows):
        here = [r for r in rows if (r["size"], r["level"]) == (size, level)]
        base = next((r for r in here if r["config"] == "baseline"), None)
        if base is None:
            continue
        for row in here:
            if row is not base:
                row["speedup"] = round(row["steps_per_s"] / base["steps_per_s"], 2)
        said = [
            f"{r['config']} crop={r['crop']} scales={r['scales']} {r['precision']} "
            f"{r['speedup']:.1f}x"
            for r in here
            if r is not base
        ]
        print(f"{size} {level}: speed-up over the baseline: " + "; ".join(said))
    print("train_gan=" + json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
