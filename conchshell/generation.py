"""What a fitted :class:`~conchshell.ImageToMusic` does with pictures.

:class:`GenerationMixin` holds the estimator's inference side: image features
and categories, latents, decoded clips, files on disk and the PESQ score. It
reads only fitted attributes (``encoder_``, ``forger_``, ``extractor_``,
``generator_``, ``codec_``, ``denoiser_``, ``category_model_``,
``categories_``, ``level_``), so the estimator module keeps the composition
and the order of the training stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from conchshell._validation import check_categories, check_path
from conchshell.data.audio import fit_length
from conchshell.levels import SAMPLE_RATE, level_index, level_name

__all__ = ["GenerationMixin", "expand_images"]


class GenerationMixin:
    """Prediction, file writing and scoring for :class:`~conchshell.ImageToMusic`."""

    @property
    def _n_samples(self) -> int:
        return round(float(self.duration) * SAMPLE_RATE)

    # ------------------------------------------------------------------- data
    def _features(self, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Image batch -> extractor features, in chunks, without gradients."""
        out = []
        for start in range(0, images.shape[0], batch_size):
            out.append(self._features_of(images[start : start + batch_size]).cpu())
        return torch.cat(out)

    def _features_of(
        self, images: torch.Tensor, maps: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Extractor features of ``images``; ``maps``, when given, are the encoder's own."""
        if getattr(self.forger_, "mode", "groups") == "repeat":
            video = self.forger_.transform(images)
        else:
            video = self.forger_.transform(
                self.encoder_.transform(images) if maps is None else maps
            )
        return torch.as_tensor(self.extractor_.transform(video))

    def _features_and_categories(
        self, images: torch.Tensor, batch_size: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Extractor features and predicted categories, the encoder run once per image."""
        one_pass = (
            self.category_model_ is None
            and hasattr(self.encoder_, "transform_predict")
            and getattr(self.forger_, "mode", "groups") != "repeat"
        )
        if not one_pass:
            features = self._features(images, batch_size)
            return features, self._predict_categories(images, features)
        feats, cats = [], []
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            # Class scores go to an argmax: keep the encoder out of bf16 autocast.
            with torch.autocast(chunk.device.type, enabled=False):
                maps, predicted = self.encoder_.transform_predict(chunk)
            feats.append(self._features_of(chunk, maps))
            cats.append(torch.as_tensor(np.asarray(predicted), dtype=torch.long))
        return torch.cat([f.cpu() for f in feats]), torch.cat(cats)

    def _predict_categories(
        self, images: torch.Tensor, features: torch.Tensor | None
    ) -> torch.Tensor:
        if self.category_model_ is not None:
            pred = self.category_model_.predict(features.double().cpu().numpy())
        else:
            # The classifier's probabilities go to numpy: keep them out of bf16.
            with torch.autocast(images.device.type, enabled=False):
                pred = self.encoder_.predict(images)
        return torch.as_tensor(np.asarray(pred), dtype=torch.long)

    # ---------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        check_is_fitted(self, "generator_")
        if level_index(self.level) != self.level_:
            raise ValueError(
                f"this model was fitted for level {level_name(self.level_)!r}, but level is now "
                f"{self.level!r}; refit it (fit) after changing the level"
            )

    def predict_categories(self, images: object) -> np.ndarray:
        """The category id each image's music is conditioned on by default.

        It is the encoder's scene prediction (or, for encoders that do not
        classify, a logistic regression on the extractor's features).

        Parameters
        ----------
        images : path, PIL image, array or tensor, or a sequence of them
            The pictures, as :meth:`predict` takes them.

        Returns
        -------
        numpy.ndarray of shape (n,), int
        """
        from conchshell.data.images import to_image_batch

        self._check_fitted()
        batch = to_image_batch(images).to(self.generator_.device_)
        with torch.inference_mode():
            # The encoder classifies alone; only the VGG path needs the extractor's features.
            feats = None if self.category_model_ is None else self._features(batch)
            return self._predict_categories(batch, feats).numpy()

    def predict_latents(
        self, images: object, categories: object = None, noise: object = None
    ) -> torch.Tensor:
        """Continuous latents the generator predicts, shape (n, emb_width, T).

        Parameters
        ----------
        images : path, PIL image, array or tensor, or a sequence of them
            The pictures, as :meth:`predict` takes them.
        categories : array-like of int or str, optional
            The category fed to the generator; by default :meth:`predict_categories`.
        noise : array-like of shape (n, noise_dim), optional
            For a generator with a noise input; default its ``sample_noise(n)``.

        Returns
        -------
        torch.Tensor of shape (n, emb_width, T)
            Latents at the model's level, before quantisation and decoding.
        """
        from conchshell.data.images import to_image_batch

        self._check_fitted()
        batch = to_image_batch(images).to(self.generator_.device_)
        with torch.inference_mode():
            if categories is None:
                feats, cats = self._features_and_categories(batch)
            else:
                feats = self._features(batch)
                cats = check_categories(
                    categories, n_samples=batch.shape[0], n_categories=len(self.categories_)
                )
            if noise is None:
                return torch.as_tensor(self.generator_.transform(feats, cats))
            return torch.as_tensor(self.generator_.transform(feats, cats, noise))

    def predict(
        self,
        images: object,
        categories: object = None,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Generate an 8-second 16 kHz clip for each image.

        Parameters
        ----------
        images : path, PIL image, array or tensor, or a sequence of them
            Pictures of any size and mode (converted to RGB 224x224), or an
            already preprocessed tensor ``(n, 3, 224, 224)``.
        categories : array-like of int or str, optional
            Steer the mood: the category fed to the generator. By default it
            is the encoder's prediction for each image.
        batch_size : int, optional
            Images per forward pass (bounds memory); default 8.
        seed : int, optional
            For a generator with a noise input (``noise_dim > 0``): seeds the
            noise, so another seed gives another piece for the same picture.
            Default the generator's ``random_state``: the i-th picture of a
            call always gets the same noise, whatever the batch size.

        Returns
        -------
        numpy.ndarray of shape (n, duration x 16000), float32
            (n, 128000) at the paper's 8 s.
        """
        from conchshell.data.images import to_image_batch

        self._check_fitted()
        batch = to_image_batch(images)
        n = batch.shape[0]
        if categories is not None:
            categories = self._category_ids(categories, n)
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int | np.integer)
            or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        step = batch_size or 8
        sample = getattr(self.generator_, "sample_noise", None)
        noise = sample(n, seed) if sample is not None else None
        out = []
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            cats = None if categories is None else categories[start : start + step]
            z = None if noise is None else noise[start : start + step]
            with self._autocast():
                latents = self.predict_latents(chunk, cats, z)
                with torch.inference_mode():
                    latents = latents.float().to(self.codec_.device_)
                    codes = self.codec_.quantize(latents, level=self.level_)[0]
                    audio = self.codec_.decode(codes, level=self.level_)[..., : self._n_samples]
            out.append(audio.float().cpu().numpy())
        clips = np.concatenate(out).astype(np.float32, copy=False)
        if self.denoiser_ is not None:
            clips = np.asarray(self.denoiser_.transform(clips), dtype=np.float32)
        return clips

    def _autocast(self) -> Any:
        device_type = self.generator_.device_.type
        enabled = getattr(self, "precision", "float32") == "bfloat16"
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)

    def _category_ids(self, categories: object, n: int) -> torch.Tensor:
        values = list(np.atleast_1d(np.asarray(categories, dtype=object)))
        ids = []
        for v in values:
            if isinstance(v, str):
                if v not in self.categories_:
                    raise ValueError(f"unknown category {v!r}; known: {self.categories_}")
                ids.append(self.categories_.index(v))
            else:
                ids.append(v)
        return check_categories(ids, n_samples=n, n_categories=len(self.categories_))

    def generate_files(
        self,
        images: Sequence[object],
        out_dir: str | Path,
        names: Sequence[str] | None = None,
        categories: object = None,
        overwrite: bool = False,
        midi: bool = False,
    ) -> list[Path]:
        """Write a 16 kHz WAV per image (and a copy of the image) into ``out_dir``.

        The folder then has the layout the MOS app serves: ``<name>.wav``
        beside ``<name>.png``, and ``<name>.mid`` with ``midi``.

        Parameters
        ----------
        images : path, folder, sequence of paths, PIL images, arrays, or a tensor
            The pictures, as :meth:`predict` takes them; a folder (alone or in
            the sequence) stands for the ``.jpg``, ``.jpeg`` and ``.png`` files
            in it, in name order.
        out_dir : str or Path
            Destination folder; created if missing.
        names : sequence of str, optional
            File stem per image; by default each path's stem, or ``item0000``, ... for
            in-memory images.
        categories : array-like of int or str, optional
            The category each clip is conditioned on, as in :meth:`predict`.
        overwrite : bool, default=False
            Replace files that already exist. Without it an existing file is
            an error, raised before anything is generated. An input image is
            never written over, even with it.
        midi : bool, default=False
            Also write ``<name>.mid``: the notes of the generated clip as
            :func:`conchshell.evaluation.transcribe` hears them (onsets,
            pitches, velocities) with the clip's estimated tempo, for a DAW
            (:func:`conchshell.evaluation.write_midi`). A clip without notes
            gives an empty MIDI file and a warning on the ``"conchshell"``
            logger. Needs the ``transcription`` extra.

        Returns
        -------
        list of Path
            The WAV files written.

        Raises
        ------
        ImportError
            With ``midi``, when the transcriber's packages are missing, before
            anything is generated; the message gives the install command.
        TypeError
            When ``images`` or ``out_dir`` is bytes rather than a str or path,
            or ``midi`` is not a bool.
        ValueError
            When a name is not a plain file name (empty, a path, ``..``), two
            images share a name (one would overwrite the other), or a file
            to write is one of the input images.
        FileExistsError
            When ``out_dir`` is a file, or a file to write exists and
            ``overwrite`` is False.
        OSError
            When a file cannot be written (full disk, missing rights), naming
            it. Every file is written atomically: the ones written before the
            error are complete, and no partial file is left.
        """
        from conchshell.data.images import to_image_batch

        items = expand_images(images)
        if names is None:
            names = [
                Path(str(x)).stem if isinstance(x, str | Path) else f"item{i:04d}"
                for i, x in enumerate(items)
            ]
        if len(names) != len(items):
            raise ValueError(f"{len(names)} names given for {len(items)} images")
        check_file_names(names)
        if not isinstance(midi, bool | np.bool_):
            raise TypeError(f"midi must be True or False, got {midi!r}")
        suffixes = (".wav", ".png", ".mid") if midi else (".wav", ".png")
        check_targets(out_dir, names, items, overwrite, suffixes)
        if midi:
            from conchshell.evaluation.transcription import check_transcriber

            check_transcriber(midi=True)
        clips = self.predict(items, categories=categories)
        written = write_clips(out_dir, names, clips, to_image_batch(items), SAMPLE_RATE)
        if midi:
            write_midi_files(out_dir, names, clips, SAMPLE_RATE)
        return written

    def score(self, X: object, y: object = None) -> float:
        """Mean wide-band PESQ between generated and paired audio (the paper's metric).

        Parameters
        ----------
        X : dataset or images
            A dataset (its images and paired clips are used), or images.
        y : array-like of shape (n, n_samples), optional
            The paired 16 kHz clips, when ``X`` holds images.

        Returns
        -------
        float
            Mean PESQ; clips on which PESQ finds no utterance are left out.
        """
        from conchshell.data.dataset import PairDataset
        from conchshell.metrics import nanmean_count, pesq_wb

        if isinstance(X, PairDataset):
            images, reference = X.stack_images(), X.stack_audio()
        elif y is None:
            raise ValueError("score needs a dataset, or images X with their paired audio y")
        else:
            images, reference = X, torch.as_tensor(np.asarray(y, dtype=np.float32))
        generated = self.predict(images)
        reference = fit_length(reference, self._n_samples).numpy()
        return nanmean_count(pesq_wb(reference, generated))[0]


