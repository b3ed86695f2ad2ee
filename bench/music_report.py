"""Issue 19's figures for a model: piano notes, fit to the picture, variety; and a spectrogram grid.

Runs :func:`conchshell.evaluation.report.music_report` on the stand-in val
split for a model folder (default: the shipped model), prints each figure
beside its target, and with ``--grid`` draws, per category, the spectrograms
of clips generated for distinct val photos above those of the real clips
paired with the same photos (the README's picture).

Usage::

    python bench/music_report.py                                  # the shipped model
    python bench/music_report.py --model out/demo/model --json figures.json
    python bench/music_report.py --grid docs/images/music-grid.png

Needs the stand-in data (``make data``) and the transcriber (``make setup``
installs it). About 4 minutes on two cores, most of it transcription.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# (figure, target, direction): the targets, printed beside the measured figures.
TARGETS = (
    ("music_fraction", 0.9, ">="),
    # The stricter reading: also no hiss floor between 1 and 4 kHz (band flatness <= 0.05).
    ("clean_music_fraction", 0.9, ">="),
    ("relevance_accuracy", 0.8, ">="),
    ("descriptor_agreement", 0.6, ">="),
    ("variety_ratio", 0.5, ">="),
    ("near_copy_fraction", 0.1, "<"),
)


def grid(model, val, path: Path, per_category: int = 3) -> None:
    """Spectrograms by category: generated (true category) above real, for distinct photos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from conchshell.evaluation.report import _log_mel

    truth = np.asarray(val.category_ids)
    from conchshell.demo import _originals

    originals = _originals(val.image_paths)
    rows = []
    for c in range(len(val.categories)):
        rows.append([i for i in originals if truth[i] == c][:per_category])
    chosen = [i for row in rows for i in row]
    paths = [str(val.image_paths[i]) for i in chosen]
    generated = dict(zip(chosen, model.predict(paths, categories=truth[chosen]), strict=True))
    real = val.stack_audio().numpy()[:, : model._n_samples]
    fig, axes = plt.subplots(
        len(rows), 2 * per_category, figsize=(2.2 * 2 * per_category, 1.5 * len(rows))
    )
    for r, row in enumerate(rows):
        for j in range(per_category):
            for k, (kind, clips) in enumerate((("generated", generated), ("real", real))):
                ax = axes[r, 2 * j + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if j >= len(row):
                    ax.axis("off")
                    continue
                mel = _log_mel(torch.as_tensor(clips[row[j]])).numpy()
                ax.imshow(mel, origin="lower", aspect="auto", vmin=-9, vmax=5, cmap="magma")
                if r == 0:
                    ax.set_title(kind, fontsize=8)
            axes[r, 0].set_ylabel(val.categories[r], fontsize=8)
    fig.suptitle("log-mel spectrograms (8 s, 0-8 kHz): generated for a photo | its real clip")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default shipped)")
    parser.add_argument("--data", type=Path, default=Path("data/standin"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--grid", type=Path, default=None, help="write the spectrogram grid")
    args = parser.parse_args(argv)

    from conchshell.datasets import load_bop
    from conchshell.demo import PRETRAINED, pretrained_model
    from conchshell.evaluation.report import music_report

    started = time.perf_counter()
    model = pretrained_model(args.model or PRETRAINED)
    train = load_bop(args.data, "train", random_state=0)
    val = load_bop(args.data, "val")
    figures = music_report(model, train, val)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    targets = {name: (value, op) for name, value, op in TARGETS}
    for key, value in figures.items():
        target = targets.get(key)
        note = f"   (target {target[1]} {target[0]:g})" if target else ""
        print(f"{key:<34}{value:>10.4g}{note}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.grid is not None:
        grid(model, val, args.grid)
        print(f"grid written to {args.grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
