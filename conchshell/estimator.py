"""``ImageToMusic``: the whole ConchShell system as one scikit-learn estimator.

The estimator holds its components as parameters (each itself an estimator),
clones them in :meth:`ImageToMusic.fit`, and trains in three stages:

1. the image encoder as a scene classifier (skipped when already fitted or
   given weights);
2. the audio codec (skipped when it has weights or is fitted);
3. the GAN: discriminator and generator steps on the codec's latents of one
   level, with the terms of the ``loss`` component.

While the image side is frozen, each image's feature vector is computed once
and reused for every GAN step.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from conchshell import distributed
from conchshell._validation import check_categories
from conchshell._version import __version__
from conchshell.base import resolve_device, seed_from_random_state
from conchshell.io import _flatten as flatten
from conchshell.io import atomic_write, load_tree, save_tree
from conchshell.levels import SAMPLE_RATE, level_index, level_name

__all__ = ["ImageToMusic"]

_COMPONENTS = (
    "encoder",
    "forger",
    "extractor",
    "codec",
    "generator",
    "discriminator",
    "loss",
    "denoiser",
)
_MODEL_FILE = "model.safetensors"
_PARAMS_FILE = "params.json"
_CKPT_PREFIX = "step-"


def _default(name: str, level: str) -> BaseEstimator | None:
    """Paper-scale default of a component slot."""
    if name == "encoder":
        from conchshell.image.tcnn import TCNNEncoder

        return TCNNEncoder()
    if name == "forger":
        from conchshell.image.forging import TemporalForger

        return TemporalForger()
    if name == "extractor":
        from conchshell.video.i3d import I3DExtractor

        return I3DExtractor()
    if name == "codec":
        from conchshell.codec.jukebox import JukeboxCodec

        return JukeboxCodec.paper()
    if name == "generator":
        from conchshell.gan.generator import Generator

        return Generator(level=level)
    if name == "discriminator":
        from conchshell.gan.discriminator import MultiScaleDiscriminator

        return MultiScaleDiscriminator()
    if name == "loss":
        from conchshell.gan.losses import ConchShellLoss

        return ConchShellLoss()
    return None  # denoiser: none unless asked for


def _has_param(est: BaseEstimator, name: str) -> bool:
    return name in est.get_params(deep=False)


def _is_fitted(est: BaseEstimator) -> bool:
    try:
        check_is_fitted(est)
    except Exception:
        return False
    return True


class ImageToMusic(BaseEstimator):
    """Generate an 8-second piano piece for a picture (the ConchShell model).

    Parameters
    ----------
    encoder : estimator, default=None
        Image encoder giving per-block feature maps; ``None`` builds
        ``TCNNEncoder()`` (TCNN-6).
    forger : estimator, default=None
        Turns the feature maps into a video; ``None`` builds ``TemporalForger()``.
    extractor : estimator, default=None
        Video feature extractor; ``None`` builds ``I3DExtractor()`` (2048-d).
    codec : estimator, default=None
        Audio codec; ``None`` builds ``JukeboxCodec.paper()``.
    generator : estimator, default=None
        Latent generator; ``None`` builds ``Generator(level=level)``.
    discriminator : estimator, default=None
        ``None`` builds ``MultiScaleDiscriminator()``.
    loss : estimator, default=None
        Weighted loss terms; ``None`` builds ``ConchShellLoss()`` (the paper's
        weights 0.5 adv + 3 FM + 40 wave + 15 mel).
    denoiser : transformer, default=None
        Optional post-processing of decoded audio (e.g.
        :class:`conchshell.postprocess.SpectralGate`).
    level : {"deep", "low", "high"}, default="deep"
        Jukebox level whose latents the generator predicts. Said once here:
        it sets the generator's and discriminator's sequence length, and a
        generator configured for another level is an error.
    duration : float, default=8.0
        Seconds of music per picture (the paper's 8 s). Shorter clips train
        faster; the generator's output length follows it.
    batch_size : int, default=2
        Clips per GAN step (per process under ``torchrun``), as in the paper.
    max_steps : int, default=100_000
        GAN steps in total. The paper does not give its count; its
        schedule (decay every 20k steps) implies many tens of thousands.
    max_time : float or None, default=None
        Wall-clock budget of the GAN stage in seconds: training stops (and
        checkpoints) at the first step boundary past it, even before
        ``max_steps``. Under ``torchrun`` rank 0's clock decides for all.
    lr_g, lr_d : float, default=1e-5
        AdamW learning rates of generator and discriminator.
    betas : tuple of float, default=(0.5, 0.999)
        AdamW betas.
    weight_decay : float, default=1e-5
        AdamW weight decay (the authors' code; the paper is silent).
    lr_step : int, default=20_000
        Steps between learning-rate decays.
    lr_gamma_g, lr_gamma_d : float, default=0.8, 0.9
        Decay factors of the generator and discriminator learning rates.
    warm_start_steps : int, default=0
        Generator regression steps on the target latents before the GAN
        (``Generator.fit``); 0 trains adversarially from the start, as the paper.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of :meth:`predict`. ``"bfloat16"`` autocasts matrix products
        and convolutions (about 3x faster on CPUs with bf16 support).
    checkpoint_dir : path, default=None
        Where checkpoints and ``history.json`` are written; needed for
        ``fit(..., resume=True)``.
    checkpoint_every : int, default=1000
        GAN steps between checkpoints.
    keep_checkpoints : int, default=2
        How many recent checkpoints to keep (older ones are deleted, so a
        damaged latest one still has a predecessor to fall back on).
    max_bad_steps : int, default=10
        A GAN step whose loss or gradient is not finite is skipped (logged as
        ``skipped_d`` / ``skipped_g`` in ``history_``). After this many
        consecutive such steps, training rolls back to the newest readable
        checkpoint (weights, optimisers, schedulers; the data stream goes on,
        so the retry sees other batches) and the next step's record carries a
        ``rollback`` entry; without a checkpoint to return to, or when a
        rollback to the same checkpoint fails three times, ``fit`` raises
        ``RuntimeError``. 0 never rolls back.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to train and predict. Components left at ``"auto"`` follow it.
    random_state : int, RandomState or None, default=None
        Seeds every component left without one, the data order and the
        augmentation, so a fit is reproducible on the CPU.
    verbose : int, default=1
        0 is silent, 1 shows progress bars.

    Attributes
    ----------
    encoder_, forger_, extractor_, codec_, generator_, discriminator_, loss_ : estimator
        The fitted clones of the components.
    denoiser_ : transformer or None
    categories_ : list of str
        Category names, index = the generator's category id.
    level_ : int
        The Jukebox level index the model was fitted for.
    history_ : list of dict
        One entry per GAN step: each loss term, learning rates and time.
    category_model_ : LogisticRegression or None
        Predicts a category from the extractor's features when the encoder
        cannot classify (e.g. VGG).

    Examples
    --------
    >>> from conchshell import presets
    >>> model = presets.conchshell(scale="tiny", random_state=0)  # doctest: +SKIP
    >>> model.fit(dataset).predict(images).shape  # doctest: +SKIP
    (2, 128000)
    """

    def __init__(
        self,
        encoder: BaseEstimator | None = None,
        forger: BaseEstimator | None = None,
        extractor: BaseEstimator | None = None,
        codec: BaseEstimator | None = None,
        generator: BaseEstimator | None = None,
        discriminator: BaseEstimator | None = None,
        loss: BaseEstimator | None = None,
        denoiser: BaseEstimator | None = None,
        level: str = "deep",
        duration: float = 8.0,
        batch_size: int = 2,
        max_steps: int = 100_000,
        max_time: float | None = None,
        lr_g: float = 1e-5,
        lr_d: float = 1e-5,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-5,
        lr_step: int = 20_000,
        lr_gamma_g: float = 0.8,
        lr_gamma_d: float = 0.9,
        warm_start_steps: int = 0,
        precision: str = "float32",
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1000,
        keep_checkpoints: int = 2,
        max_bad_steps: int = 10,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 1,
    ) -> None:
        self.encoder = encoder
        self.forger = forger
        self.extractor = extractor
        self.codec = codec
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.denoiser = denoiser
        self.level = level
        self.duration = duration
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.max_time = max_time
        self.lr_g = lr_g
        self.lr_d = lr_d
        self.betas = betas
        self.weight_decay = weight_decay
        self.lr_step = lr_step
        self.lr_gamma_g = lr_gamma_g
        self.lr_gamma_d = lr_gamma_d
        self.warm_start_steps = warm_start_steps
        self.precision = precision
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.max_bad_steps = max_bad_steps
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @property
    def _n_samples(self) -> int:
        return round(float(self.duration) * SAMPLE_RATE)

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        level_index(self.level)
        for name in ("batch_size", "checkpoint_every", "keep_checkpoints", "lr_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_steps", "warm_start_steps", "max_bad_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("lr_g", "lr_d", "lr_gamma_g", "lr_gamma_d"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.duration, int | float) or not 0 < self.duration <= 60:
            raise ValueError(f"duration must be in (0, 60] seconds, got {self.duration!r}")
        if self.max_time is not None and (
            not isinstance(self.max_time, int | float) or not self.max_time > 0
        ):
            raise ValueError(f"max_time must be None or a positive number, got {self.max_time!r}")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for name in _COMPONENTS:
            comp = getattr(self, name)
            if comp is not None and not hasattr(comp, "get_params"):
                raise TypeError(
                    f"{name} must be a conchshell component (a scikit-learn estimator), "
                    f"got {type(comp).__name__}; wrap torch modules in a component"
                )

    def _component(self, name: str, seed: int, device: str) -> BaseEstimator | None:
        given = getattr(self, name)
        comp = clone(given) if given is not None else _default(name, level_name(self.level))
        if comp is None:
            return None
        updates: dict[str, Any] = {}
        if _has_param(comp, "device") and comp.get_params()["device"] in (None, "auto"):
            updates["device"] = device
        if _has_param(comp, "random_state") and comp.get_params()["random_state"] is None:
            # Each slot gets its own stream derived from the estimator's seed.
            updates["random_state"] = (seed + 1009 * (_COMPONENTS.index(name) + 1)) % 2**31
        if _has_param(comp, "verbose"):
            updates["verbose"] = self.verbose
        return comp.set_params(**updates) if updates else comp

    def _sync_generator(
        self,
        generator: BaseEstimator,
        in_features: int,
        n_frames: int,
        emb_width: int,
        n_categories: int,
    ) -> None:
        """Set the sizes the other components imply; refuse contradictions."""
        params = generator.get_params(deep=False)
        level = level_name(self.level)
        if params.get("level") is not None and level_name(params["level"]) != level:
            raise ValueError(
                f"the generator is configured for level {params['level']!r} but the estimator "
                f"for level {self.level!r}; set the level once, on the estimator"
            )
        wanted = {
            "level": level,
            "in_features": in_features,
            "n_frames": n_frames,
            "emb_width": emb_width,
            "n_categories": n_categories,
        }
        for key in ("in_features", "emb_width", "n_categories"):
            if key in params and params[key] is not None and params[key] != wanted[key]:
                raise ValueError(
                    f"generator {key}={params[key]} contradicts the other components, which "
                    f"give {wanted[key]}; leave it unset (None) or make them agree"
                )
        generator.set_params(**{k: v for k, v in wanted.items() if k in params})

    # ------------------------------------------------------------------- data
    @staticmethod
    def _as_dataset(X: object, audio: object, categories: object) -> Any:
        from conchshell.datasets import as_dataset

        return as_dataset(X, audio=audio, categories=categories)

    def _features(self, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Image batch -> extractor features, in chunks, without gradients."""
        out = []
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            out.append(self._features_of(chunk).cpu())
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

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        X: object,
        y: object = None,
        *,
        audio: object = None,
        categories: object = None,
        resume: bool = False,
    ) -> ImageToMusic:
        """Train the encoder, the codec and the GAN.

        Parameters
        ----------
        X : dataset or image batch
            A dataset from :func:`conchshell.datasets.load_bop` or
            :func:`~conchshell.datasets.load_pairs` (items ``(image, waveform,
            category)``), or images (paths, PIL images, arrays or a
            ``(n, 3, 224, 224)`` tensor) together with ``audio`` and
            ``categories``.
        y : ignored
            Present for scikit-learn compatibility; pass ``categories``.
        audio : array-like of shape (n, n_samples), optional
            16 kHz clips paired with the images, when ``X`` is not a dataset.
        categories : array-like of shape (n,), optional
            Category ids of the images, when ``X`` is not a dataset.
        resume : bool, default=False
            Continue from the newest readable checkpoint in ``checkpoint_dir``.

        Returns
        -------
        self
        """
        self._check_params()
        if resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir to be set")
        dataset = self._as_dataset(X, audio, categories)
        device = resolve_device(self.device)
        dist = distributed.context(device)
        device = dist.device(device)
        seed = seed_from_random_state(self.random_state)
        ckpt_dir = Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        if ckpt_dir is not None and dist.is_main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            # A process killed while writing leaves its temporary file: clear it.
            for stale in ckpt_dir.glob(".*.tmp") if resume else ():
                stale.unlink(missing_ok=True)
        try:
            self._fit(dataset, device, dist, seed, ckpt_dir, resume)
        finally:
            dist.close()
        return self

    def _fit(
        self,
        dataset: Any,
        device: torch.device,
        dist: Any,
        seed: int,
        ckpt_dir: Path | None,
        resume: bool,
    ) -> None:
        self._build_components(seed, str(device), list(dataset.categories))
        stages = ckpt_dir / "stages.safetensors" if ckpt_dir is not None else None
        restored = resume and stages is not None and stages.is_file()

        images = dataset.stack_images()
        cats = torch.as_tensor(dataset.category_ids, dtype=torch.long)
        if restored:
            self._load_stages(stages)
        else:
            self._fit_image_side(images, cats, _image_groups(dataset))
            self._fit_codec(dataset)
        self._build_rest(images[:1])
        features = self._cached_features(dataset, images)
        self.category_model_ = self._fit_category_model(features, cats)
        self._build_gan(features.shape[1])
        # Deterministic, so a resumed fit redoes it and then loads the checkpoint.
        if self.warm_start_steps:
            self._warm_start(dataset, features, cats)
        if stages is not None and dist.is_main and not restored:
            self._save_stages(stages)
        dist.barrier()
        self._train_gan(dataset, features, cats, device, dist, seed, ckpt_dir, resume)

    def _build_components(self, seed: int, device: str, categories: list[str]) -> None:
        self.level_ = level_index(self.level)
        self.categories_ = list(categories)
        self.history_: list[dict[str, Any]] = []
        for name in _COMPONENTS:
            setattr(self, f"{name}_", self._component(name, seed, device))
        enc = self.encoder_
        if _has_param(enc, "n_categories") and not _is_fitted(enc):
            enc.set_params(n_categories=len(categories))

    def _build_rest(self, example_images: torch.Tensor) -> None:
        """Build what the fitting stages did not: forger, extractor, denoiser."""
        for comp in (self.encoder_, self.extractor_, self.codec_):
            if not hasattr(comp, "module_"):
                comp.initialize()
        self.forger_.fit(example_images)
        if self.denoiser_ is not None:
            self.denoiser_.fit()

    def _build_gan(self, in_features: int) -> None:
        n_frames = self.codec_.latent_length(self._n_samples, self.level_)
        emb_width = self.codec_.get_params()["emb_width"]
        self._sync_generator(
            self.generator_, in_features, n_frames, emb_width, len(self.categories_)
        )
        for comp in (self.generator_, self.discriminator_):
            if not hasattr(comp, "module_"):
                comp.initialize()

    def _warm_start(self, dataset: Any, features: torch.Tensor, cats: torch.Tensor) -> None:
        """Regress the generator on the codec's latents before adversarial training."""
        with torch.no_grad():
            audio = _fit_length(dataset.stack_audio(), self._n_samples)
            targets = torch.cat(
                [
                    self.codec_.transform(chunk.to(self.codec_.device_), level=self.level_).cpu()
                    for chunk in audio.split(8)
                ]
            )
        self.generator_.set_params(max_steps=self.warm_start_steps, warm_start=True)
        self.generator_.fit(features, targets, cats)

    def initialize(self, categories: Sequence[str] | None = None) -> ImageToMusic:
        """Build every component untrained, ready to predict (for timing and inspection).

        Parameters
        ----------
        categories : sequence of str, optional
            Category names; default the six BOP categories.

        Returns
        -------
        self
            With the fitted attributes set, so :meth:`predict` runs; the
            music is noise until the model is trained.
        """
        from conchshell.datasets import BOP_CATEGORIES

        self._check_params()
        device = resolve_device(self.device)
        seed = seed_from_random_state(self.random_state)
        self._build_components(seed, str(device), list(categories or BOP_CATEGORIES))
        self._build_rest(torch.zeros(1, 3, 224, 224))
        self.category_model_ = None
        n_features = getattr(self.extractor_, "n_features_out_", None)
        if n_features is None:
            video = self.forger_.transform(self.encoder_.transform(torch.zeros(1, 3, 224, 224)))
            n_features = int(self.extractor_.transform(video).shape[1])
        self._build_gan(int(n_features))
        return self

    def _fit_image_side(
        self, images: torch.Tensor, cats: torch.Tensor, groups: np.ndarray | None
    ) -> None:
        enc = self.encoder_
        has_weights = _has_param(enc, "weights") and enc.get_params()["weights"] is not None
        # Pretrained or feature-only encoders (VGG) are used as they are.
        if _is_fitted(enc) or has_weights or not hasattr(enc, "predict"):
            return
        if groups is not None and "groups" in inspect.signature(enc.fit).parameters:
            enc.fit(images, cats, groups=groups)
        else:
            enc.fit(images, cats)

    def _fit_codec(self, dataset: Any) -> None:
        codec = self.codec_
        if codec.get_params().get("weights") is None and not _is_fitted(codec):
            codec.fit(_fit_length(dataset.stack_audio(), self._n_samples))

    def _cached_features(self, dataset: Any, images: torch.Tensor) -> torch.Tensor:
        """2048-d (or extractor-sized) features, once per image."""
        return self._features(images)

    def _fit_category_model(self, features: torch.Tensor, cats: torch.Tensor) -> Any:
        if hasattr(self.encoder_, "predict") and _is_fitted(self.encoder_):
            return None
        if len(torch.unique(cats)) < 2:
            return None
        model = LogisticRegression(max_iter=2000)
        return model.fit(features.double().numpy(), cats.numpy())

    # ------------------------------------------------------------------- GAN
    def _optimizers(self, g_module: torch.nn.Module, d_module: torch.nn.Module) -> tuple:
        betas = tuple(float(b) for b in self.betas)
        opt_g = torch.optim.AdamW(
            g_module.parameters(), lr=self.lr_g, betas=betas, weight_decay=self.weight_decay
        )
        opt_d = torch.optim.AdamW(
            d_module.parameters(), lr=self.lr_d, betas=betas, weight_decay=self.weight_decay
        )
        sched_g = torch.optim.lr_scheduler.StepLR(opt_g, self.lr_step, gamma=self.lr_gamma_g)
        sched_d = torch.optim.lr_scheduler.StepLR(opt_d, self.lr_step, gamma=self.lr_gamma_d)
        return opt_g, opt_d, sched_g, sched_d

    def _train_gan(
        self,
        dataset: Any,
        features: torch.Tensor,
        cats: torch.Tensor,
        device: torch.device,
        dist: Any,
        seed: int,
        ckpt_dir: Path | None,
        resume: bool,
    ) -> None:
        level = self.level_
        codec = self.codec_
        codec.freeze()
        gen = self.generator_.module_.to(device)
        disc = self.discriminator_.module_.to(device)
        gen.train()
        disc.train()
        g_model = dist.wrap(gen, device)
        d_model = dist.wrap(disc, device)
        opt_g, opt_d, sched_g, sched_d = self._optimizers(gen, disc)
        loss = self.loss_
        order = torch.Generator().manual_seed(seed)
        aug = np.random.default_rng(seed)
        step = 0
        queue: list[int] = []  # what is left of the current epoch's permutation
        trainable = (gen, disc, opt_g, opt_d, sched_g, sched_d)
        if resume and ckpt_dir is not None:
            state = self._latest_checkpoint(ckpt_dir)
            if state is not None:
                try:
                    self._restore_training(state, *trainable)
                except (RuntimeError, KeyError, ValueError) as exc:
                    raise _mismatch(
                        ckpt_dir / f"{_CKPT_PREFIX}{state['step']:09d}.safetensors", exc
                    ) from exc
                order.set_state(state["order_rng"])
                aug.bit_generator.state = json.loads(state["aug_rng"])
                torch.set_rng_state(state["torch_rng"])
                step = int(state["step"])
                queue = list(state["queue"])
        bad = 0  # consecutive steps with a skipped (non-finite) update
        due = False  # a checkpoint is due but waits for a step without faults
        rollbacks: dict[int, int] = {}
        pending: dict[str, Any] | None = None
        n = len(features)
        global_batch = self.batch_size * dist.world_size
        bar = tqdm(
            total=self.max_steps,
            initial=step,
            desc="GAN",
            disable=not (self.verbose and dist.is_main),
        )
        start = time.perf_counter()
        while step < self.max_steps:
            while len(queue) < global_batch:
                queue.extend(torch.randperm(n, generator=order).tolist())
            batch, queue = queue[:global_batch], queue[global_batch:]
            mine = batch[dist.rank :: dist.world_size]
            idx = torch.as_tensor(mine)
            feats = features[idx].to(device)
            cat = cats[idx].to(device)
            audio = _fit_length(dataset.training_audio(mine, aug), self._n_samples).to(device)
            record = self._gan_step(
                g_model, d_model, opt_g, opt_d, codec, loss, feats, cat, audio, level
            )
            step += 1
            sched_g.step()
            sched_d.step()
            record.update(
                step=step,
                lr_g=sched_g.get_last_lr()[0],
                lr_d=sched_d.get_last_lr()[0],
                time=round(time.perf_counter() - start, 3),
            )
            if pending is not None:
                record["rollback"], pending = pending, None
            self.history_.append(record)
            bad = bad + 1 if ("skipped_d" in record or "skipped_g" in record) else 0
            bar.update(1)
            bar.set_postfix(
                g=f"{record.get('g_total', float('nan')):.3g}",
                d=f"{record.get('d_total', float('nan')):.3g}",
            )
            last = step == self.max_steps or self._out_of_time(start, dist)
            if self.max_bad_steps and bad >= self.max_bad_steps and not last:
                pending = self._roll_back(ckpt_dir, step, bad, rollbacks, trainable)
                step, bad, due = pending["to_step"], 0, False
                bar.n = step
                bar.refresh()
                continue
            due = due or step % self.checkpoint_every == 0
            # A checkpoint never captures a faulty step, so a rollback returns to a sound one.
            if ckpt_dir is not None and ((due and bad == 0) or last):
                due = False
                if dist.is_main:
                    self._write_checkpoint(
                        ckpt_dir, step, gen, disc, opt_g, opt_d, sched_g, sched_d, order, aug, queue
                    )
                dist.barrier()
            if last:
                break
        bar.close()
        gen.eval()
        disc.eval()

    def _restore_training(
        self,
        state: dict[str, Any],
        gen: torch.nn.Module,
        disc: torch.nn.Module,
        opt_g: Any,
        opt_d: Any,
        sched_g: Any,
        sched_d: Any,
    ) -> None:
        gen.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sched_g.load_state_dict(state["sched_g"])
        sched_d.load_state_dict(state["sched_d"])
        self.history_ = list(state["history"])

    def _roll_back(
        self,
        ckpt_dir: Path | None,
        step: int,
        bad: int,
        rollbacks: dict[int, int],
        trainable: tuple,
    ) -> dict[str, Any]:
        """Return to the newest checkpoint after ``bad`` consecutive faulty steps."""
        state = self._latest_checkpoint(ckpt_dir) if ckpt_dir is not None else None
        if state is None:
            raise RuntimeError(
                f"training diverged: {bad} consecutive steps up to step {step} had a non-finite "
                "loss or gradient, and there is no checkpoint to roll back to (set "
                "checkpoint_dir, or lower lr_g/lr_d)"
            )
        target = int(state["step"])
        rollbacks[target] = rollbacks.get(target, 0) + 1
        if rollbacks[target] > 3:
            raise RuntimeError(
                f"training diverged: rolled back to the checkpoint of step {target} three times "
                f"and it failed again ({bad} consecutive faulty steps up to step {step}); "
                "lower lr_g/lr_d or check the data for NaN/Inf"
            )
        self._restore_training(state, *trainable)
        warnings.warn(
            f"{bad} consecutive non-finite steps up to step {step}: rolled back to the "
            f"checkpoint of step {target}",
            RuntimeWarning,
            stacklevel=4,
        )
        return {"from_step": step, "to_step": target, "bad_steps": bad}

    def _out_of_time(self, start: float, dist: Any) -> bool:
        if self.max_time is None:
            return False
        over = torch.tensor(float(time.perf_counter() - start > self.max_time))
        if dist.enabled:
            torch.distributed.broadcast(over, src=0)  # every rank stops at the same step
        return bool(over.item())

    def _gan_step(
        self,
        g_model: torch.nn.Module,
        d_model: torch.nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        codec: Any,
        loss: Any,
        feats: torch.Tensor,
        cat: torch.Tensor,
        audio: torch.Tensor,
        level: int,
    ) -> dict[str, Any]:
        with torch.no_grad():
            real = codec.transform(audio, level=level)
        fake = g_model(feats, cat)
        # Discriminator: hinge on real latents vs detached fakes, in one forward
        # pass (DDP allows one forward per backward).
        both = d_model(torch.cat([real, fake.detach()]))
        n = real.shape[0]
        d_real = [[t[:n] for t in scale] for scale in both]
        d_fake = [[t[n:] for t in scale] for scale in both]
        d_terms = loss.discriminator(d_real, d_fake)
        record: dict[str, Any] = {
            ("d_total" if k == "total" else k): float(v.detach()) for k, v in d_terms.items()
        }
        opt_d.zero_grad(set_to_none=True)
        _guarded_step(d_terms["total"], d_model, opt_d, record, "skipped_d")
        if not _finite_everywhere(fake):
            # The codec refuses non-finite latents: skip the generator's update instead.
            record["skipped_g"] = "non-finite output"
            opt_d.zero_grad(set_to_none=True)
            return record
        # Generator: adversarial + feature matching on latents, and the
        # wave/mel terms through straight-through quantisation and the frozen
        # (but differentiable) decoder, so they really reach the generator.
        fake_out = d_model(fake)
        with torch.no_grad():
            real_out = d_model(real)
            target_q, _ = codec.quantize(real, level=level)
        fake_q, _ = codec.quantize(fake, level=level)
        fake_audio = codec.decode(fake_q, level=level)[..., : audio.shape[-1]]
        g_terms = loss.generator(
            fake_outputs=fake_out,
            real_outputs=real_out,
            fake_audio=fake_audio,
            real_audio=audio,
            pred_latents=fake,
            target_latents=real,
            quantized_target=target_q,
        )
        record.update({f"g_{k}": float(v.detach()) for k, v in g_terms.items()})
        opt_g.zero_grad(set_to_none=True)
        _guarded_step(g_terms["total"], g_model, opt_g, record, "skipped_g")
        opt_d.zero_grad(set_to_none=True)  # the G step left gradients in D
        return record

    # ------------------------------------------------------------ checkpoints
    def _stage_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name in ("encoder", "extractor", "codec"):
            comp = getattr(self, f"{name}_")
            if hasattr(comp, "module_"):
                state[name] = comp.module_.state_dict()
            state[f"{name}_attrs"] = _fitted_attrs(comp)
        return state

    def _save_stages(self, path: Path) -> None:
        save_tree(path, self._stage_state())

    def _load_stages(self, path: Path) -> None:
        state = load_tree(path)
        for name in ("encoder", "extractor", "codec"):
            comp = getattr(self, f"{name}_")
            comp.initialize()
            if name in state:
                try:
                    comp.module_.load_state_dict(state[name])
                except RuntimeError as exc:
                    raise _mismatch(path, exc) from exc
            _restore_attrs(comp, state.get(f"{name}_attrs", {}))

    def _write_checkpoint(
        self,
        ckpt_dir: Path,
        step: int,
        gen: torch.nn.Module,
        disc: torch.nn.Module,
        opt_g: Any,
        opt_d: Any,
        sched_g: Any,
        sched_d: Any,
        order: torch.Generator,
        aug: np.random.Generator,
        queue: list[int],
    ) -> None:
        state = {
            "version": __version__,
            "step": step,
            "generator": gen.state_dict(),
            "discriminator": disc.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "sched_g": sched_g.state_dict(),
            "sched_d": sched_d.state_dict(),
            "order_rng": order.get_state(),
            "aug_rng": json.dumps(aug.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "queue": list(queue),
            "history": self.history_,
        }
        save_tree(ckpt_dir / f"{_CKPT_PREFIX}{step:09d}.safetensors", state)
        with atomic_write(ckpt_dir / "history.json", "w") as handle:
            json.dump(self.history_, handle)
        for old in sorted(ckpt_dir.glob(f"{_CKPT_PREFIX}*.safetensors"))[: -self.keep_checkpoints]:
            old.unlink(missing_ok=True)

    def _latest_checkpoint(self, ckpt_dir: Path) -> dict[str, Any] | None:
        for path in sorted(ckpt_dir.glob(f"{_CKPT_PREFIX}*.safetensors"), reverse=True):
            try:
                return load_tree(path)
            except ValueError as exc:
                warnings.warn(
                    f"checkpoint {path} is damaged ({exc}); falling back to the previous one",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return None

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
        batch = to_image_batch(images)
        batch = batch.to(self.generator_.device_)
        with torch.inference_mode():
            # The encoder classifies alone; only the VGG path needs the extractor's features.
            feats = None if self.category_model_ is None else self._features(batch)
            return self._predict_categories(batch, feats).numpy()

    def predict_latents(self, images: object, categories: object = None) -> torch.Tensor:
        """Continuous latents the generator predicts, shape (n, emb_width, T).

        Parameters
        ----------
        images : path, PIL image, array or tensor, or a sequence of them
            The pictures, as :meth:`predict` takes them.
        categories : array-like of int or str, optional
            The category fed to the generator; by default :meth:`predict_categories`.

        Returns
        -------
        torch.Tensor of shape (n, emb_width, T)
            Latents at the model's level, before quantisation and decoding.
        """
        from conchshell.data.images import to_image_batch

        self._check_fitted()
        batch = to_image_batch(images)
        device = self.generator_.device_
        with torch.inference_mode():
            if categories is None:
                feats, cats = self._features_and_categories(batch.to(device))
            else:
                feats = self._features(batch.to(device))
                cats = check_categories(
                    categories, n_samples=batch.shape[0], n_categories=len(self.categories_)
                )
            return torch.as_tensor(self.generator_.transform(feats, cats))

    def predict(
        self, images: object, categories: object = None, batch_size: int | None = None
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
        out = []
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            cats = None if categories is None else categories[start : start + step]
            with self._autocast():
                latents = self.predict_latents(chunk, cats)
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
    ) -> list[Path]:
        """Write a 16 kHz WAV per image (and a copy of the image) into ``out_dir``.

        The folder then has the layout the MOS app serves: ``<name>.wav``
        beside ``<name>.png``.

        Parameters
        ----------
        images : sequence of paths, PIL images, arrays, or a tensor ``(n, 3, 224, 224)``
            The pictures, as :meth:`predict` takes them.
        out_dir : str or Path
            Destination folder; created if missing.
        names : sequence of str, optional
            File stem per image; by default each path's stem, or ``item0000``, ... for
            in-memory images.
        categories : array-like of int or str, optional
            The category each clip is conditioned on, as in :meth:`predict`.

        Returns
        -------
        list of Path
            The WAV files written.

        Raises
        ------
        ValueError
            When a name is not a plain file name (empty, a path, ``..``) or
            two images share a name (one would overwrite the other).
        OSError
            When a file cannot be written (full disk, missing rights), naming
            it. Every file is written atomically: the ones written before the
            error are complete, and no partial file is left.
        """
        from PIL import Image

        from conchshell.data.audio import save_audio
        from conchshell.data.images import denormalize, to_image_batch

        out = Path(out_dir)
        items = list(images) if not isinstance(images, torch.Tensor) else list(images.unbind(0))
        if names is None:
            names = [
                Path(str(x)).stem if isinstance(x, str | Path) else f"item{i:04d}"
                for i, x in enumerate(items)
            ]
        if len(names) != len(items):
            raise ValueError(f"{len(names)} names given for {len(items)} images")
        _check_file_names(names)
        clips = self.predict(items, categories=categories)
        batch = to_image_batch(items)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, clip, image in zip(names, clips, batch, strict=True):
            wav = out / f"{name}.wav"
            save_audio(wav, clip, SAMPLE_RATE)
            pixels = (denormalize(image).clamp(0, 1) * 255).round().byte()
            picture = Image.fromarray(pixels.permute(1, 2, 0).numpy())
            with atomic_write(out / f"{name}.png") as handle:
                picture.save(handle, format="PNG")
            written.append(wav)
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
        reference = _fit_length(reference, self._n_samples).numpy()
        return nanmean_count(pesq_wb(reference, generated))[0]

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Save the fitted model to a folder: safetensors weights + JSON parameters.

        Loading it with :meth:`load` executes no pickle. A failed save (an
        unwritable folder, a full disk) raises ``OSError`` naming the file and
        removes what it had written, so no partial model is left.

        Parameters
        ----------
        path : str or Path
            The folder to write (created if missing). Under ``torchrun`` only rank 0
            writes.

        Returns
        -------
        Path
            The folder.
        """
        self._check_fitted()
        folder = Path(path)
        if int(os.environ.get("RANK", "0")) != 0:
            return folder  # under torchrun only rank 0 writes
        folder.mkdir(parents=True, exist_ok=True)
        tree: dict[str, Any] = {}
        for name in _COMPONENTS:
            comp = getattr(self, f"{name}_")
            if comp is not None and hasattr(comp, "module_"):
                tree[name] = comp.module_.state_dict()
            if comp is not None:
                tree[f"{name}_attrs"] = _fitted_attrs(comp)
        if self.category_model_ is not None:
            tree["category_model"] = {
                "coef": self.category_model_.coef_,
                "intercept": self.category_model_.intercept_,
                "classes": self.category_model_.classes_,
            }
        meta = {
            "library": "conchshell",
            "version": __version__,
            "estimator": _describe(self, fitted=True),
            "categories": self.categories_,
            "level": self.level_,
        }
        written: list[Path] = []
        try:
            save_tree(folder / _MODEL_FILE, tree)
            written.append(folder / _MODEL_FILE)
            with atomic_write(folder / "history.json", "w") as handle:
                json.dump(self.history_, handle)
            written.append(folder / "history.json")
            # params.json last: without it a folder holds no model, so a failed save
            # (a full disk) leaves none half-written.
            with atomic_write(folder / _PARAMS_FILE, "w") as handle:
                json.dump(meta, handle, indent=2)
        except BaseException:
            for done in written:
                done.unlink(missing_ok=True)
            raise
        return folder

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> ImageToMusic:
        """Load a model written by :meth:`save`. Runs no code from the files.

        Parameters
        ----------
        path : str or Path
            The folder :meth:`save` wrote.
        device : str, optional
            Where to put the model (e.g. ``"cpu"``, ``"cuda"``); by default the
            components' saved ``device`` setting.

        Returns
        -------
        ImageToMusic
            The fitted estimator.

        Raises
        ------
        FileNotFoundError
            When the folder holds no model.
        ValueError
            When its files are damaged, tampered with or do not fit together
            (e.g. weights of another size), naming the folder.
        """
        folder = Path(path)
        try:
            return cls._load(folder, device)
        except (KeyError, TypeError, AttributeError, RuntimeError, json.JSONDecodeError) as exc:
            # A hand-edited or mismatched folder: name it rather than fail deep in torch.
            detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
            raise ValueError(
                f"{folder} holds a damaged or incompatible conchshell model "
                f"({type(exc).__name__}: {detail})"
            ) from exc

    @classmethod
    def _load(cls, folder: Path, device: str | None) -> ImageToMusic:
        params_file = folder / _PARAMS_FILE
        if not params_file.is_file():
            raise FileNotFoundError(f"{folder} holds no conchshell model (no {_PARAMS_FILE})")
        try:
            meta = json.loads(params_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{params_file} is not valid JSON: {exc}") from exc
        if meta.get("library") != "conchshell":
            raise ValueError(f"{params_file} was not written by conchshell")
        model = _build(meta["estimator"])
        if device is not None:
            model.set_params(device=device)
        tree = load_tree(folder / _MODEL_FILE)
        fitted = meta["estimator"]["fitted"]
        for name in _COMPONENTS:
            spec = fitted.get(name)
            comp = _build(spec) if spec is not None else None
            if comp is not None and _has_param(comp, "device") and device is not None:
                comp.set_params(device=device)
            if comp is not None and name in tree:
                _restore_attrs(comp, tree.get(f"{name}_attrs", {}))
                comp.initialize()
                comp.module_.load_state_dict(tree[name])
                comp.module_.eval()
            elif comp is not None:
                _restore_attrs(comp, tree.get(f"{name}_attrs", {}))
            setattr(model, f"{name}_", comp)
        cm = tree.get("category_model")
        if cm is not None:
            lr = LogisticRegression()
            lr.coef_, lr.intercept_, lr.classes_ = cm["coef"], cm["intercept"], cm["classes"]
            model.category_model_ = lr
        else:
            model.category_model_ = None
        model.categories_ = list(meta["categories"])
        model.level_ = int(meta["level"])
        history = folder / "history.json"
        model.history_ = json.loads(history.read_text()) if history.is_file() else []
        return model

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "generator_")


# ---------------------------------------------------------------- helpers
def _guarded_step(
    total: torch.Tensor,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    record: dict[str, Any],
    key: str,
) -> None:
    """Back-propagate and step, unless the loss or a gradient is not finite (logged)."""
    if not _finite_everywhere(total):
        record[key] = "non-finite loss"
        return
    total.backward()
    if _grads_finite(model):
        optimizer.step()
    else:
        record[key] = "non-finite gradient"


def _image_groups(dataset: Any) -> np.ndarray | None:
    """One group per original photo: BOP's augmented copies end in -1 .. -5.

    Keeping a photo and its copies on one side of the encoder's early-stopping
    split stops the validation score from measuring memory.
    """
    paths = getattr(dataset, "image_paths", None)
    if not paths or any(p is None for p in paths):
        return None
    return np.array(
        [f"{Path(p).parent.name}/{re.sub(r'-[1-5]$', '', Path(p).stem)}" for p in paths]
    )


def _fit_length(audio: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Crop or zero-pad clips (n, samples) to the estimator's clip length."""
    if audio.shape[-1] >= n_samples:
        return audio[..., :n_samples]
    return torch.nn.functional.pad(audio, (0, n_samples - audio.shape[-1]))


def _check_file_names(names: Sequence[object]) -> None:
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


def _mismatch(path: Path, exc: BaseException) -> ValueError:
    """A checkpoint written for another configuration: say so instead of torch's dump."""
    detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
    return ValueError(
        f"checkpoint {path} does not fit this model (was it written with other parameters?): "
        f"{detail[:300]}; resume with the parameters it was written with, or use another "
        "checkpoint_dir"
    )


def _finite_everywhere(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every process.

    Under DDP all ranks must skip a step together: a rank that skipped its
    backward while the others entered the gradient all-reduce would break it.
    """
    ok = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item())


def _grads_finite(module: torch.nn.Module) -> bool:
    return all(
        bool(torch.isfinite(p.grad).all()) for p in module.parameters() if p.grad is not None
    )


_ATTR_SKIP = {"module_", "device_"}


def _fitted_attrs(comp: BaseEstimator) -> dict[str, Any]:
    """Small fitted attributes (``classes_``, ``history_``...) worth saving."""
    out: dict[str, Any] = {}
    for key, value in vars(comp).items():
        if not key.endswith("_") or key.startswith("_") or key in _ATTR_SKIP:
            continue
        if isinstance(value, torch.nn.Module | torch.device):
            continue
        try:
            flatten(value, {})
        except TypeError:
            continue  # not plain data (e.g. a fitted sklearn object): rebuilt, not saved
        out[key] = value
    return out


def _restore_attrs(comp: BaseEstimator, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        setattr(comp, key, value)


def _describe(est: BaseEstimator, fitted: bool = False) -> dict[str, Any]:
    """JSON description of an estimator: class path and parameters."""
    params: dict[str, Any] = {}
    for key, value in est.get_params(deep=False).items():
        if isinstance(value, BaseEstimator):
            params[key] = {"__estimator__": _describe(value)}
        elif isinstance(value, Path):
            params[key] = str(value)
        elif isinstance(value, tuple):
            params[key] = {"__tuple__": list(value)}
        elif isinstance(value, np.random.RandomState):
            params[key] = None
        else:
            params[key] = value
    desc: dict[str, Any] = {
        "class": f"{type(est).__module__}.{type(est).__qualname__}",
        "params": params,
    }
    if fitted:
        desc["fitted"] = {
            name: _describe(getattr(est, f"{name}_"))
            for name in _COMPONENTS
            if getattr(est, f"{name}_", None) is not None
        }
    return desc


def _build(desc: dict[str, Any]) -> BaseEstimator:
    """Rebuild an estimator from :func:`_describe`'s output (conchshell classes only)."""
    import importlib

    path = desc["class"]
    module_name, _, cls_name = path.rpartition(".")
    if not module_name.startswith("conchshell.") and module_name != "conchshell":
        raise ValueError(f"refusing to build {path!r}: only conchshell classes are loaded")
    cls = getattr(importlib.import_module(module_name), cls_name)
    params = {}
    for key, value in desc["params"].items():
        if isinstance(value, dict) and "__estimator__" in value:
            params[key] = _build(value["__estimator__"])
        elif isinstance(value, dict) and "__tuple__" in value:
            params[key] = tuple(value["__tuple__"])
        else:
            params[key] = value
    return cls(**params)