def check_file_names(names: Sequence[object]) -> None:
    """Names become ``<name>.wav`` in one folder: plain, distinct file names only."""
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or name.strip() in ("", ".", "..") or "\x00" in name:
            raise ValueError(f"file name {name!r} is empty or not a plain file name")
        if "/" in name or "\\" in name or name != Path(name).name:
            raise ValueError(f"file name {name!r} must not contain a path separator")
        if name in seen:
            raise ValueError(f"two images share the name {name!r}; one would overwrite the other")
        seen.add(name)


def write_clips(
    out_dir: str | Path,
    names: Sequence[str],
    clips: np.ndarray,
    images: torch.Tensor,
    sample_rate: int,
) -> list[Path]:
    """Write ``<name>.wav`` and ``<name>.png`` (the normalised image, shown) per clip.

    Every file is written atomically, so an error leaves complete files only.

    Returns
    -------
    list of Path
        The WAV files.
    """
    from PIL import Image

    from conchshell.data.audio import save_audio
    from conchshell.data.images import denormalize
    from conchshell.io import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, clip, image in zip(names, clips, images, strict=True):
        wav = out / f"{name}.wav"
        save_audio(wav, clip, sample_rate)
        pixels = (denormalize(image).clamp(0, 1) * 255).round().byte()
        picture = Image.fromarray(pixels.permute(1, 2, 0).numpy())
        with atomic_write(out / f"{name}.png") as handle:
            picture.save(handle, format="PNG")
        written.append(wav)
    return written


