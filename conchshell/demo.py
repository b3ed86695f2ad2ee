"""The main job (``make demo``): a gallery of piano pieces for the stand-in val photos.

By default it loads the model that ships with the package
(:data:`PRETRAINED`, trained by ``conchshell demo --train`` with the command,
seed, data hash and history recorded beside it) and writes, for each distinct
val photo, the WAV, a spectrogram with its piano roll and a player, beside the
real clip paired with that photo; ``summary.json`` holds the figures of
:func:`conchshell.evaluation.report.music_report` over every val image. With
``train=True`` (``conchshell demo --train``) it trains the small preset from
scratch within a time budget first.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from conchshell.io import atomic_write

__all__ = ["PRETRAINED", "pretrained_model", "run_demo"]

#: The shipped small Deep model (a model folder of :meth:`ImageToMusic.save`).
PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "small-deep"


def _log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def pretrained_model(path: str | Path = PRETRAINED) -> Any:
    """Load the shipped model (or another model folder).

    Parameters
    ----------
    path : path-like, default=PRETRAINED

    Returns
    -------
    ImageToMusic
        Fitted, on the CPU.

    Raises
    ------
    FileNotFoundError
        When the folder holds no model; the message says how to train one.
    """
    from conchshell.estimator import ImageToMusic

    path = Path(path)
    if not (path / "params.json").is_file():
        raise FileNotFoundError(
            f"no model in {path}: train one with `conchshell demo --train` "
            "(or pass another model folder)"
        )
    return ImageToMusic.load(path, device="cpu")


def _train(
    data: Path,
    out: Path,
    size: str,
    seed: int,
    minutes: float,
    preset: str = "mosaic",
    reuse: Path | None = None,
) -> Any:
    from sklearn.frozen import FrozenEstimator

    from conchshell import presets
    from conchshell.datasets import load_bop

    budget = 60.0 * minutes
    # Each demo is a fresh run: the last demo's checkpoints in OUT are its own to replace.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    model = presets.get(
        preset,
        size,
        random_state=seed,
        verbose=1,
        checkpoint_dir=str(out / "checkpoints"),
        max_time=0.05 * budget,
    )
    generator = model.get_params()["generator"]
    if getattr(generator, "needs_steps", True):
        model.set_params(codec__max_time=0.3 * budget, generator__max_time=0.6 * budget)
    else:  # a generator fitted in one pass (the mosaic): the codec gets its share too
        model.set_params(codec__max_time=0.9 * budget)
    if reuse is not None:
        source = pretrained_model(reuse)
        # Frozen: fit uses them as they are (no image-classifier or codec stage).
        model.set_params(**{name: FrozenEstimator(getattr(source, f"{name}_")) for name in _REUSED})
        _log(f"reusing the {', '.join(_REUSED)} of {reuse}")
    _log(f"training the {size} {preset} preset for about {minutes:g} minutes")
    model.fit(load_bop(data, "train", random_state=seed))
    model.save(out / "model")
    return model


# What --reuse takes from another model: everything the generator is fitted on.
_REUSED = ("encoder", "forger", "extractor", "codec")


def _notes_by_category(
    notes: dict[str, list], seconds: float, truth: np.ndarray, categories: list[str]
) -> dict[str, Any]:
    """Notes per second and pitch range per category, generated beside real (issue 21)."""
    from conchshell.evaluation.transcription import note_summary

    names = [categories[c] for c in truth]
    return {
        "notes_by_category": {
            key: note_summary(notes[key], names, seconds) for key in ("generated", "real")
        }
    }


def _originals(paths: list[Path]) -> list[int]:
    """Indices of the photos that are not augmented copies (``name-1.jpg``, ``name-2.jpg``)."""
    return [i for i, p in enumerate(paths) if not re.search(r"-\d+$", p.stem)]


def run_demo(
    data: str | Path = "data/standin",
    out: str | Path = "out/demo",
    minutes: float = 12.0,
    seed: int = 0,
    size: str = "small",
    *,
    train: bool | None = None,
    model: str | Path | None = None,
    scale: str | None = None,
    settings: dict[str, Any] | None = None,
    preset: str = "mosaic",
    reuse: str | Path | None = None,
) -> Path:
    """Write a listening gallery and ``summary.json`` for the stand-in val split.

    Parameters
    ----------
    data : path-like, default="data/standin"
        A BOP-layout dataset; the stand-in dataset is built here if missing.
    out : path-like, default="out/demo"
        Output folder: ``gallery/index.html``, ``summary.json`` and, when
        training, ``model/`` and ``checkpoints/``.
    minutes : float, default=12.0
        Training budget when training. With a generator that trains in steps,
        30 % goes to the codec, 60 % to the generator's regression and 5 % to
        adversarial steps (none at the small size); with the mosaic
        generator, which is fitted in one pass, 90 % goes to the codec. The
        image classifier is bounded by its epochs.
    seed : int, default=0
        Seeds the dataset build and the training.
    size : {"small", "tiny"}, default="small"
        Preset size (:mod:`conchshell.presets`); ``"tiny"`` (1-s clips,
        seconds of training) is for tests.
    train : bool or None, default=None
        Train from scratch. ``None``: use the shipped model when ``size`` has
        one (``"small"``), train otherwise.
    model : path-like, optional
        A model folder to use instead of the shipped one.
    scale : str, optional
        Deprecated: the earlier name of ``size`` (its ``"cpu"`` is ``"small"``).
    settings : dict, optional
        :meth:`~conchshell.estimator.ImageToMusic.set_fitted_params` keys
        applied to the model before generating (for example
        ``{"generator__guidance": 2.5}``); checked before any training,
        recorded in ``summary.json``, not saved with a trained model.
    preset : str, default="mosaic"
        The preset to train (:data:`conchshell.presets.PRESETS`); the shipped
        model is the ``mosaic`` preset's.
    reuse : path-like, optional
        When training: a model folder whose fitted encoder, forger, extractor
        and codec are used as they are (frozen), so only the generator is
        fitted (how the shipped mosaic model was made from the earlier
        shipped model's codec).

    Returns
    -------
    Path
        The gallery's ``index.html``.
    """
    from conchshell import presets
    from conchshell.data.audio import read_audio
    from conchshell.data.build import build_standin
    from conchshell.datasets import load_bop
    from conchshell.estimator import check_fitted_params
    from conchshell.evaluation import band_flatness
    from conchshell.evaluation.report import music_report
    from conchshell.evaluation.transcription import transcribe
    from conchshell.gallery import write_gallery
    from conchshell.persistence import COMPONENTS

    if scale is not None:
        warnings.warn(
            "run_demo(scale=...) is deprecated; use size=... (its 'cpu' is 'small')",
            FutureWarning,
            stacklevel=2,
        )
    size = presets._resolve_size(size, scale)
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes!r}")
    if train and model is not None:
        raise ValueError("give train=True or a model folder, not both")
    if preset not in presets.PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets.PRESETS)}")
    if train is None:
        train = model is None and size != "small"
    if reuse is not None:
        if not train:
            raise ValueError("reuse= takes components for training: pass train=True too")
        if not (Path(reuse) / "params.json").is_file():
            raise FileNotFoundError(f"reuse={str(reuse)!r} holds no model (no params.json)")
    settings = dict(settings or {})
    if settings and train:
        # A typo should fail now, not after an hour of training: the preset's components
        # are of the classes the fitted model will have. A loaded model checks them itself.
        chosen = presets.get(preset, size).get_params(deep=False)
        check_fitted_params(
            {c: chosen[c] for c in COMPONENTS if chosen.get(c) is not None}, settings
        )
    started = time.perf_counter()
    data, out = Path(data), Path(out)
    if not (data / "Label" / "Label.xlsx").is_file():
        _log(f"building the stand-in dataset in {data}")
        build_standin(data, seed=seed)
    train_set = load_bop(data, "train", random_state=seed)
    val = load_bop(data, "val")
    _log(f"train: {train_set.describe()}")
    _log(f"val: {val.describe()}")

    if train:
        fitted = _train(
            data, out, size, seed, minutes, preset, None if reuse is None else Path(reuse)
        )
        _log(f"trained in {(time.perf_counter() - started) / 60:.1f} min; saved to {out / 'model'}")
    else:
        source = Path(model) if model is not None else PRETRAINED
        fitted = pretrained_model(source)
        _log(f"using the model in {source} (train one with `conchshell demo --train`)")
    trained = time.perf_counter() - started
    if settings:
        fitted.set_fitted_params(**settings)
        _log(f"generating with {settings}")

    paths = [str(p) for p in val.image_paths]
    truth = np.asarray(val.category_ids)
    n = fitted._n_samples
    generated = fitted.predict(paths)
    generated_true = fitted.predict(paths, categories=truth)
    reference = val.stack_audio().numpy()[:, :n]
    # Transcribed once (about 1 s a clip): for the music figures and the notes by category.
    notes = {"generated": transcribe(generated_true), "real": transcribe(reference)}
    measures = music_report(fitted, train_set, val, generated, generated_true, notes=notes)

    # The gallery shows each distinct photo once (the val split also holds two augmented
    # copies of each; the figures above count all of them).
    keep = _originals(val.image_paths)
    names = [f"{val.categories[truth[i]]}-{val.image_paths[i].stem}" for i in keep]
    gallery = out / "gallery"
    wavs = fitted.generate_files([paths[i] for i in keep], gallery, names=names, overwrite=True)
    predicted = np.asarray(fitted.predict_categories(paths))
    # The band flatness of the clip on the page (its mono WAV) and of its real one: a hiss
    # floor shows there before anyone listens.
    captions = [
        f"{val.categories[truth[i]]} (generated as {fitted.categories_[predicted[i]]}); "
        f"band flatness {band_flatness(read_audio(wav)[0][0]):.3f}, "
        f"real {band_flatness(reference[i]):.3f}"
        for i, wav in zip(keep, wavs, strict=True)
    ]
    index = write_gallery(
        gallery,
        names,
        captions,
        title=f"conchshell demo: {len(keep)} stand-in val photos",
        references=[reference[i] for i in keep],
    )
    measures.update(_notes_by_category(notes, n / 16000, truth, val.categories))
    measures.update(
        train_minutes=round(trained / 60, 2),
        total_minutes=round((time.perf_counter() - started) / 60, 2),
        trained_here=bool(train),
        preset=preset if train else None,
        reused=str(reuse) if reuse is not None else None,
        settings=settings,
        gan_steps=len(fitted.history_),
        val_images=len(paths),
        val_photos=len(keep),
    )
    with atomic_write(out / "summary.json", "w") as handle:
        json.dump(measures, handle, indent=2)
    for key, value in measures.items():
        _log(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    return index
