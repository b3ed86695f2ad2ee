"""The real clips of a dataset, once each, to fit the evaluation models on."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["real_clips"]


def real_clips(dataset: object, *, distinct: bool = True) -> tuple[np.ndarray, np.ndarray, list]:
    """Waveforms and categories of a dataset's real clips.

    Many images share one piece of music (in BOP and in the stand-in dataset),
    so by default each audio file counts once, with the category of its first
    image; a classifier fitted on repeated copies would weigh pieces by how many
    images they have.

    Parameters
    ----------
    dataset : conchshell.datasets.PairDataset
        Any dataset with ``get_waveform(i)``, ``category_ids`` and (for
        ``distinct``) ``audio_paths``; read without augmentation when its
        ``augment`` is False.
    distinct : bool, default=True
        One clip per distinct audio file. In-memory datasets (no
        ``audio_paths``) always give every item.

    Returns
    -------
    waveforms : numpy.ndarray
        ``(n_clips, samples)`` float32.
    categories : numpy.ndarray
        ``(n_clips,)`` int64 category ids.
    keys : list
        The audio path of each clip (or its item index for in-memory data).

    Warns
    -----
    UserWarning
        When one audio file is paired with images of several categories.
    """
    paths = getattr(dataset, "audio_paths", None)
    ids = np.asarray(dataset.category_ids, dtype=np.int64)  # type: ignore[attr-defined]
    if not distinct or paths is None:
        items = list(range(len(ids)))
        keys: list = items
    else:
        first: dict[str, int] = {}
        cats_of: dict[str, set[int]] = {}
        for i, path in enumerate(paths):
            first.setdefault(str(path), i)
            cats_of.setdefault(str(path), set()).add(int(ids[i]))
        keys = sorted(first)
        items = [first[k] for k in keys]
        mixed = sum(len(c) > 1 for c in cats_of.values())
        if mixed:
            warnings.warn(
                f"{mixed} audio files are paired with images of several categories; "
                "each is counted once, under its first image's category",
                stacklevel=2,
            )
    if not items:
        raise ValueError("the dataset has no clips")
    waves = np.stack([np.asarray(dataset.get_waveform(i), dtype=np.float32) for i in items])  # type: ignore[attr-defined]
    return waves, ids[items], keys
