"""Loading datasets: the BOP layout, a CSV of pairs, and a tiny synthetic set.

All three return a :class:`conchshell.data.dataset.PairDataset` (the first
two a :class:`~conchshell.data.dataset.MusicImageDataset`), whose items are
``(image (3, 224, 224), waveform (128000,), category id)``.

Examples
--------
>>> from conchshell.datasets import load_bop, make_toy_dataset
>>> train = load_bop("BOP", "train")  # doctest: +SKIP
>>> val = load_bop("BOP", "val")  # doctest: +SKIP
>>> toy = make_toy_dataset(n_per_category=1, n_samples=1600)
>>> len(toy), toy.categories[:2]
(6, ['coast', 'island'])
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence

import numpy as np
import torch

from conchshell.data.audio import check_audio_files
from conchshell.data.bop import index_bop
from conchshell.data.dataset import MusicImageDataset, PairDataset, TensorPairDataset
from conchshell.data.images import IMAGE_SIZE, normalize, to_image_batch
from conchshell.data.pairs import read_pairs_csv
from conchshell.levels import CLIP_SAMPLES, CLIP_SECONDS, SAMPLE_RATE

__all__ = [
    "BOP_CATEGORIES",
    "MusicImageDataset",
    "PairDataset",
    "TensorPairDataset",
    "as_dataset",
    "load_bop",
    "load_pairs",
    "make_toy_dataset",
]

#: The six image categories of BOP, in the order of their folder numbers.
BOP_CATEGORIES = ("coast", "island", "sand_beach", "coral_reef", "deep", "ocean_wave")


def as_dataset(
    X: object,
    *,
    audio: object = None,
    categories: object = None,
    category_names: Sequence[str] | None = None,
    sample_rate: int = SAMPLE_RATE,
    duration: float | None = CLIP_SECONDS,
) -> PairDataset:
    """Take a dataset, or build an in-memory one from images, audio and categories.

    What estimators call on their input, so that ``fit`` accepts either form.

    Parameters
    ----------
    X : PairDataset or images
        A dataset (returned as it is), or images in any form
        :func:`conchshell.data.images.to_image_batch` accepts.
    audio : array-like of shape (n, samples), optional
        Required with images: mono clips at ``sample_rate``, taken as they are
        (no resampling or normalisation), cut or zero-padded to ``duration``.
    categories : array-like of shape (n,), optional
        Integer ids, or names (then sorted to give the ids). Without them every
        item gets id 0 (for uses that ignore categories, such as scoring).
    category_names : sequence of str, optional
        Names for integer ids (default ``"0"``, ``"1"``, ...).
    sample_rate : int, default=16000
    duration : float or None, default=8.0
        Seconds per clip; ``None`` keeps the clips' length.

    Returns
    -------
    PairDataset

    Raises
    ------
    ValueError
        An empty dataset, images without audio, audio or categories given
        together with a dataset, mismatched lengths.

    Examples
    --------
    >>> import numpy as np
    >>> ds = as_dataset(np.zeros((2, 8, 8, 3), np.uint8), audio=np.zeros((2, 1600)) + 0.1,
    ...                 categories=["sea", "sky"], duration=None)
    >>> ds.categories, ds.category_ids.tolist()
    (['sea', 'sky'], [0, 1])
    """
    if isinstance(X, PairDataset):
        if audio is not None or categories is not None:
            raise ValueError(
                "audio and categories are taken from the dataset; pass them only with raw images"
            )
        if len(X) == 0:
            raise ValueError(f"the dataset is empty: {X.describe()}")
        return X
    if audio is None:
        raise ValueError(
            "images need their audio: pass audio=(n, samples) clips (and categories=), or a "
            "dataset from load_bop/load_pairs"
        )
    images = to_image_batch(X)
    if categories is None:
        ids = np.zeros(images.shape[0], dtype=np.int64)
        names = list(category_names) if category_names is not None else ["0"]
    else:
        arr = np.asarray(categories.cpu() if isinstance(categories, torch.Tensor) else categories)
        if arr.dtype.kind in "USO":
            names = sorted({str(v) for v in arr.reshape(-1)})
            lookup = {n: i for i, n in enumerate(names)}
            ids = np.array([lookup[str(v)] for v in arr.reshape(-1)], dtype=np.int64)
        else:
            ids = arr
            names = list(category_names) if category_names is not None else None
    return TensorPairDataset(
        images, audio, ids, names, sample_rate=sample_rate, duration=duration, name="in-memory data"
    )


def load_bop(
    root: str | os.PathLike,
    split: str = "train",
    small: bool = False,
    *,
    augment: bool | None = None,
    random_state: int | np.random.RandomState | np.random.Generator | None = None,
    missing: str = "error",
    sample_rate: int = SAMPLE_RATE,
    duration: float = CLIP_SECONDS,
    check_audio: bool = True,
) -> MusicImageDataset:
    """Load one split of the BOP dataset from the authors' folder layout.

    The layout and the policies for irregular data (unlisted images, missing
    files, category numbering) are described in :mod:`conchshell.data.bop`.

    Parameters
    ----------
    root : str or path-like
        The folder holding ``Img/``, ``Wav/``, ``Label/`` (and optionally ``Npy/``).
    split : {"train", "val"}, default="train"
        ``Img/train_set`` or ``Img/val_set``.
    small : bool, default=False
        Use ``Label/Label_small.xlsx`` (original images only, no augmented
        copies) instead of ``Label/Label.xlsx``.
    augment : bool, optional
        Random audio crop and gain; default ``True`` for ``"train"`` and
        ``False`` for ``"val"``.
    random_state : int, numpy RandomState or Generator, or None
        Seed of the augmentation.
    missing : {"error", "skip"}, default="error"
        Label rows whose image or audio is missing: raise, or drop with a warning.
    sample_rate : int, default=16000
    duration : float, default=8.0
    check_audio : bool, default=True
        Decode every distinct audio file of the split once, now, and raise if
        one is unreadable, truncated, empty, silent or holds NaN/Inf samples
        (:func:`conchshell.data.audio.check_audio_file`), rather than when
        training first reads it. Decoding without resampling is cheap: for the
        120 eight-second WAVs of the stand-in set's training split it adds
        about 0.07 s to the load.

    Returns
    -------
    MusicImageDataset
        With ``categories`` from the folder names (``coral_reef-4`` -> id 3,
        name ``"coral_reef"``), gathered over both splits so ids agree, and
        ``feature_paths`` pointing at ``Npy/i3d_npy_<split>/<folder>/<image>.npy``
        where such files exist (``None`` elsewhere).

    Raises
    ------
    TypeError
        ``root`` is not a str or path (bytes, say).
    FileNotFoundError
        A missing root, sub-folder, Label file, or referenced file.
    ValueError
        A malformed Label file, an unknown category folder, an empty split, an
        unusable audio file (naming the file and its Label rows).

    Examples
    --------
    >>> train = load_bop("BOP", "train")  # doctest: +SKIP
    >>> print(train.describe())  # doctest: +SKIP
    """
    index = index_bop(root, split, small=small, missing=missing)
    if check_audio:
        check_audio_files(
            index.audio_paths,
            rows=index.rows,
            row_name=f"{index.label_path.name} row",
            where=f"the {split!r} split of BOP {os.fspath(root)!r}",
        )
    return MusicImageDataset(
        index.image_paths,
        index.audio_paths,
        index.category_ids,
        index.categories,
        augment=(split == "train") if augment is None else augment,
        random_state=random_state,
        sample_rate=sample_rate,
        duration=duration,
        feature_paths=index.feature_paths,
        check_files=False,  # index_bop has checked them
        check_audio=False,  # and so has check_audio_files, naming the Label rows
        name=f"BOP {split}{' (small)' if small else ''}",
    )


def load_pairs(
    csv_path: str | os.PathLike,
    *,
    categories: Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
    augment: bool = False,
    random_state: int | np.random.RandomState | np.random.Generator | None = None,
    missing: str = "error",
    sample_rate: int = SAMPLE_RATE,
    duration: float = CLIP_SECONDS,
    check_audio: bool = True,
) -> MusicImageDataset:
    """Load image–music pairs listed in a CSV file with columns image, audio, category.

    See :mod:`conchshell.data.pairs` for the format in full.

    Parameters
    ----------
    csv_path : str or path-like
        A UTF-8 CSV with the header ``image,audio,category``.
    categories : sequence of str, optional
        Category names (index = id). Pass the same list to the training and
        validation CSVs so ids agree. Without it, names are sorted, or ids
        ``0..K-1`` are named ``"0"``..``"K-1"``.
    root : str or path-like, optional
        Where relative paths start; default the CSV's folder.
    augment : bool, default=False
        Random audio crop and gain (turn on for training data).
    random_state : int, numpy RandomState or Generator, or None
    missing : {"error", "skip"}, default="error"
        Rows naming a missing file: raise, or drop with a warning.
    sample_rate : int, default=16000
    duration : float, default=8.0
    check_audio : bool, default=True
        Decode every distinct audio file once, now, and raise if one is
        unreadable, truncated, empty, silent or holds NaN/Inf samples, naming
        the file and its CSV lines (as :func:`load_bop`).

    Returns
    -------
    MusicImageDataset

    Raises
    ------
    TypeError
        ``csv_path`` or ``root`` is not a str or path (bytes, say).
    FileNotFoundError
        A missing CSV, or a file it names (with ``missing="error"``).
    ValueError
        A malformed CSV (see :func:`conchshell.data.pairs.read_pairs_csv`), or
        an unusable audio file.

    Examples
    --------
    A file ``pairs.csv``::

        image,audio,category
        photos/beach1.jpg,music/calm.wav,beach
        photos/storm.png,music/storm.flac,sea

    >>> data = load_pairs("pairs.csv", augment=True, random_state=0)  # doctest: +SKIP
    >>> data.categories  # doctest: +SKIP
    ['beach', 'sea']
    """
    index = read_pairs_csv(csv_path, categories=categories, root=root, missing=missing)
    if check_audio:
        check_audio_files(
            index.audio_paths,
            rows=index.lines,
            row_name="line",
            where=f"pairs CSV {os.fspath(csv_path)!r}",
        )
    return MusicImageDataset(
        index.image_paths,
        index.audio_paths,
        index.category_ids,
        index.categories,
        augment=augment,
        random_state=random_state,
        sample_rate=sample_rate,
        duration=duration,
        check_files=False,  # read_pairs_csv has checked them
        check_audio=False,  # and so has check_audio_files, naming the CSV lines
        name=f"pairs from {os.fspath(csv_path)}",
    )


def make_toy_dataset(
    n_per_category: int = 2,
    n_categories: int = 6,
    n_samples: int = CLIP_SAMPLES,
    *,
    sample_rate: int = SAMPLE_RATE,
    augment: bool = False,
    random_state: int | None = 0,
) -> TensorPairDataset:
    """A tiny in-memory dataset for tests and examples.

    Each category has its own image colour (hues spread around the colour
    wheel, a vertical brightness gradient and a little noise) and its own
    music: repeated piano-like notes (three harmonics, exponential decay, two
    notes a second) whose pitch rises four semitones per category from A3
    (220 Hz), with a small per-item detune. So a model can learn which sound
    goes with which picture. Built in milliseconds.

    Parameters
    ----------
    n_per_category : int, default=2
    n_categories : int, default=6
        The first six are named after BOP's categories, further ones
        ``"category_6"``, ...
    n_samples : int, default=128000
        Waveform length (8 s at 16 kHz by default; shorter keeps tests faster).
    sample_rate : int, default=16000
    augment : bool, default=False
    random_state : int or None, default=0
        Seed of the images' noise, the detune, and the augmentation.

    Returns
    -------
    TensorPairDataset
        ``n_per_category * n_categories`` items, ordered by category.

    Examples
    --------
    >>> ds = make_toy_dataset(n_per_category=1, n_categories=3, n_samples=800)
    >>> ds.class_counts().tolist(), tuple(ds[2][1].shape)
    ([1, 1, 1], (800,))
    """
    for label, value, low in (
        ("n_per_category", n_per_category, 1),
        ("n_categories", n_categories, 1),
        ("n_samples", n_samples, 1),
        ("sample_rate", sample_rate, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{label} must be an int >= {low}, got {value!r}")
    rng = np.random.default_rng(random_state)
    n = n_per_category * n_categories
    ids = np.repeat(np.arange(n_categories), n_per_category)

    colours = torch.tensor(
        [colorsys.hsv_to_rgb(c / n_categories, 0.7, 0.9) for c in range(n_categories)],
        dtype=torch.float32,
    )
    gradient = torch.linspace(0.6, 1.0, IMAGE_SIZE).reshape(1, 1, IMAGE_SIZE, 1)
    # Noise in 8x8-pixel blocks: cheap to draw, and a texture rather than pixel grain.
    side = -(-IMAGE_SIZE // 8)
    noise = torch.from_numpy(rng.normal(0.0, 0.04, size=(n, 3, side, side)).astype(np.float32))
    noise = noise.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)[
        :, :, :IMAGE_SIZE, :IMAGE_SIZE
    ]
    images = (colours[ids].reshape(n, 3, 1, 1) * gradient + noise).clamp_(0.0, 1.0)

    t = torch.arange(n_samples, dtype=torch.float64) / sample_rate
    note_t = torch.remainder(t, 0.5)  # a new note every half second
    envelope = (torch.exp(-4.0 * note_t) * torch.clamp(note_t / 0.005, max=1.0)).float()
    detune = 1.0 + rng.uniform(-0.005, 0.005, size=n)
    f0 = torch.from_numpy(220.0 * 2.0 ** (4 * ids / 12.0) * detune)
    # Phase in float64 (it reaches 10^4 rad), the sines in float32.
    phase = (2 * np.pi * f0[:, None] * t[None, :]).remainder(2 * np.pi).float()
    waves = (phase.sin() + 0.5 * (2 * phase).sin() + 0.25 * (3 * phase).sin()) * envelope
    waves *= 0.95 / waves.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)

    names = [
        BOP_CATEGORIES[c] if c < len(BOP_CATEGORIES) else f"category_{c}"
        for c in range(n_categories)
    ]
    return TensorPairDataset(
        normalize(images),
        waves,
        ids,
        names,
        augment=augment,
        random_state=random_state,
        sample_rate=sample_rate,
        name="toy dataset",
    )