def write_midi_files(
    out_dir: str | Path, names: Sequence[str], clips: np.ndarray, sample_rate: int
) -> list[Path]:
    """Write ``<name>.mid``, the transcription of each clip, atomically.

    Parameters
    ----------
    out_dir : str or Path
        An existing folder.
    names : sequence of str
        File stem per clip.
    clips : numpy.ndarray of shape (n, samples)
        Mono clips at ``sample_rate``.
    sample_rate : int
        Rate of ``clips`` in Hz.

    Returns
    -------
    list of Path
        The MIDI files, one per clip, in order.
    """
    from conchshell.evaluation.transcription import write_midi

    out = Path(out_dir)
    return [
        write_midi(clip, out / f"{name}.mid", sample_rate=sample_rate)
        for name, clip in zip(names, clips, strict=True)
    ]


def expand_images(images: object) -> list[object]:
    """A path, a sequence or a tensor batch as a list of items; folders become their images.

    Parameters
    ----------
    images : path, folder, sequence or torch.Tensor
        One picture or folder, a sequence of pictures and folders, or a batch.

    Returns
    -------
    list
        One item per picture; a folder gives its ``.jpg``, ``.jpeg`` and
        ``.png`` files in name order.

    Raises
    ------
    TypeError
        When ``images`` is bytes.
    ValueError
        When a folder holds no image.
    """
    from conchshell.data.bop import IMAGE_SUFFIXES

    if isinstance(images, bytes):
        raise TypeError(f"images must be paths, images or a tensor, got bytes: {images!r}")
    if isinstance(images, torch.Tensor):
        return list(images.unbind(0)) if images.ndim == 4 else [images]
    # One path is one picture (or one folder), not a sequence of characters.
    items = [images] if isinstance(images, str | Path) else list(images)
    out: list[object] = []
    for item in items:
        if not (isinstance(item, str | Path) and Path(item).is_dir()):
            out.append(item)
            continue
        found = sorted(p for p in Path(item).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"folder {item} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        out += [str(p) for p in found]
    return out


def check_targets(
    out_dir: str | Path,
    names: Sequence[str],
    items: Sequence[object],
    overwrite: bool,
    suffixes: Sequence[str] = (".wav", ".png"),
) -> None:
    """Refuse to write over an input image, or over any file unless ``overwrite``.

    Parameters
    ----------
    out_dir : str or Path
        The output folder (it may not exist yet).
    names : sequence of str
        File stem per item.
    items : sequence
        The inputs; those that are paths must not be written over.
    overwrite : bool
        Allow replacing existing files.
    suffixes : sequence of str, default=(".wav", ".png")
        The files written per name, ``<name><suffix>``.
    """
    out = check_path(out_dir, "out_dir")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {out} is a file, not a folder")
    inputs = {Path(x).resolve() for x in items if isinstance(x, str | Path)}
    for name in names:
        for target in (out / f"{name}{suffix}" for suffix in suffixes):
            if target.resolve() in inputs:
                raise ValueError(
                    f"writing {target} would overwrite the input image {target}; "
                    "choose another output folder or other names"
                )
            if target.exists() and not overwrite:
                raise FileExistsError(
                    f"{target} already exists; pass overwrite=True (conchshell predict "
                    "--overwrite) to replace it"
                )
