"""Datasets of (image, music, category) triples.

:class:`PairDataset` is the one dataset type the library takes (the
estimator checks ``isinstance(dataset, PairDataset)``). Two implementations
share its interface:

* :class:`MusicImageDataset` reads image and audio files (what
  :func:`conchshell.datasets.load_bop` and :func:`conchshell.datasets.load_pairs`
  return), decoding each piece of music once into a bounded LRU cache, since
  many images share one piece in BOP;
* :class:`TensorPairDataset` holds preprocessed tensors in memory (tests,
  notebooks, users with their own tensors).

Items are ``(image, waveform, category)``: a normalised float32 image
``(3, 224, 224)``, a float32 mono waveform ``(n_samples,)`` at 16 kHz, and an
int category id indexing :attr:`PairDataset.categories`.

Reproducible augmentation
-------------------------
With ``augment=True`` each waveform gets a random crop and a random gain in
U(0.5, 1). The randomness of item ``i`` comes from a numpy generator seeded
with ``(seed, epoch, i, k)``, where ``seed`` derives from ``random_state``,
``epoch`` is the value last given to :meth:`PairDataset.set_epoch` (0 until
then) and ``k`` counts how often item ``i`` was read since then in this
process. A training loop that calls ``set_epoch(epoch)`` at the start of each
epoch therefore gets the same crops for the same seed however the items are
spread over DataLoader workers, and fresh crops every epoch. (Persistent
DataLoader workers keep the epoch they started with: do not combine them with
``set_epoch``.) Images are never augmented here; image augmentation belongs
to the encoder's own training.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from conchshell._validation import (
    check_categories,
    check_path,
    check_positive_int,
    check_tensor,
)
from conchshell.data.audio import check_audio_files, crop_or_pad, decode_audio
from conchshell.data.images import IMAGE_SIZE, load_image, to_image_batch
from conchshell.levels import CLIP_SECONDS, SAMPLE_RATE

__all__ = ["MusicImageDataset", "PairDataset", "TensorPairDataset", "photo_groups"]


def _seed_from(random_state: object) -> int:
    """A non-negative int seed from None, an int, a RandomState or a Generator."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(random_state, bool):
        raise ValueError(
            f"random_state must be None, an int or a numpy generator, got {random_state!r}"
        )
    if isinstance(random_state, int | np.integer):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError(
        "random_state must be None, an int, a numpy RandomState or Generator, got "
        f"{type(random_state).__name__}"
    )


def _check_names(categories: object) -> list[str]:
    if isinstance(categories, str) or not isinstance(categories, Sequence | np.ndarray):
        raise TypeError(f"categories must be a sequence of names, got {type(categories).__name__}")
    names = [str(c) for c in categories]
    if not names:
        raise ValueError("categories must name at least one category")
    if any(not n.strip() for n in names):
        raise ValueError(f"category names must be non-empty, got {names}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"category names must be unique, got duplicates {dupes}")
    return names


def _check_duration(duration: object, *, allow_none: bool) -> float | None:
    if duration is None and allow_none:
        return None
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not np.isfinite(duration)
        or duration <= 0
    ):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    return float(duration)


