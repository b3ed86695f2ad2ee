"""``ImageToMusic``: the whole ConchShell system as one scikit-learn estimator.

The estimator holds its components as parameters (each itself an estimator),
clones them in :meth:`ImageToMusic.fit`, and trains in three stages:

1. the image encoder as a scene classifier (skipped when it is given
   weights, or passed in fitted and wrapped in
   :class:`sklearn.frozen.FrozenEstimator`);
2. the audio codec (skipped when it has weights or is frozen);
3. the GAN (:mod:`conchshell.gan.training`): discriminator and generator
   steps on the codec's latents of one level, with the terms of the ``loss``
   component.

While the image side is frozen, each image's feature vector is computed once
and reused for every GAN step. Saving and loading live in
:mod:`conchshell.persistence`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from numbers import Integral, Real
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from conchshell import distributed
from conchshell.base import resolve_device, seed_from_random_state
from conchshell.data.audio import fit_length
from conchshell.data.dataset import photo_groups
from conchshell.gan.training import (
    CheckpointFolder,
    build_gan,
    run_identity,
    train_gan,
    warm_start,
)
from conchshell.generation import GenerationMixin
from conchshell.levels import level_index, level_name
from conchshell.persistence import COMPONENTS, SaveLoadMixin

__all__ = ["ImageToMusic"]


# The paper-size default of each slot: module, class, and the size for ``sized`` (if any).
_DEFAULTS = {
    "encoder": ("conchshell.image.tcnn", "TCNNEncoder", None),
    "forger": ("conchshell.image.forging", "TemporalForger", None),
    "extractor": ("conchshell.video.i3d", "I3DExtractor", None),
    "codec": ("conchshell.codec.jukebox", "JukeboxCodec", "paper"),
    "generator": ("conchshell.gan.generator", "Generator", None),
    "discriminator": ("conchshell.gan.discriminator", "MultiScaleDiscriminator", None),
    "loss": ("conchshell.gan.losses", "ConchShellLoss", None),
}


def _default(name: str, level: str) -> BaseEstimator | None:
    """Paper-scale default of a component slot (the denoiser has none)."""
    if name not in _DEFAULTS:
        return None
    module, cls_name, size = _DEFAULTS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    comp = cls.sized(size) if size else cls()
    return comp.set_params(level=level) if name == "generator" else comp


def _has_param(est: BaseEstimator, name: str) -> bool:
    return name in est.get_params(deep=False)


def _is_fitted(est: BaseEstimator) -> bool:
    try:
        check_is_fitted(est)
    except Exception:
        return False
    return True


def check_fitted_params(components: dict[str, Any], params: dict[str, Any]) -> dict[str, dict]:
    """Check ``set_fitted_params`` keys and values against components, changing nothing.

    Parameters
    ----------
    components : dict of str to component
        The components by slot: a fitted model's, or an unfitted preset's
        (the same classes answer, so a setting can be checked before training).
    params : dict
        ``component__parameter`` keys and their values.

    Returns
    -------
    dict of str to dict
        The settings by slot: ``{"generator": {"guidance": 2.0}}``.

    Raises
    ------
    ValueError
        For a key that names none of ``components``, a setting that cannot
        change after fitting (naming the ones that can), or a value the
        component rejects.
    """
    changes: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        name, sep, param = key.partition("__")
        if not sep or name not in components:
            raise ValueError(
                f"{key!r} names no fitted component: use component__parameter with one of "
                f"{list(components)}"
            )
        changes.setdefault(name, {})[param] = value
    for name, values in changes.items():
        comp = components[name]
        allowed = getattr(comp, "_fitted_settable", ())
        fixed = sorted(set(values) - set(allowed))
        if fixed:
            # Structure and training settings would disagree with the fitted weights.
            raise ValueError(
                f"{name}__{fixed[0]} cannot change on a fitted {type(comp).__name__}; "
                f"what can: {list(allowed) or 'nothing'} (set_params and fit for the rest)"
            )
        # On a copy: a bad value leaves the component untouched.
        check = getattr(clone(comp).set_params(**values), "_check_settings", None)
        if check is not None:
            check()
    return changes


class ImageToMusic(GenerationMixin, SaveLoadMixin, BaseEstimator):
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
        Audio codec; ``None`` builds ``JukeboxCodec.sized("paper")``.
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
        (``Generator.fit``, with as many epochs as these steps need; its
        ``max_time`` can stop it sooner); 0 trains adversarially from the
        start, as the paper.
    gan_crop : int or None, default=None
        Latent frames per clip the discriminator and the losses see in a GAN
        step (a random window); ``None``: the whole sequence, as the paper.
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
    >>> model = presets.conchshell("tiny", random_state=0)  # doctest: +SKIP
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
        gan_crop: int | None = None,
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
        self.gan_crop = gan_crop
        self.precision = precision
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.max_bad_steps = max_bad_steps
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    _parameter_constraints: dict = {  # noqa: RUF012 - scikit-learn's own convention
        "level": [StrOptions({"deep", "low", "high"}), Interval(Integral, 0, 2, closed="both")],
        "duration": [Interval(Real, 0, 60, closed="right")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 0, None, closed="left")],
        "max_time": [None, Interval(Real, 0, None, closed="neither")],
        "lr_g": [Interval(Real, 0, None, closed="neither")],
        "lr_d": [Interval(Real, 0, None, closed="neither")],
        "betas": ["array-like"],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_step": [Interval(Integral, 1, None, closed="left")],
        "lr_gamma_g": [Interval(Real, 0, None, closed="neither")],
        "lr_gamma_d": [Interval(Real, 0, None, closed="neither")],
        "warm_start_steps": [Interval(Integral, 0, None, closed="left")],
        "gan_crop": [None, Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "checkpoint_dir": [None, str, PathLike],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
        "keep_checkpoints": [Interval(Integral, 1, None, closed="left")],
        "max_bad_steps": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _check_params(self) -> None:
        self._validate_params()
        for name, rules in self._parameter_constraints.items():
            value = getattr(self, name)
            interval = next((r for r in rules if isinstance(r, Interval)), None)
            if isinstance(value, bool) and interval is not None:  # scikit-learn lets bools in
                raise ValueError(
                    f"The {name!r} parameter of {type(self).__name__} must be {interval}. "
                    f"Got {value!r} instead."
                )
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for name in COMPONENTS:
            comp = getattr(self, name)
            if comp is not None and not hasattr(comp, "get_params"):
                raise TypeError(
                    f"{name} must be a conchshell component (a scikit-learn estimator), "
                    f"got {type(comp).__name__}; wrap torch modules in a component"
                )
            if isinstance(comp, FrozenEstimator) and not _is_fitted(comp.estimator):
                raise ValueError(
                    f"{name} is wrapped in FrozenEstimator but is not fitted; fit it first, "
                    "or pass it unwrapped to have fit train it"
                )
            # Settings a component would only check when its own stage starts.
            check = getattr(comp, "_check_settings", None)
            if check is not None:
                check()

    def _component(self, name: str, seed: int, device: str) -> BaseEstimator | None:
        given = getattr(self, name)
        if isinstance(given, FrozenEstimator):
            # A fitted component the user froze is used as it is: no clone, no refit.
            self._frozen.add(name)
            return given.estimator
        comp = clone(given) if given is not None else _default(name, level_name(self.level))
        if comp is None:
            return None
        updates: dict[str, Any] = {}
        if _has_param(comp, "device") and comp.get_params()["device"] in (None, "auto"):
            updates["device"] = device
        if _has_param(comp, "random_state") and comp.get_params()["random_state"] is None:
            # Each slot gets its own stream derived from the estimator's seed.
            updates["random_state"] = (seed + 1009 * (COMPONENTS.index(name) + 1)) % 2**31
        if _has_param(comp, "verbose"):
            updates["verbose"] = self.verbose
        return comp.set_params(**updates) if updates else comp

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
        from conchshell.datasets import as_dataset

        self._check_params()
        if resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir to be set")
        dataset = as_dataset(X, audio=audio, categories=categories)
        device = resolve_device(self.device)
        dist = distributed.context(device)
        device = dist.device(device)
        seed = seed_from_random_state(self.random_state)
        try:
            self._fit(dataset, device, dist, seed, resume)
        finally:
            dist.close()
        return self

    def _fit(
        self,
        dataset: Any,
        device: torch.device,
        dist: Any,
        seed: int,
        resume: bool,
    ) -> None:
        from conchshell.persistence import load_stages, save_stages

        self._build_components(seed, str(device), list(dataset.categories))
        images = dataset.stack_images()
        cats = torch.as_tensor(dataset.category_ids, dtype=torch.long)
        ckpts = None
        if self.checkpoint_dir is not None:
            # Checked before any training: a fresh fit never lands on an old run's files.
            ckpts = CheckpointFolder(self.checkpoint_dir, self.keep_checkpoints)
            ckpts.open(run_identity(self, seed, images, cats, dataset), resume, dist.is_main)
        stages = ckpts.stages if ckpts is not None else None
        restored = resume and stages is not None and stages.is_file()
        if restored:
            load_stages(self, stages, ckpts.check_run)
        else:
            self._fit_image_side(images, cats, photo_groups(dataset))
            self._fit_codec(dataset)
        self._build_rest(images[:1])
        features = self._features(images)
        self.category_model_ = self._fit_category_model(features, cats)
        build_gan(self, features.shape[1])
        # Deterministic, so a resumed fit redoes it and then loads the checkpoint.
        if self.warm_start_steps or not getattr(self.generator_, "needs_steps", True):
            warm_start(self, dataset, features, cats)
        if stages is not None and dist.is_main and not restored:
            save_stages(self, stages, ckpts.run)
        dist.barrier()
        if getattr(self.generator_, "adversarial", True):
            train_gan(self, dataset, features, cats, device, dist, seed, ckpts, resume)

    def _build_components(self, seed: int, device: str, categories: list[str]) -> None:
        self.level_ = level_index(self.level)
        self.categories_ = list(categories)
        self.history_: list[dict[str, Any]] = []
        self._frozen: set[str] = set()
        for name in COMPONENTS:
            setattr(self, f"{name}_", self._component(name, seed, device))
        if not getattr(self.generator_, "adversarial", True) and "generator" not in self._frozen:
            # Checked before any training: such a generator learns only in the warm start.
            name = type(self.generator_).__name__
            if self.max_steps:
                steps = getattr(self.generator_, "needs_steps", True)
                raise ValueError(
                    f"{name} trains without a discriminator: set max_steps=0 "
                    f"(got {self.max_steps})"
                    + (" and give its steps to warm_start_steps" if steps else "")
                )
            if not self.warm_start_steps and getattr(self.generator_, "needs_steps", True):
                raise ValueError(
                    f"{name} learns only in the warm start: set warm_start_steps > 0 (got 0)"
                )
        enc = self.encoder_
        if _has_param(enc, "n_categories") and "encoder" not in self._frozen:
            enc.set_params(n_categories=len(categories))

    def _build_rest(self, example_images: torch.Tensor) -> None:
        """Build what the fitting stages did not: forger, extractor, denoiser."""
        for comp in (self.encoder_, self.extractor_, self.codec_):
            if not hasattr(comp, "module_"):
                comp.initialize()
        if "forger" not in self._frozen:
            self.forger_.fit(example_images)
        if self.denoiser_ is not None and "denoiser" not in self._frozen:
            self.denoiser_.fit()

    def set_fitted_params(self, **params: Any) -> ImageToMusic:
        """Change prediction-time settings of the fitted components, weights kept.

        :meth:`set_params` changes what the next :meth:`fit` builds, as in
        scikit-learn; the fitted components (``generator_``, ...) keep their
        own copies. This sets both, so a loaded model can, for example,
        generate with another guidance without retraining::

            model.set_fitted_params(generator__guidance=3.0)

        Every value is checked before any is set, and :meth:`save` keeps them.

        Parameters
        ----------
        **params
            ``component__parameter`` keys of prediction-time settings:
            ``guidance``, ``batch_size`` and ``verbose`` of a ``Generator``
            (``n_steps`` too for a ``FlowGenerator``), the window-choice
            settings of a ``MosaicGenerator`` (``n_units``, ``continue_prob``,
            ``max_run``, ``photo_temperature``, ``join_temperature``,
            ``guidance``) and any setting of a ``SpectralGate`` denoiser.
            Structure and training settings are refused: they would disagree
            with the fitted weights.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a key that names no fitted component or a setting that
            cannot change after fitting, or a value the component rejects.
        """
        self._check_fitted()
        fitted = {c: getattr(self, f"{c}_", None) for c in COMPONENTS}
        changes = check_fitted_params({k: v for k, v in fitted.items() if v is not None}, params)
        for name, values in changes.items():
            getattr(self, f"{name}_").set_params(**values)
            template = getattr(self, name)
            if template is not None and not isinstance(template, FrozenEstimator):
                template.set_params(**values)
        return self

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
        build_gan(self, int(n_features))
        return self

    def _fit_image_side(
        self, images: torch.Tensor, cats: torch.Tensor, groups: np.ndarray | None
    ) -> None:
        enc = self.encoder_
        has_weights = _has_param(enc, "weights") and enc.get_params()["weights"] is not None
        # Frozen, pretrained or feature-only encoders (VGG) are used as they are.
        if "encoder" in self._frozen or has_weights or not hasattr(enc, "predict"):
            return
        enc.fit(images, cats, groups=groups)

    def _fit_codec(self, dataset: Any) -> None:
        codec = self.codec_
        if "codec" in self._frozen or codec.get_params().get("weights") is not None:
            return
        codec.fit(fit_length(dataset.stack_audio(), self._n_samples))

    def _fit_category_model(self, features: torch.Tensor, cats: torch.Tensor) -> Any:
        if hasattr(self.encoder_, "predict") and _is_fitted(self.encoder_):
            return None
        if len(torch.unique(cats)) < 2:
            return None
        model = LogisticRegression(max_iter=2000)
        return model.fit(features.double().numpy(), cats.numpy())

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "generator_")
