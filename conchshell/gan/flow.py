"""A flow-matching latent generator: samples one piece instead of regressing to the average.

Regression, IMLE's included, lands between the pieces of a scene it cannot
tell apart, and an average of pieces loses the scene (``bench/latent_averaging.py``,
docs/training.md). :class:`FlowGenerator` instead learns the velocity field of
a rectified flow (Liu et al. 2022; Lipman et al. 2023) from Gaussian noise to
the codec's latents, conditioned on the category and the video feature, and
generates by integrating it from a noise draw: each draw ends on one piece.
Classifier-free guidance (Ho and Salimans 2022) strengthens the scene.

The network is local in time (:class:`~conchshell.gan.flow_net.FlowNet`), so
it trains on short random windows of the latent sequence and generates the
whole sequence at once. It is a difference from the paper, which trains its
generator adversarially; the paper's :class:`~conchshell.gan.generator.Generator`
stays the default everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from conchshell._validation import check_positive_int, check_tensor
from conchshell.base import SIZES, check_size
from conchshell.gan._layers import (
    fit_feature_scaling,
)
from conchshell.gan.flow_net import FlowNet
from conchshell.gan.generator import _LatentGenerator
from conchshell.training import (
    TrainingLog,
    budget_cosine_schedule,
    constant_schedule,
    guarded_step,
)

__all__ = ["FlowGenerator"]


def _unwrap(module: nn.Module) -> FlowNet:
    """The :class:`FlowNet` inside optimize's cast wrapper or a compiled module."""
    while not isinstance(module, FlowNet):
        module = getattr(module, "_orig_mod", None) or module.module
    return module


# Network width per size; "paper" has no flow generator of its own, so it is the widest.
_CHANNELS = {"paper": 256, "small": 128, "tiny": 16}
LR_SCHEDULES = ("cosine", "constant")