class PairDataset(Dataset):
    """Base class of the library's image–music datasets.

    Subclasses store ``categories`` (names; the index is the id),
    ``category_ids``, ``augment``, ``random_state``, ``sample_rate`` and the
    path attributes, and implement :meth:`_raw_image` and :meth:`_raw_waveform`.

    Attributes
    ----------
    categories : list of str
        Category names; ``categories[i]`` is the name of id ``i``.
    category_ids : numpy.ndarray of shape (n_items,), int64
    image_paths, audio_paths : list of pathlib.Path or None
        The files behind each item (``None`` for in-memory data).
    feature_paths : list of (pathlib.Path or None) or None
        Precomputed 2048-d video features per item, where the dataset has them.
    augment : bool
    sample_rate : int
    n_samples : int
        Length of every waveform item.
    seed : int
        The seed the augmentation randomness derives from.
    epoch : int
        Set by :meth:`set_epoch`.
    """

    categories: list[str]
    category_ids: np.ndarray
    image_paths: list[Path] | None = None
    audio_paths: list[Path] | None = None
    feature_paths: list[Path | None] | None = None
    augment: bool = False
    sample_rate: int = SAMPLE_RATE
    n_samples: int
    name: str | None = None

    def _init_common(
        self,
        category_ids: object,
        categories: object,
        *,
        n_items: int,
        augment: bool,
        random_state: object,
        sample_rate: int,
        name: str | None,
    ) -> None:
        self.categories = _check_names(categories)
        ids = check_categories(
            category_ids, n_samples=n_items, n_categories=len(self.categories), name="category_ids"
        )
        self.category_ids = ids.numpy().astype(np.int64)
        if not isinstance(augment, bool | np.bool_):
            raise ValueError(f"augment must be True or False, got {augment!r}")
        self.augment = bool(augment)
        self.random_state = random_state
        self.seed = _seed_from(random_state)
        self.sample_rate = check_positive_int(sample_rate, "sample_rate")
        self.name = name
        self.epoch = 0
        self._draws = np.zeros(n_items, dtype=np.int64)

    # -- the interface -------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.category_ids.shape[0])

    @property
    def n_categories(self) -> int:
        """Number of categories (including any without items)."""
        return len(self.categories)

    def _index(self, index: object) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            if (
                isinstance(index, torch.Tensor)
                and index.ndim == 0
                and not index.is_floating_point()
            ):
                index = int(index)
            else:
                raise TypeError(f"dataset index must be an int, got {type(index).__name__}")
        n = len(self)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a dataset of {n} items")
        return i % n

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` of augmentation (see the module notes).

        Parameters
        ----------
        epoch : int
            Non-negative epoch number; the per-item read counters restart.
        """
        self.epoch = check_positive_int(epoch, "epoch", allow_zero=True)
        self._draws = np.zeros(len(self), dtype=np.int64)

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator for the next augmented read of item ``index``.

        Seeded with ``(seed, epoch, index, k)``, ``k`` the number of earlier
        reads of this item since the last :meth:`set_epoch`.

        Parameters
        ----------
        index : int
            Item position; negative values count from the end.

        Returns
        -------
        numpy.random.Generator
            Each call advances the item's draw count, so the next call differs.
        """
        i = self._index(index)
        k = int(self._draws[i])
        self._draws[i] += 1
        return np.random.default_rng([self.seed, self.epoch, i, k])

    def get_image(self, index: int) -> torch.Tensor:
        """The normalised image of item ``index``, float32 ``(3, 224, 224)``.

        Parameters
        ----------
        index : int
            Item position; negative values count from the end.

        Returns
        -------
        torch.Tensor
        """
        return self._raw_image(self._index(index))

    def get_waveform(self, index: int) -> torch.Tensor:
        """The waveform of item ``index``, float32 ``(n_samples,)`` (augmented if enabled).

        Parameters
        ----------
        index : int
            Item position; negative values count from the end.

        Returns
        -------
        torch.Tensor
            Cropped or padded to ``n_samples``; a random crop when ``augment``.
        """
        i = self._index(index)
        wave = self._raw_waveform(i)
        rng = self.item_rng(i) if self.augment else None
        return crop_or_pad(wave, self.n_samples, train=self.augment, rng=rng)

    def get_category(self, index: int) -> int:
        """The category id of item ``index``.

        Parameters
        ----------
        index : int
            Item position; negative values count from the end.

        Returns
        -------
        int
        """
        return int(self.category_ids[self._index(index)])

    def get_feature(self, index: int) -> torch.Tensor | None:
        """The precomputed video feature of item ``index``, or ``None`` if it has none.

        Parameters
        ----------
        index : int
            Item position; negative values count from the end.

        Returns
        -------
        torch.Tensor of shape (n_features,) or None

        Raises
        ------
        ValueError
            When the feature file cannot be read.
        """
        i = self._index(index)
        if self.feature_paths is None or self.feature_paths[i] is None:
            return None
        path = self.feature_paths[i]
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read feature file {str(path)!r}: {exc}") from exc
        return check_tensor(np.asarray(arr).reshape(-1), name=f"feature file {str(path)!r}", ndim=1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        i = self._index(index)
        return self.get_image(i), self.get_waveform(i), int(self.category_ids[i])

    def _index_list(self, indices: object) -> list[int]:
        if indices is None:
            return list(range(len(self)))
        if isinstance(indices, int | np.integer) and not isinstance(indices, bool):
            return [self._index(indices)]
        return [self._index(i) for i in np.asarray(indices).reshape(-1).tolist()]

    def stack_images(self, indices: Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Images of several items as one batch.

        Parameters
        ----------
        indices : sequence of int, optional
            Which items; default all.

        Returns
        -------
        torch.Tensor of shape (n, 3, 224, 224), float32
        """
        idx = self._index_list(indices)
        if not idx:
            return torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE)
        return torch.stack([self._raw_image(i) for i in idx])

    def stack_audio(self, indices: Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Waveforms of several items, never augmented: the first ``n_samples`` of each.

        Parameters
        ----------
        indices : sequence of int, optional
            Which items; default all.

        Returns
        -------
        torch.Tensor of shape (n, n_samples), float32
        """
        idx = self._index_list(indices)
        if not idx:
            return torch.zeros(0, self.n_samples)
        return torch.stack([crop_or_pad(self._raw_waveform(i), self.n_samples) for i in idx])

    def training_audio(
        self, indices: Sequence[int] | np.ndarray, rng: np.random.Generator | int | None
    ) -> torch.Tensor:
        """Augmented waveforms (random crop, gain U(0.5, 1)) drawn from the caller's ``rng``.

        For training loops that keep their own random stream (to checkpoint and
        resume it); independent of ``augment``, ``set_epoch`` and the per-item
        generators of :meth:`get_waveform`.

        Parameters
        ----------
        indices : sequence of int
        rng : numpy.random.Generator or int or None
            Draws, item by item in the order given: crop start (when the piece
            is longer than ``n_samples``), then gain.

        Returns
        -------
        torch.Tensor of shape (len(indices), n_samples), float32
        """
        idx = self._index_list(indices)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        if not idx:
            return torch.zeros(0, self.n_samples)
        return torch.stack(
            [crop_or_pad(self._raw_waveform(i), self.n_samples, train=True, rng=rng) for i in idx]
        )

    def class_counts(self) -> np.ndarray:
        """Items per category.

        Returns
        -------
        numpy.ndarray of shape (n_categories,), int64
            ``class_counts()[i]`` items have category id ``i``.
        """
        return np.bincount(self.category_ids, minlength=self.n_categories).astype(np.int64)

    def describe(self) -> str:
        """A one-line summary: size, items per category, audio files, options."""
        counts = self.class_counts()
        per = ", ".join(f"{n}: {c}" for n, c in zip(self.categories, counts, strict=True))
        label = self.name or type(self).__name__
        parts = [f"{label}: {len(self)} items in {self.n_categories} categories ({per})"]
        if self.audio_paths is not None:
            parts.append(f"{len(set(self.audio_paths))} audio files")
        if self.feature_paths is not None:
            parts.append(f"{sum(p is not None for p in self.feature_paths)} feature files")
        parts.append(f"{self.n_samples / self.sample_rate:g} s clips at {self.sample_rate} Hz")
        parts.append(f"augment={self.augment}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_items={len(self)}, categories={self.categories!r}, "
            f"augment={self.augment})"
        )

    def _positions(self, indices: object) -> np.ndarray:
        arr = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        if arr.ndim != 1:
            raise ValueError(f"indices must be one-dimensional, got shape {arr.shape}")
        if arr.dtype == np.bool_:
            if arr.shape[0] != len(self):
                raise ValueError(f"a boolean mask needs {len(self)} entries, got {arr.shape[0]}")
            return np.flatnonzero(arr)
        if arr.size == 0:
            return arr.astype(np.int64)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"indices must be integers or a boolean mask, got dtype {arr.dtype}")
        bad = arr[(arr < -len(self)) | (arr >= len(self))]
        if bad.size:
            raise IndexError(f"indices {bad[:5].tolist()} out of range for {len(self)} items")
        return (arr % max(len(self), 1)).astype(np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> PairDataset:
        """A dataset of the same type holding the chosen items.

        Parameters
        ----------
        indices : sequence of int or boolean mask

        Returns
        -------
        PairDataset
            Same categories (all of them, even those left without items),
            options and seed.
        """
        raise NotImplementedError

    def _raw_image(self, index: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _raw_waveform(self, index: int) -> np.ndarray | torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class _AudioCache:
    """Least-recently-used cache of decoded waveforms, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._data:
            self.hits += 1
            self._data.move_to_end(key)
            return self._data[key]
        self.misses += 1
        value = load()
        if value.nbytes <= self.max_bytes:
            self._data[key] = value
            self.bytes += value.nbytes
            while self.bytes > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self.bytes -= old.nbytes
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0


class MusicImageDataset(PairDataset):
    """Image–music pairs stored as files.

    Parameters
    ----------
    image_paths : sequence of str or path-like
        One image file per item.
    audio_paths : sequence of str or path-like
        One audio file per item (files may repeat: they are decoded once).
    category_ids : sequence of int
        Category id per item, indexing ``categories``.
    categories : sequence of str
        Category names; may include categories without items (so that ids
        agree between the splits of one dataset).
    augment : bool, default=False
        Random crop and gain U(0.5, 1) on each waveform read (training).
    random_state : int, numpy RandomState or Generator, or None
        Seed of the augmentation (see the module notes); ``None`` draws one.
    sample_rate : int, default=16000
    duration : float, default=8.0
        Seconds per waveform item.
    feature_paths : sequence of (path or None), optional
        Precomputed video features per item (BOP's ``Npy`` folder).
    audio_cache_mb : float, default=256
        Bound on the decoded-audio cache, in MiB.
    check_files : bool, default=True
        Check at construction that every file exists.
    check_audio : bool, default=True
        Decode every distinct audio file once at construction and raise a
        ``ValueError`` naming the file and its items if one is unreadable,
        truncated, empty, silent or holds NaN/Inf samples
        (:func:`conchshell.data.audio.check_audio_files`), rather than when
        training first reads it.
    name : str, optional
        Shown by :meth:`describe`.

    Examples
    --------
    >>> ds = MusicImageDataset(["a.jpg"], ["a.wav"], [0], ["sea"])  # doctest: +SKIP
    >>> image, wave, category = ds[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        image_paths: Sequence[str | os.PathLike],
        audio_paths: Sequence[str | os.PathLike],
        category_ids: Sequence[int] | np.ndarray,
        categories: Sequence[str],
        *,
        augment: bool = False,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        sample_rate: int = SAMPLE_RATE,
        duration: float = CLIP_SECONDS,
        feature_paths: Sequence[str | os.PathLike | None] | None = None,
        audio_cache_mb: float = 256,
        check_files: bool = True,
        check_audio: bool = True,
        name: str | None = None,
    ) -> None:
        for label, seq in (("image_paths", image_paths), ("audio_paths", audio_paths)):
            if isinstance(seq, str | bytes | os.PathLike) or not isinstance(
                seq, Sequence | np.ndarray
            ):
                raise TypeError(f"{label} must be a sequence of paths, got {type(seq).__name__}")
        self.image_paths = [check_path(p, f"image_paths[{i}]") for i, p in enumerate(image_paths)]
        self.audio_paths = [check_path(p, f"audio_paths[{i}]") for i, p in enumerate(audio_paths)]
        n = len(self.image_paths)
        if len(self.audio_paths) != n:
            raise ValueError(
                f"image_paths has {n} entries but audio_paths has {len(self.audio_paths)}"
            )
        self._init_common(
            category_ids,
            categories,
            n_items=n,
            augment=augment,
            random_state=random_state,
            sample_rate=sample_rate,
            name=name,
        )
        self.duration = _check_duration(duration, allow_none=False)
        self.n_samples = round(self.duration * self.sample_rate)
        if feature_paths is not None:
            self.feature_paths = [None if p is None else Path(p) for p in feature_paths]
            if len(self.feature_paths) != n:
                raise ValueError(
                    f"feature_paths has {len(self.feature_paths)} entries for {n} items"
                )
        if (
            isinstance(audio_cache_mb, bool)
            or not isinstance(audio_cache_mb, int | float)
            or audio_cache_mb < 0
        ):
            raise ValueError(
                f"audio_cache_mb must be a non-negative number, got {audio_cache_mb!r}"
            )
        self.audio_cache_mb = audio_cache_mb
        self.check_files = check_files
        if check_files:
            _check_exist(self.image_paths, "image")
            _check_exist(self.audio_paths, "audio")
        if check_audio:
            check_audio_files(self.audio_paths, where=self.name or type(self).__name__)
        self._cache = _AudioCache(int(audio_cache_mb * 2**20))

    def _raw_image(self, index: int) -> torch.Tensor:
        return load_image(self.image_paths[index], size=IMAGE_SIZE)

    def _raw_waveform(self, index: int) -> np.ndarray:
        path = self.audio_paths[index]
        return self._cache.get(str(path), lambda: decode_audio(path, sample_rate=self.sample_rate))

    def subset(self, indices: Sequence[int] | np.ndarray) -> MusicImageDataset:
        pos = self._positions(indices)
        feats = None if self.feature_paths is None else [self.feature_paths[i] for i in pos]
        return MusicImageDataset(
            [self.image_paths[i] for i in pos],
            [self.audio_paths[i] for i in pos],
            self.category_ids[pos],
            self.categories,
            augment=self.augment,
            random_state=self.seed,
            sample_rate=self.sample_rate,
            duration=self.duration,
            feature_paths=feats,
            audio_cache_mb=self.audio_cache_mb,
            check_files=False,
            check_audio=False,
            name=self.name,
        )

    # The cache is per process: DataLoader workers start with an empty one.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = _AudioCache(self._cache.max_bytes)
        return state


def _check_exist(paths: list[Path], kind: str) -> None:
    missing = sorted({str(p) for p in paths if not p.is_file()})
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{len(missing)} {kind} file(s) not found: {shown}{more}")


class TensorPairDataset(PairDataset):
    """Image–music pairs held in memory, with the same interface as :class:`MusicImageDataset`.

    Parameters
    ----------
    images : torch.Tensor of shape (n_items, 3, 224, 224), or images
        Preprocessed (normalised) float tensors, or anything
        :func:`conchshell.data.images.to_image_batch` accepts (paths, PIL
        images, numpy arrays), which is preprocessed once here.
    waveforms : array-like of shape (n_items, samples)
        Mono clips at ``sample_rate``, taken as they are (no resampling or
        normalisation).
    category_ids : sequence of int
    categories : sequence of str, optional
        Category names; default ``["0", "1", ...]`` up to the largest id.
    augment : bool, default=False
        Random crop (when ``duration`` is shorter than the clips) and gain
        U(0.5, 1) on each read.
    random_state : int, numpy RandomState or Generator, or None
    sample_rate : int, default=16000
    duration : float or None, default=None
        Seconds per waveform item; ``None`` keeps the stored length.
    name : str, optional

    Examples
    --------
    >>> import torch
    >>> ds = TensorPairDataset(torch.zeros(2, 3, 224, 224), torch.zeros(2, 800), [0, 1], ["a", "b"])
    >>> [tuple(t.shape) for t in ds[1][:2]], ds[1][2]
    ([(3, 224, 224), (800,)], 1)
    """

    def __init__(
        self,
        images: Any,
        waveforms: Any,
        category_ids: Sequence[int] | np.ndarray,
        categories: Sequence[str] | None = None,
        *,
        augment: bool = False,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        sample_rate: int = SAMPLE_RATE,
        duration: float | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[0] == 0:
            batch = check_tensor(
                images,
                name="images",
                ndim=4,
                shape=(None, 3, IMAGE_SIZE, IMAGE_SIZE),
                allow_empty=True,
            )
        else:
            batch = to_image_batch(images)
        waves = check_tensor(waveforms, name="waveforms", ndim=2, allow_empty=True)
        if waves.shape[0] != batch.shape[0]:
            raise ValueError(
                f"images has {batch.shape[0]} items but waveforms has {waves.shape[0]}"
            )
        if waves.shape[1] == 0:
            raise ValueError("waveforms hold no samples (zero-length audio)")
        if categories is None:
            ids = np.asarray(category_ids)
            n_cat = int(ids.max()) + 1 if ids.size and np.issubdtype(ids.dtype, np.number) else 1
            categories = [str(i) for i in range(max(n_cat, 1))]
        self.images = batch.contiguous()
        self.waveforms = waves.contiguous()
        self._init_common(
            category_ids,
            categories,
            n_items=int(batch.shape[0]),
            augment=augment,
            random_state=random_state,
            sample_rate=sample_rate,
            name=name,
        )
        self.duration = _check_duration(duration, allow_none=True)
        self.n_samples = (
            int(waves.shape[1])
            if self.duration is None
            else round(self.duration * self.sample_rate)
        )

    def _raw_image(self, index: int) -> torch.Tensor:
        return self.images[index]

    def stack_images(self, indices: Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        if indices is None:
            return self.images
        return self.images[torch.as_tensor(self._index_list(indices), dtype=torch.long)]

    def _raw_waveform(self, index: int) -> torch.Tensor:
        return self.waveforms[index]

    def get_waveform(self, index: int) -> torch.Tensor:
        """The waveform of item ``index``, float32 ``(n_samples,)`` (augmented if enabled).

        Without augmentation, and when the stored clips are already ``n_samples``
        long, the stored row is returned as is (not copied).

        Parameters
        ----------
        index : int
            Item position; negative values count from the end.

        Returns
        -------
        torch.Tensor
        """
        i = self._index(index)
        if not self.augment and self.n_samples == self.waveforms.shape[1]:
            return self.waveforms[i]
        return super().get_waveform(i)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TensorPairDataset:
        pos = torch.as_tensor(self._positions(indices), dtype=torch.long)
        return TensorPairDataset(
            self.images[pos],
            self.waveforms[pos],
            self.category_ids[pos.numpy()],
            self.categories,
            augment=self.augment,
            random_state=self.seed,
            sample_rate=self.sample_rate,
            duration=self.duration,
            name=self.name,
        )


def photo_groups(dataset: Any) -> np.ndarray | None:
    """One group label per original photo, or None when items have no image paths.

    BOP's augmented copies of a photo end in -1 .. -5 and share its group.

    Parameters
    ----------
    dataset : PairDataset
        A dataset with ``image_paths``.

    Returns
    -------
    numpy.ndarray of str, shape (n_items,), or None

    Keeping a photo and its copies on one side of the encoder's early-stopping
    split stops the validation score from measuring memory.
    """
    paths = getattr(dataset, "image_paths", None)
    if not paths or any(p is None for p in paths):
        return None
    return np.array(
        [f"{Path(p).parent.name}/{re.sub(r'-[1-5]$', '', Path(p).stem)}" for p in paths]
    )
