"""Train TCNNEncoder on a BOP-layout dataset's train split; report val-split accuracy.

Reproduces the figure quoted for issue 3 (TCNN-6 on the stand-in dataset):

    .venv/bin/python bench/train_tcnn.py --data data/standin

The early-stopping split inside ``fit`` is carved from the *train* split, with
augmented copies of one photo (and, when the dataset's manifest.json records
it, the tiles of one panorama) kept together; the reported accuracy is on the
separate ``val`` split, which ``fit`` never sees.

With 21 val photos one photo moves the figure by about 5 points, so ``--cv K``
also reports a grouped, stratified K-fold cross-validation over every photo of
both splits (scikit-learn's ``cross_validate``; the groups reach ``fit`` too):

    .venv/bin/python bench/train_tcnn.py --data data/standin --cv 5

``--colour-baseline`` also prints what colour statistics alone reach on the
same split (a joint HSV histogram and a 4x4 grid of mean colours, logistic
regression): the share of the figure a classifier gets without seeing shapes.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from conchshell.datasets import load_bop
from conchshell.image.tcnn import TCNNEncoder


def _load(root: Path, split: str) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    ds = load_bop(root, split)
    images = torch.stack([ds.get_image(i) for i in range(len(ds))])
    categories = np.array([ds.get_category(i) for i in range(len(ds))])
    return images, categories, [str(p) for p in ds.image_paths]


def _groups(root: Path, paths: list[str]) -> np.ndarray:
    """Original photo of each image (BOP's -1..-5 copies), or the manifest's group."""
    recorded = {}
    manifest = root / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text()).get("files", []):
            if entry.get("group"):
                recorded[entry["path"]] = entry["group"]
    groups = []
    for path in paths:
        rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
        groups.append(recorded.get(rel) or re.sub(r"-[1-5]$", "", Path(path).stem))
    return np.array(groups)


def _cross_validate(enc: TCNNEncoder, args: argparse.Namespace, train: tuple, val: tuple) -> None:
    """Grouped, stratified K-fold accuracy over the photos of both splits."""
    from sklearn.model_selection import StratifiedGroupKFold, cross_validate

    x = torch.cat([train[0], val[0]])
    y = np.concatenate([train[1], val[1]])
    groups = np.concatenate([train[2], val[2]])
    folds = StratifiedGroupKFold(args.cv, shuffle=True, random_state=args.seed)
    start = time.perf_counter()
    result = cross_validate(enc, x, y, groups=groups, cv=folds, params={"groups": groups})
    scores = result["test_score"]
    print(
        f"{args.cv}-fold cross-validation over {len(set(groups))} photos "
        f"({time.perf_counter() - start:.0f} s): " + " ".join(f"{a:.3f}" for a in scores)
    )
    print(f"cv_accuracy={scores.mean():.3f} +- {scores.std():.3f}")
    if args.colour_baseline:
        colour = cross_validate(_colour_model(), _colour_features(x), y, groups=groups, cv=folds)
        scores = colour["test_score"]
        print(f"colour_baseline_cv_accuracy={scores.mean():.3f} +- {scores.std():.3f}")


def _colour_features(images: torch.Tensor) -> np.ndarray:
    """Joint HSV histogram (8 x 3 x 3 bins) and 4x4 grid of mean RGB, per image."""
    from PIL import Image

    from conchshell.data.images import denormalize

    small = torch.nn.functional.interpolate(
        denormalize(images), size=64, antialias=True, mode="bilinear"
    )
    features = []
    for image in small.clamp(0, 1):
        rgb = image.permute(1, 2, 0).numpy()
        pixels = Image.fromarray((rgb * 255).round().astype(np.uint8))
        hsv = np.asarray(pixels.convert("HSV"), dtype=np.float64).reshape(-1, 3) / 255
        histogram = np.histogramdd(hsv, bins=(8, 3, 3), range=[(0, 1)] * 3)[0].ravel()
        grid = rgb.reshape(4, 16, 4, 16, 3).mean(axis=(1, 3)).ravel()
        features.append(np.concatenate([histogram / len(hsv), grid]))
    return np.stack(features)


def _colour_model() -> object:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/standin"))
    parser.add_argument("--n-blocks", type=int, default=6, choices=(6, 18))
    # Training options default to the estimator's own defaults.
    defaults = TCNNEncoder().get_params()
    for name, kind, note in (
        ("max_epochs", int, None),
        ("patience", int, None),
        ("lr", float, None),
        ("lr_schedule", str, None),
        ("label_smoothing", float, None),
        ("weight_decay", float, None),
        ("mixup", float, "Beta(alpha, alpha); 0 = off"),
        ("crop_area", float, "smallest crop area share"),
        ("validation_fraction", float, None),
        ("batch_size", int, None),
    ):
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=defaults[name],
            choices=("constant", "cosine") if name == "lr_schedule" else None,
            help=f"{note + '; ' if note else ''}default {defaults[name]}",
        )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp32", action="store_true", help="no bfloat16 autocast")
    parser.add_argument("--save", type=Path, help="write the weights (safetensors) here")
    parser.add_argument(
        "--colour-baseline", action="store_true", help="also score colour statistics alone"
    )
    parser.add_argument(
        "--cv", type=int, default=0, metavar="K", help="also cross-validate over both splits"
    )
    args = parser.parse_args()
    if args.cv == 1 or args.cv < 0:
        parser.error(f"--cv must be 0 (off) or at least 2, got {args.cv}")
    torch.set_num_threads(args.threads)

    x_train, y_train, paths = _load(args.data, "train")
    x_val, y_val, val_paths = _load(args.data, "val")
    groups = _groups(args.data, paths)
    print(
        f"train {len(x_train)} images ({len(set(groups))} groups), val {len(x_val)} images; "
        f"per-category train counts {np.bincount(y_train).tolist()}"
    )
    enc = TCNNEncoder(
        n_blocks=args.n_blocks,
        max_epochs=args.max_epochs,
        patience=args.patience,
        validation_fraction=args.validation_fraction,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        label_smoothing=args.label_smoothing,
        weight_decay=args.weight_decay,
        mixup=args.mixup,
        crop_area=args.crop_area,
        batch_size=args.batch_size,
        mixed_precision=not args.fp32,
        verbose=0 if args.cv else 1,
        random_state=args.seed,
    )
    if args.colour_baseline:
        model = _colour_model().fit(_colour_features(x_train), y_train)
        accuracy = model.score(_colour_features(x_val), y_val)
        print(f"colour_baseline_val_accuracy={accuracy:.3f}")
    if args.cv:
        _cross_validate(
            enc, args, (x_train, y_train, groups), (x_val, y_val, _groups(args.data, val_paths))
        )
    start = time.perf_counter()
    enc.fit(x_train, y_train, groups=groups)
    seconds = time.perf_counter() - start
    best = enc.history_[enc.best_epoch_ - 1]
    print(
        f"epochs run {len(enc.history_)}, best epoch {enc.best_epoch_} "
        f"(inner valid loss {best['valid_loss']:.3f}, accuracy {best['valid_accuracy']:.3f})"
    )
    print(f"train accuracy (no augmentation) {enc.score(x_train, y_train):.3f}")
    print(f"fit time {seconds:.1f} s on {enc.device_} ({args.threads} threads)")
    if args.save:
        enc.save_weights(args.save)
    print(f"val_accuracy={enc.score(x_val, y_val):.3f}")


if __name__ == "__main__":
    main()