class FlowGenerator(_LatentGenerator):
    """Conditional flow-matching generator of one level's continuous latents.

    A drop-in for :class:`~conchshell.gan.generator.Generator` in
    :class:`~conchshell.ImageToMusic` (same :meth:`fit`, :meth:`transform`
    and :meth:`sample_noise`), trained without a discriminator: an estimator
    with this generator trains it in its warm-start stage and needs
    ``max_steps=0``.

    :meth:`fit` draws, per step, ``batch_size`` random windows of
    ``crop_frames`` latent frames, a flow time ``t`` (logit-normal) and a
    Gaussian draw ``x0`` per window, and regresses the network's velocity at
    ``(1 - t) x0 + t x1`` on ``x1 - x0`` (mean squared error), ``x1`` being
    the standardised target window. With probability ``cond_dropout`` a
    window's category and feature are dropped, so the same network also
    learns the unconditional velocity that guidance needs.

    :meth:`transform` integrates the velocity from a noise draw with
    ``n_steps`` Euler steps; with ``guidance`` ``w != 1`` the velocity is
    ``v_uncond + w (v_cond - v_uncond)``, which costs a second pass per step.

    Parameters
    ----------
    level : {"deep", "low", "high"}, {0, 1, 2} or None, default="deep"
        Level of the latents (``None``: the enclosing estimator's).
    in_features, n_categories, emb_width, n_frames : int or None, default=None
        Sizes; ``None`` takes what the data or the estimator implies, as for
        :class:`~conchshell.gan.generator.Generator`.
    size : {"paper", "small", "tiny"}, default="small"
        Network width: 256, 128 or 16 channels in the fine stage.
    crop_frames : int, default=2048
        Length of the training windows, in latent frames (1 s at Deep); at
        most ``n_frames`` are used.
    n_steps : int, default=16
        Euler steps of :meth:`transform`.
    guidance : float, default=2.0
        Classifier-free guidance weight (1: none).
    cond_dropout : float, default=0.1
        Probability of dropping a training window's condition.
    ema_decay : float or None, default=0.999
        :meth:`fit` keeps an exponential moving average of the weights
        (:func:`torch.optim.swa_utils.get_ema_multi_avg_fn`) and leaves it in
        ``module_`` at the end: samples from averaged weights are cleaner
        than from the last step's. ``None`` keeps the last step's weights.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        ``"cosine"`` anneals the rate to zero over the budget, whichever of
        ``max_steps`` and ``max_time`` runs out first
        (:func:`conchshell.training.budget_cosine_schedule`).
    max_epochs : int, default=100
        Epochs of :meth:`fit`; an epoch is ``ceil(n_samples / batch_size)`` steps.
    max_steps : int or None, default=None
        Stop :meth:`fit` after this many steps.
    max_time : float or None, default=None
        Wall-clock budget of :meth:`fit` in seconds.
    lr : float, default=1e-3
        AdamW learning rate.
    weight_decay : float, default=0.0
        AdamW weight decay.
    batch_size : int, default=16
        Windows per step, and rows per pass of :meth:`transform`.
    warm_start : bool, default=False
        Continue from the current ``module_`` in :meth:`fit`.
    verbose : int, default=0
        Show a progress bar over the epochs of :meth:`fit` when positive.
    device : {"auto", "cpu", "cuda"}, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds the weights, the training draws and the default noise.

    Attributes
    ----------
    module_ : FlowNet
        The velocity network; it also holds the feature and latent scaling.
    level_, n_frames_, in_features_, n_categories_, emb_width_ : int
        The sizes in use.
    device_ : torch.device
    history_ : list of dict
        Per epoch: ``epoch``, ``step``, ``loss`` (mean squared velocity
        error), ``seconds`` and ``n_skipped``.

    Examples
    --------
    >>> import torch
    >>> g = FlowGenerator("high", in_features=8, n_categories=2, emb_width=4, n_frames=32,
    ...                   size="tiny", device="cpu", random_state=0).initialize()
    >>> g.transform(torch.zeros(2, 8), [0, 1]).shape
    torch.Size([2, 4, 32])
    """

    # ImageToMusic trains it in its warm-start stage and never adversarially.
    adversarial = False
    _what = "flow generator"
    _fitted_settable = ("guidance", "n_steps", "batch_size", "verbose")

    def __init__(
        self,
        level: str | int | None = "deep",
        in_features: int | None = None,
        n_categories: int | None = None,
        emb_width: int | None = None,
        n_frames: int | None = None,
        size: str = "small",
        crop_frames: int = 2048,
        n_steps: int = 16,
        guidance: float = 2.0,
        cond_dropout: float = 0.1,
        ema_decay: float | None = 0.999,
        lr_schedule: str = "cosine",
        max_epochs: int = 100,
        max_steps: int | None = None,
        max_time: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 16,
        warm_start: bool = False,
        verbose: int = 0,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.level = level
        self.in_features = in_features
        self.n_categories = n_categories
        self.emb_width = emb_width
        self.n_frames = n_frames
        self.size = size
        self.crop_frames = crop_frames
        self.n_steps = n_steps
        self.guidance = guidance
        self.cond_dropout = cond_dropout
        self.ema_decay = ema_decay
        self.lr_schedule = lr_schedule
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.max_time = max_time
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device
        self.random_state = random_state

    @classmethod
    def sized(cls, size: str, **overrides: Any) -> FlowGenerator:
        """A flow generator of one of the library's sizes: ``FlowGenerator(size=size, ...)``.

        Parameters
        ----------
        size : {"paper", "small", "tiny"}
            Network width.
        **overrides
            Any other constructor parameter.

        Returns
        -------
        FlowGenerator
            Unfitted.
        """
        return cls(size=check_size(size), **overrides)

    def _build_module(self) -> nn.Module:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        width = _CHANNELS[self.size]
        return FlowNet(
            self.emb_width_,
            self.in_features_,
            self.n_categories_,
            channels=width,
            cond_dim=2 * width,
        )

    def _check_settings(self) -> None:
        for name in ("max_epochs", "batch_size", "crop_frames", "n_steps"):
            check_positive_int(getattr(self, name), name)
        if self.max_steps is not None:
            check_positive_int(self.max_steps, "max_steps")
        for name in ("lr",):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, int | float):
            raise ValueError(f"guidance must be a number, got {self.guidance!r}")
        if not (isinstance(self.cond_dropout, int | float) and 0 <= self.cond_dropout < 1):
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout!r}")
        decay = self.ema_decay
        if decay is not None and not (isinstance(decay, int | float) and 0 < decay < 1):
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {decay!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    # --------------------------------------------------------------- training
    def fit(self, features: object, latents: object, categories: object) -> FlowGenerator:
        """Learn the velocity field from noise to ``latents``.

        Parameters
        ----------
        features : array-like of shape (n_samples, in_features)
            Video features.
        latents : array-like of shape (n_samples, emb_width, n_frames)
            Continuous target latents (the codec's ``transform`` of the paired audio).
        categories : array-like of shape (n_samples,)
            Integer category ids in ``[0, n_categories)``.

        Returns
        -------
        self
        """
        self._check_settings()
        x, c, y = self._fit_inputs(features, latents, categories)
        net: FlowNet = self.module_
        history = self.history_ if self.warm_start and hasattr(self, "history_") else []
        if not history:
            # The first fit sets the scaling; a continued fit keeps what the weights learned on.
            fit_feature_scaling(net.feature_mean, net.feature_scale, x)
            with torch.no_grad():
                net.latent_mean.copy_(y.mean((0, 2)))
                spread = y.std((0, 2)) if y.numel() > y.shape[1] else torch.ones(y.shape[1])
                net.latent_scale.copy_(torch.where(spread > 1e-6, spread, torch.ones_like(spread)))
        y = (y - net.latent_mean.cpu()[:, None]) / net.latent_scale.cpu()[:, None]
        crop = min(int(self.crop_frames), self.n_frames_)
        optimizer = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        # The draws continue from where an earlier fit stopped, so a warm start differs.
        draws = torch.Generator().manual_seed(int(self.seed_) + len(history))
        self.history_ = history
        done = int(history[-1].get("step", 0)) if history else 0
        per_epoch = math.ceil(x.shape[0] / int(self.batch_size))
        budget = int(self.max_epochs) * per_epoch
        if self.max_steps is not None:
            budget = min(budget, int(self.max_steps))
        steps = 0
        ema = None
        if self.ema_decay is not None:
            ema = AveragedModel(
                net, multi_avg_fn=get_ema_multi_avg_fn(float(self.ema_decay)), use_buffers=True
            )
        net.train()
        with TrainingLog(
            desc="FlowGenerator",
            total=int(self.max_epochs),
            verbose=self.verbose,
            unit="epoch",
            history=history,
            max_time=self.max_time,
        ) as log:
            if self.lr_schedule == "cosine":
                limit = self.max_time

                def spent() -> float:
                    share = steps / budget
                    return max(share, log.elapsed / limit) if limit else share

                schedule = budget_cosine_schedule(optimizer, spent)
            else:
                schedule = constant_schedule(optimizer)
            for _ in range(int(self.max_epochs)):
                total, seen = 0.0, 0
                for _ in range(per_epoch):
                    loss = self._loss(x, c, y, crop, draws)
                    optimizer.zero_grad(set_to_none=True)
                    steps += 1
                    where = {"epoch": len(history) + 1, "step": done + steps}
                    if guarded_step(loss, net, optimizer, where, desc="FlowGenerator", clip=1.0):
                        total += float(loss.detach())
                        seen += 1
                        if ema is not None:
                            ema.update_parameters(net)
                    else:
                        log.count_skipped()
                    schedule.step()
                    if self._stop(steps, log):
                        break
                log.log(
                    {
                        "epoch": len(history) + 1,
                        "step": done + steps,
                        "loss": total / seen if seen else math.nan,
                    }
                )
                if self._stop(steps, log):
                    break
        if ema is not None:
            # Sampling uses the averaged weights (and the buffers, which training never moves).
            net.load_state_dict(ema.module.state_dict())
        net.eval()
        return self

    def _stop(self, steps: int, log: TrainingLog) -> bool:
        return (self.max_steps is not None and steps >= self.max_steps) or log.out_of_time()

    def _loss(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        y: torch.Tensor,
        crop: int,
        draws: torch.Generator,
    ) -> torch.Tensor:
        """Flow-matching loss of one batch of random windows."""
        net: FlowNet = self.module_
        n = int(self.batch_size)
        rows = torch.randint(x.shape[0], (n,), generator=draws)
        starts = torch.randint(self.n_frames_ - crop + 1, (n,), generator=draws)
        pairs = zip(rows.tolist(), starts.tolist(), strict=True)
        x1 = torch.stack([y[r, :, s : s + crop] for r, s in pairs])
        x0 = torch.randn(x1.shape, generator=draws)
        # Logit-normal times: most of the steps where the velocity is hardest to tell.
        t = torch.sigmoid(torch.randn(n, generator=draws))
        drop = torch.rand(n, generator=draws) < float(self.cond_dropout)
        cats = torch.where(drop, net.null_category, c[rows])
        feats = torch.where(drop[:, None], net.feature_mean.cpu(), x[rows])
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * x1
        dev = self.device_
        v = net(xt.to(dev), t.to(dev), cats.to(dev), feats.to(dev))
        return F.mse_loss(v, (x1 - x0).to(dev))

    # -------------------------------------------------------------- generation
    def sample_noise(self, n_samples: int, seed: int | None = None) -> torch.Tensor:
        """The starting draws :meth:`transform` integrates from: ``(n, emb_width, n_frames)``.

        Parameters
        ----------
        n_samples : int
            Rows to draw.
        seed : int, optional
            Seed of the draw; default ``random_state``'s. Row ``i`` is the same
            for every ``n_samples > i``.

        Returns
        -------
        torch.Tensor
            Standard normal, float32.
        """
        self._check_initialized()
        seed = int(self.seed_) if seed is None else int(seed)
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n_samples, self.emb_width_, self.n_frames_, generator=gen)

    def transform(self, features: object, categories: object, noise: object = None) -> torch.Tensor:
        """Generate continuous latents by integrating the flow (eval mode, no gradient).

        Parameters
        ----------
        features : array-like of shape (n_samples, in_features)
        categories : array-like of shape (n_samples,)
        noise : array-like of shape (n_samples, emb_width, n_frames), optional
            The starting draws; default :meth:`sample_noise` (the same inputs
            give the same latents from call to call).

        Returns
        -------
        torch.Tensor of shape (n_samples, emb_width, n_frames_)
            On the CPU, float32.
        """
        self._check_initialized()
        self._check_settings()
        x, c = self._check_inputs(features, categories)
        z = self.sample_noise(x.shape[0]) if noise is None else noise
        z = check_tensor(
            z, name="noise", ndim=3, shape=(x.shape[0], self.emb_width_, self.n_frames_)
        )
        net = self.module_
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                out = [
                    self._integrate(xb, cb, zb)
                    for xb, cb, zb in zip(
                        x.split(int(self.batch_size)),
                        c.split(int(self.batch_size)),
                        z.split(int(self.batch_size)),
                        strict=True,
                    )
                ]
        finally:
            net.train(was_training)
        return torch.cat(out)

    def _integrate(self, x: torch.Tensor, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # ``module_`` may be wrapped (optimize's cast, torch.compile): call the wrapper,
        # read the scaling from the network inside, in float32.
        run, net = self.module_, _unwrap(self.module_)
        dev = self.device_
        x, c = x.to(dev), c.to(dev)
        h = z.to(dev, torch.float32)
        w, n_steps = float(self.guidance), int(self.n_steps)
        for i in range(n_steps):
            t = torch.full((h.shape[0],), i / n_steps, device=dev)
            h = h + run(h, t, c, x, w).float() / n_steps
        scale, mean = net.latent_scale.float()[:, None], net.latent_mean.float()[:, None]
        return (h * scale + mean).cpu()
