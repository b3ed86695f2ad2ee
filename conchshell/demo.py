"""The main job (``make demo``): train the small ConchShell, write a gallery.

It builds the stand-in dataset when it is missing, trains the small preset of
ConchShell (two CPU cores, minutes) on its train split within a time budget,
generates music for every validation image, and writes the WAVs, a
spectrogram per clip and an ``index.html`` that shows each image beside its
spectrogram and a player.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from conchshell.io import atomic_write

__all__ = ["run_demo"]


def _log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _measures(model: Any, train: Any, val: Any, clips: np.ndarray) -> dict[str, float]:
    """Music-aware measures of the generated clips (and the speech measures beside them)."""
    from conchshell.evaluation import DescriptorProfile, RelevanceClassifier, real_clips
    from conchshell.metrics import nanmean_count, pesq_wb, stoi

    waves, cats, _ = real_clips(train)
    relevance = RelevanceClassifier().fit(waves, cats)
    profile = DescriptorProfile().fit(waves, cats)
    truth = np.asarray(val.category_ids)
    reference = val.stack_audio().numpy()[:, : clips.shape[1]]  # the tiny size makes 1-s clips
    pesq, n_no_utterance = nanmean_count(pesq_wb(reference, clips))
    return {
        "relevance_accuracy": float(relevance.score(clips, truth)),
        "relevance_chance": 1.0 / len(train.categories),
        "descriptor_agreement": float(profile.score(clips, truth)),
        "pesq_wb": pesq,
        "pesq_no_utterance": n_no_utterance,
        "stoi": float(np.mean(stoi(reference, clips))),
        "real_val_relevance_accuracy": float(relevance.score(reference, truth)),
    }


def run_demo(
    data: str | Path = "data/standin",
    out: str | Path = "out/demo",
    minutes: float = 12.0,
    seed: int = 0,
    size: str = "small",
    *,
    scale: str | None = None,
) -> Path:
    """Train the small ConchShell preset and write a listening gallery.

    Parameters
    ----------
    data : path-like, default="data/standin"
        A BOP-layout dataset; the stand-in dataset is built here if missing.
    out : path-like, default="out/demo"
        Output folder: ``model/``, ``checkpoints/``, ``gallery/index.html``
        and ``summary.json``.
    minutes : float, default=12.0
        Training budget: 30 % goes to the codec and 25 % to the GAN; the image
        classifier and the generator's warm start are bounded by their epochs
        and steps.
    seed : int, default=0
        Seeds the dataset build and the training.
    size : {"small", "tiny"}, default="small"
        Preset size (:mod:`conchshell.presets`); ``"tiny"`` (1-s clips,
        seconds of training) is for tests.
    scale : str, optional
        Deprecated: the earlier name of ``size`` (its ``"cpu"`` is ``"small"``).

    Returns
    -------
    Path
        The gallery's ``index.html``.
    """
    from conchshell import presets
    from conchshell.data.build import build_standin
    from conchshell.datasets import load_bop
    from conchshell.gallery import write_gallery

    if scale is not None:
        warnings.warn(
            "run_demo(scale=...) is deprecated; use size=... (its 'cpu' is 'small')",
            FutureWarning,
            stacklevel=2,
        )
    size = presets._resolve_size(size, scale)
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes!r}")
    started = time.perf_counter()
    data, out = Path(data), Path(out)
    if not (data / "Label" / "Label.xlsx").is_file():
        _log(f"building the stand-in dataset in {data}")
        build_standin(data, seed=seed)
    train = load_bop(data, "train", random_state=seed)
    val = load_bop(data, "val")
    _log(f"train: {train.describe()}")
    _log(f"val: {val.describe()}")

    budget = 60.0 * minutes
    # Each demo is a fresh run: the last demo's checkpoints in OUT are its own to replace.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    model = presets.conchshell(
        size,
        random_state=seed,
        verbose=1,
        checkpoint_dir=str(out / "checkpoints"),
        max_time=0.25 * budget,
        codec__max_time=0.3 * budget,
    )
    _log(f"training the {size} ConchShell preset for about {minutes:g} minutes")
    model.fit(train)
    trained = time.perf_counter() - started
    model.save(out / "model")
    _log(f"trained in {trained / 60:.1f} min; model saved to {out / 'model'}")

    gallery = out / "gallery"
    pairs = zip(val.image_paths, val.category_ids, strict=True)
    names = [f"{val.categories[c]}-{p.stem}" for p, c in pairs]
    model.generate_files([str(p) for p in val.image_paths], gallery, names=names, overwrite=True)
    import soundfile as sf

    clips = np.stack([sf.read(gallery / f"{n}.wav", dtype="float32")[0] for n in names])
    predicted = model.predict_categories([str(p) for p in val.image_paths])
    captions = [
        f"{val.categories[c]} (generated as {model.categories_[p]})"
        for c, p in zip(val.category_ids, predicted, strict=True)
    ]
    index = write_gallery(gallery, names, captions, title="conchshell demo: stand-in val split")
    measures = _measures(model, train, val, clips)
    measures.update(
        train_minutes=round(trained / 60, 2),
        total_minutes=round((time.perf_counter() - started) / 60, 2),
        gan_steps=len(model.history_),
        image_accuracy=float(np.mean(np.asarray(predicted) == np.asarray(val.category_ids))),
    )
    with atomic_write(out / "summary.json", "w") as handle:
        json.dump(measures, handle, indent=2)
    for key, value in measures.items():
        _log(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    return index
