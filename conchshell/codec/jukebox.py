"""A Jukebox-compatible multi-level VQ-VAE, written for this library.

ConchShell's generator predicts the continuous latents of one level of
OpenAI Jukebox's VQ-VAE, and that level's decoder turns them into sound. No
installable package provides that VQ-VAE (and its code is under a
non-commercial licence), so this module implements it from the published
description, keeping the parameter names of the released checkpoint so that
a user who owns ``vqvae.pth.tar`` can load it without any key mapping.

Architecture and state-dict layout
----------------------------------
The codec has ``levels`` independent auto-encoders that share nothing but the
input. Level ``L`` compresses audio by ``hop_length(L)`` (8, 32 and 128 with
the paper's ``downs_t=(3, 2, 2)``, ``strides_t=(2, 2, 2)``) into
``emb_width``-channel latents, and every part of level ``L`` uses level
``L``'s width and depth.

``encoders.L`` runs ``L + 1`` down-blocks in order, ``level_blocks.0`` to
``level_blocks.L``. Down-block ``B`` (which reduces time by
``strides_t[B] ** downs_t[B]``) is a sequence named ``model``:

- ``model.I`` for ``I < downs_t[B]``: a pair ``model.I.0``, the strided
  ``Conv1d(kernel 2*stride, padding stride//2)`` (from 1 audio channel in
  block 0, from ``emb_width`` otherwise, to ``width``), and ``model.I.1``, a
  residual stack;
- ``model.<downs_t[B]>``: a ``Conv1d(width -> emb_width, kernel 3)``. Every
  block ends at ``emb_width`` channels, which is why blocks after the first
  start from ``emb_width``.

A residual stack (``...1.model``) holds ``depth`` units ``model.D``; unit
``D`` is ``model.D.model`` = (ReLU, ``Conv1d(width, m_conv*width, 3,
dilation=g**D)``, ReLU, ``Conv1d(m_conv*width, width, 1)``) whose output is
added to its input, so its weights sit at ``model.D.model.1`` and
``model.D.model.3``.

``decoders.L`` mirrors the encoder: ``level_blocks.B`` for ``B`` in
``0..L`` are applied from ``B = L`` down to ``B = 0``, then ``out``, a
``Conv1d(emb_width -> 1, kernel 3)``, gives the waveform. Up-block ``B`` is a
sequence ``model``: ``model.0`` is a ``Conv1d(emb_width -> width, kernel
3)``; ``model.I`` for ``I = 1..downs_t[B]`` is a pair of a residual stack
with the dilations in reverse order (``model.I.0``, largest dilation first)
and ``model.I.1``, a ``ConvTranspose1d(kernel 2*stride)`` to ``width``, or to
``emb_width`` for the last one.

``bottleneck.level_blocks.L.k`` is level ``L``'s codebook, ``[l_bins,
emb_width]``. Its exponential-moving-average statistics (``k_sum``,
``k_elem``) are non-persistent buffers: they follow the module across
devices but are not in the state dict, exactly as in the released file.

With the paper's settings this gives encoder / decoder parameter counts of
441,856 / 458,177 (level 0), 116,384 / 124,641 (level 1) and
168,224 / 176,481 (level 2).

Training (:meth:`JukeboxCodec.fit`) follows the VQ-VAE recipe: codebooks
initialised from random encoder outputs and updated by EMA (decay ``mu``),
codes whose EMA count falls below 1 re-seeded from random encoder outputs,
a straight-through estimator, a commitment loss, an L2 + L-infinity
reconstruction loss and a multi-resolution spectral loss, all levels
trained together with AdamW.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from sklearn.base import TransformerMixin
from torch import nn

from conchshell._spectral import multi_resolution_stft
from conchshell._validation import all_finite, check_positive_int, check_tensor
from conchshell.base import TorchComponent, check_size
from conchshell.codec.checkpoint import load_jukebox_checkpoint, load_state_dict_strict
from conchshell.io import atomic_write
from conchshell.levels import level_index
from conchshell.training import (
    TrainingLog,
    budget_cosine_schedule,
    constant_schedule,
    guarded_step,
)

__all__ = ["JukeboxCodec"]

# Jukebox took the mean of the 2048 largest errors of 393,216-sample crops:
# the largest 1/192 of the samples. Keeping the ratio lets any crop length work.
_LINF_FRACTION = 2048 / 393_216
# Squared-magnitude floor of the spectral loss: magnitudes of at least 1e-4 (-80 dB).
_POWER_FLOOR = 1e-8
_REVIVAL_THRESHOLD = 1.0
_FORMAT = "conchshell.JukeboxCodec"
_EMA_KEYS = ("k_sum", "k_elem")
LR_SCHEDULES = ("constant", "cosine")
# Constructor parameters of each size (JukeboxCodec.sized); "paper" is the defaults.
_SIZED: dict[str, dict[str, Any]] = {
    "paper": {},
    "small": {
        "widths": (32, 16, 16),
        "depths": (3, 2, 2),
        "batch_size": 2,
        "segment_length": 8192,
        "lr": 2e-3,
        "lr_schedule": "cosine",
    },
    "tiny": {
        "downs_t": (1, 1, 1),
        "emb_width": 16,
        "l_bins": 32,
        "widths": (8, 8, 8),
        "depths": (2, 1, 1),
        "n_ffts": (256, 128, 64),
        "hops": (64, 32, 16),
        "windows": (256, 128, 64),
        "batch_size": 2,
        "segment_length": 1024,
        "max_steps": 20,
        "lr": 3e-3,
        "verbose": 0,
    },
}


# --------------------------------------------------------------------------- modules
class _ResidualUnit(nn.Module):
    """ReLU -> dilated Conv(k3) -> ReLU -> Conv(k1), added to the input."""

    def __init__(self, width: int, hidden: int, dilation: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(width, hidden, 3, padding=dilation, dilation=dilation),
            nn.ReLU(),
            nn.Conv1d(hidden, width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        out += x  # into the last convolution's fresh output: one tensor fewer
        return out


class _ResidualStack(nn.Module):
    """``depth`` residual units with dilations ``growth ** i`` (reversed on request)."""

    def __init__(self, width: int, depth: int, m_conv: float, growth: int, reverse: bool) -> None:
        super().__init__()
        hidden = int(m_conv * width)
        units = [_ResidualUnit(width, hidden, growth**i) for i in range(depth)]
        self.model = nn.Sequential(*(units[::-1] if reverse else units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _DownBlock(nn.Module):
    def __init__(
        self, c_in: int, emb: int, down: int, stride: int, width: int, stack: dict
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(down):
            conv = nn.Conv1d(c_in if i == 0 else width, width, 2 * stride, stride, stride // 2)
            layers.append(nn.Sequential(conv, _ResidualStack(width, reverse=False, **stack)))
        layers.append(nn.Conv1d(width, emb, 3, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _UpBlock(nn.Module):
    def __init__(self, emb: int, down: int, stride: int, width: int, stack: dict) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(emb, width, 3, padding=1)]
        for i in range(down):
            c_out = emb if i == down - 1 else width
            up = nn.ConvTranspose1d(width, c_out, 2 * stride, stride, stride // 2)
            layers.append(nn.Sequential(_ResidualStack(width, reverse=True, **stack), up))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _Encoder(nn.Module):
    def __init__(self, blocks: list[_DownBlock]) -> None:
        super().__init__()
        self.level_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.level_blocks:
            x = block(x)
        return x


class _Decoder(nn.Module):
    def __init__(self, blocks: list[_UpBlock], emb: int) -> None:
        super().__init__()
        self.level_blocks = nn.ModuleList(blocks)
        self.out = nn.Conv1d(emb, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.level_blocks):
            z = block(z)
        return self.out(z)


class _Codebook(nn.Module):
    """One level's codebook with EMA statistics kept out of the state dict."""

    def __init__(self, l_bins: int, emb: int, mu: float) -> None:
        super().__init__()
        self.mu = mu
        # Random until fit seeds it from encoder outputs (or a file is loaded), so an
        # untrained codec still spreads latents over many codes.
        self.register_buffer("k", torch.randn(l_bins, emb))
        self.register_buffer("k_sum", self.k.clone(), persistent=False)
        self.register_buffer("k_elem", torch.ones(l_bins), persistent=False)
        # False until the codebook has been seeded from data or loaded from a file.
        self.initialised = False

    def nearest(self, flat: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Index of the nearest codebook row (L2) for each row of ``flat``."""
        k = self.k.detach()
        k_norm = (k**2).sum(dim=1)
        flat = flat.detach().to(k.dtype)
        codes = flat.new_empty(len(flat), dtype=torch.long)
        # One distance block reused by every chunk: a fresh 16 MB block per chunk
        # costs its page faults again each time.
        dist = flat.new_empty(min(chunk, len(flat)), len(k))
        # float32 even under autocast: bf16 distances would tie distinct codes.
        with torch.autocast(flat.device.type, enabled=False):
            for start in range(0, len(flat), chunk):
                part = flat[start : start + chunk]
                block = dist[: len(part)]
                # ||k||^2 - 2 x.k (||x||^2 does not change the argmin) in one fused addmm;
                # 2048-row chunks keep the distance block in cache (3x faster than 8192).
                torch.addmm(k_norm, part, k.T, alpha=-2.0, out=block)
                # min(dim).indices is argmin (the first minimum, NaN propagating)
                # in half the time of argmin's CPU kernel.
                codes[start : start + len(part)] = block.min(dim=1).indices
        return codes

    @torch.no_grad()
    def reset_ema(self) -> None:
        """Restart the EMA statistics from the current codebook (after loading it)."""
        self.k_sum.copy_(self.k)
        self.k_elem.fill_(1.0)
        self.initialised = True

    @torch.no_grad()
    def seed_from(self, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        """Initialise the codebook from random rows of the encoder output."""
        self.k.copy_(_random_rows(flat, self.k.shape[0], generator))
        self.reset_ema()

    @torch.no_grad()
    def ema_update(
        self, flat: torch.Tensor, codes: torch.Tensor, generator: torch.Generator | None
    ) -> int:
        """One EMA step on a batch, then re-seed the codes that fell out of use.

        Returns the number of codes re-seeded.
        """
        flat = flat.detach().float()
        n_bins = self.k.shape[0]
        counts = torch.bincount(codes, minlength=n_bins).to(flat.dtype)
        sums = torch.zeros_like(self.k_sum).index_add_(0, codes, flat)
        self.k_sum.mul_(self.mu).add_(sums, alpha=1.0 - self.mu)
        self.k_elem.mul_(self.mu).add_(counts, alpha=1.0 - self.mu)
        used = self.k_elem >= _REVIVAL_THRESHOLD
        if bool(used.all()):
            self.k.copy_(self.k_sum / self.k_elem[:, None])
            return 0
        fresh = _random_rows(flat, n_bins, generator)
        self.k.copy_(torch.where(used[:, None], self.k_sum / self.k_elem[:, None], fresh))
        # A revived code starts over as if it had been used once.
        self.k_sum.copy_(torch.where(used[:, None], self.k_sum, fresh))
        self.k_elem.copy_(torch.where(used, self.k_elem, torch.ones_like(self.k_elem)))
        return int((~used).sum())


class _Bottleneck(nn.Module):
    def __init__(self, levels: int, l_bins: int, emb: int, mu: float) -> None:
        super().__init__()
        self.level_blocks = nn.ModuleList(_Codebook(l_bins, emb, mu) for _ in range(levels))


class JukeboxVQVAE(nn.Module):
    """The torch module behind :class:`JukeboxCodec` (state dict in Jukebox's layout).

    ``forward`` is not used; call the encoders, decoders and codebooks by level.
    """

    def __init__(
        self,
        levels: int,
        downs_t: Sequence[int],
        strides_t: Sequence[int],
        emb_width: int,
        l_bins: int,
        widths: Sequence[int],
        depths: Sequence[int],
        m_conv: float,
        dilation_growth_rate: int,
        mu: float,
    ) -> None:
        super().__init__()
        encoders, decoders = [], []
        for level in range(levels):
            stack = {"depth": depths[level], "m_conv": m_conv, "growth": dilation_growth_rate}
            width = widths[level]
            down_blocks, up_blocks = [], []
            for b in range(level + 1):
                c_in = 1 if b == 0 else emb_width
                down_blocks.append(
                    _DownBlock(c_in, emb_width, downs_t[b], strides_t[b], width, stack)
                )
                up_blocks.append(_UpBlock(emb_width, downs_t[b], strides_t[b], width, stack))
            encoders.append(_Encoder(down_blocks))
            decoders.append(_Decoder(up_blocks, emb_width))
        self.encoders = nn.ModuleList(encoders)
        self.decoders = nn.ModuleList(decoders)
        self.bottleneck = _Bottleneck(levels, l_bins, emb_width, mu)

    def forward(self, *args: Any) -> None:  # pragma: no cover - guidance only
        raise RuntimeError("use JukeboxCodec.transform / quantize / decode, one level at a time")


# --------------------------------------------------------------------------- losses
def _random_rows(flat: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` random rows of ``flat``; tiled with a little noise when it has fewer."""
    if flat.shape[0] >= n:
        idx = torch.randperm(flat.shape[0], generator=generator, device="cpu")[:n]
        return flat[idx.to(flat.device)].clone()
    reps = math.ceil(n / max(flat.shape[0], 1))
    tiled = flat.repeat(reps, 1)[:n]
    noise = torch.randn(tiled.shape, generator=generator, device="cpu").to(flat.device)
    return tiled + noise * 0.01 / math.sqrt(flat.shape[1])


def multispectral_loss(
    target: torch.Tensor,
    estimate: torch.Tensor,
    n_ffts: Sequence[int],
    hops: Sequence[int],
    windows: Sequence[int],
) -> torch.Tensor:
    """Multi-resolution STFT loss between two batches of waveforms ``(batch, samples)``.

    For every resolution: spectral convergence (the Frobenius norm of the
    magnitude difference over that of the target) plus the mean absolute
    difference of log magnitudes; the result is averaged over resolutions.
    The log term keeps quiet passages and the noise floor in view, which a
    purely linear magnitude loss ignores. Magnitudes are floored at 1e-4
    (squared magnitudes at 1e-8), so the square root has a gradient at zero.
    It is :func:`conchshell._spectral.multi_resolution_stft` over the whole
    batch, the distance the evaluation reports per clip.
    """
    resolutions = zip(n_ffts, hops, windows, strict=True)
    return multi_resolution_stft(target, estimate, resolutions, power_floor=_POWER_FLOOR)


def linf_loss(target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Mean of the largest ``1/192`` absolute errors per clip (a soft L-infinity)."""
    err = (target - estimate).abs().reshape(target.shape[0], -1)
    k = max(1, round(err.shape[1] * _LINF_FRACTION))
    return err.topk(k, dim=1).values.mean()


# --------------------------------------------------------------------------- estimator
class JukeboxCodec(TransformerMixin, TorchComponent):
    """Jukebox-compatible multi-level VQ-VAE: audio <-> latents <-> codes.

    Parameters
    ----------
    sample_rate : int, default=16000
        Rate of the audio the codec reads and writes (ConchShell feeds 16 kHz
        audio to a codec first trained at 44.1 kHz; the network itself is
        rate-agnostic).
    levels : int, default=3
        Number of levels (independent auto-encoders).
    downs_t, strides_t : tuple of int, default=(3, 2, 2), (2, 2, 2)
        Level ``L`` adds ``downs_t[L]`` down-sampling steps of ``strides_t[L]``;
        the hop of level ``L`` is the product over levels ``0..L``.
    emb_width : int, default=64
        Latent channels.
    l_bins : int, default=2048
        Codebook size of every level.
    widths, depths : tuple of int, default=(64, 32, 32), (8, 4, 4)
        Channel width and residual depth of each level's encoder and decoder.
    m_conv : float, default=1.0
        Hidden width of a residual unit relative to ``width``.
    dilation_growth_rate : int, default=3
        Residual unit ``i`` uses dilation ``dilation_growth_rate ** i``.
    mu : float, default=0.99
        EMA decay of the codebooks.
    commit : float, default=0.02
        Weight of the commitment loss.
    spectral : float, default=1.0
        Weight of the multi-resolution spectral loss (see
        :func:`multispectral_loss`).
    linf : float, default=0.02
        Weight of the L-infinity term (mean of the largest 1/192 absolute
        errors of each crop) added to the L2 reconstruction loss.
    n_ffts, hops, windows : tuple of int
        STFT sizes, hops and window lengths of the spectral loss, in samples.
    weights : str or path-like, optional
        A weight file loaded by :meth:`initialize`: the official Jukebox
        ``vqvae.pth.tar`` (or any torch file in that structure) or a
        ``.safetensors`` file written by :meth:`save`. Loading is strict.
    frozen : bool, default=False
        Build the codec with ``requires_grad=False`` on every parameter (see
        :meth:`freeze`); decoding stays differentiable w.r.t. its input.
    max_steps : int, default=2000
        Training steps of :meth:`fit`.
    max_time : float, optional
        Wall-clock budget of :meth:`fit` in seconds; training stops at
        whichever of ``max_steps`` and ``max_time`` comes first.
    batch_size : int, default=4
        Crops per training step; also the chunk size of inference.
    lr : float, default=3e-4
        AdamW learning rate.
    lr_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"`` anneals the learning rate from ``lr`` to zero over the
        training budget: the fraction done is the larger of ``step /
        max_steps`` and ``elapsed / max_time``, so a time-limited run still
        ends at a small rate.
    segment_length : int, default=16384
        Length in samples of the random training crops (rounded up to the
        largest hop).
    checkpoint_dir : str or path-like, optional
        Where :meth:`fit` writes ``codec-last.safetensors`` every
        ``checkpoint_every`` steps and at the end (atomically).
    checkpoint_every : int, default=500
        Steps between checkpoints.
    verbose : int, default=1
        0 silences the progress bar.
    device : {"auto", "cpu", "cuda"}, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the crops and the codebook seeding.

    Attributes
    ----------
    module_ : JukeboxVQVAE
        The network (state dict in the official Jukebox layout).
    history_ : list of dict
        One entry per training step, in :mod:`conchshell.training`'s format:
        ``step``, the total ``loss`` and, per level ``L``, the terms
        ``recons_L``, ``spectral_L``, ``commit_L``, the number of distinct
        codes the batch used ``used_L``, their perplexity ``perplexity_L``
        and the number of codes re-seeded ``revived_L``; the learning rate
        ``lr`` of the step, ``seconds`` since ``fit`` started and
        ``n_skipped``, the steps so far whose update was skipped. Such a step
        (non-finite loss or gradient) carries ``skipped`` with the reason.
    n_steps_ : int
        Steps :meth:`fit` ran.

    Examples
    --------
    >>> codec = JukeboxCodec.sized("tiny", random_state=0).initialize()
    >>> audio = torch.randn(2, 1000)
    >>> codec.transform(audio, level="deep").shape[1:]
    torch.Size([16, 500])
    >>> codec.decode(codec.encode(audio, level="deep"), level="deep", length=1000).shape
    torch.Size([2, 1000])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        levels: int = 3,
        downs_t: tuple[int, ...] = (3, 2, 2),
        strides_t: tuple[int, ...] = (2, 2, 2),
        emb_width: int = 64,
        l_bins: int = 2048,
        widths: tuple[int, ...] = (64, 32, 32),
        depths: tuple[int, ...] = (8, 4, 4),
        m_conv: float = 1.0,
        dilation_growth_rate: int = 3,
        mu: float = 0.99,
        commit: float = 0.02,
        spectral: float = 1.0,
        linf: float = 0.02,
        n_ffts: tuple[int, ...] = (2048, 1024, 512),
        hops: tuple[int, ...] = (240, 120, 50),
        windows: tuple[int, ...] = (1200, 600, 240),
        weights: str | os.PathLike | None = None,
        frozen: bool = False,
        max_steps: int = 2000,
        max_time: float | None = None,
        batch_size: int = 4,
        lr: float = 3e-4,
        lr_schedule: str = "constant",
        segment_length: int = 16384,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 500,
        verbose: int = 1,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.levels = levels
        self.downs_t = downs_t
        self.strides_t = strides_t
        self.emb_width = emb_width
        self.l_bins = l_bins
        self.widths = widths
        self.depths = depths
        self.m_conv = m_conv
        self.dilation_growth_rate = dilation_growth_rate
        self.mu = mu
        self.commit = commit
        self.spectral = spectral
        self.linf = linf
        self.n_ffts = n_ffts
        self.hops = hops
        self.windows = windows
        self.weights = weights
        self.frozen = frozen
        self.max_steps = max_steps
        self.max_time = max_time
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.segment_length = segment_length
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.verbose = verbose
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ sizes
    @classmethod
    def sized(cls, size: str, **overrides: Any) -> JukeboxCodec:
        """A codec of one of the library's sizes (see :data:`conchshell.base.SIZES`).

        - ``"paper"``: the released Jukebox VQ-VAE's shape (3 levels, hops
          8/32/128, 2048 codes): the constructor's defaults, 1,485,763 parameters.
        - ``"small"``: the paper's hops and latent width, narrower and
          shallower (242,435 parameters). Latents keep the paper's shapes
          ([64, 16000], [64, 4000], [64, 1000] for 8 s), so a generator sized
          for the paper fits it. Most of the compute goes to the Deep level
          (width 32, depth 3; the others width 16, depth 2), codebooks keep the
          paper's 2048 codes (512 measured worse: Deep PESQ 2.51 against 2.87
          after 15 minutes), and short crops (8192 samples, batch 2) give many
          cheap steps: it trains on two CPU cores in minutes
          (``bench/codec.py`` measures how far it gets in 15). The learning
          rate anneals to zero over the budget (cosine): with a constant 2e-3
          the Deep PESQ after 15 minutes was 2.87, with the schedule 3.008
          (``docs/training.md`` gives the figures).
        - ``"tiny"``: a minute model for tests: hops 2/4/8, 16-dim latents, 32 codes.

        A size only picks values of ordinary constructor parameters, so
        ``get_params`` shows them, and ``clone``, pickling and :meth:`save`
        keep them.

        Parameters
        ----------
        size : {"paper", "small", "tiny"}
            Which size.
        **overrides
            Constructor parameters that replace the size's, e.g.
            ``weights="vqvae.pth.tar"``.

        Returns
        -------
        JukeboxCodec
            An unfitted codec.

        Examples
        --------
        >>> JukeboxCodec.sized("small", random_state=0).widths
        (32, 16, 16)
        """
        return cls(**{**_SIZED[check_size(size)], **overrides})

    @classmethod
    def paper(cls, **overrides: Any) -> JukeboxCodec:
        """``JukeboxCodec.sized("paper", **overrides)``: an alias kept for earlier code.

        Parameters
        ----------
        **overrides
            Constructor parameters that replace the size's.

        Returns
        -------
        JukeboxCodec
        """
        return cls.sized("paper", **overrides)

    @classmethod
    def small(cls, **overrides: Any) -> JukeboxCodec:
        """``JukeboxCodec.sized("small", **overrides)``: an alias kept for earlier code.

        Parameters
        ----------
        **overrides
            Constructor parameters that replace the size's.

        Returns
        -------
        JukeboxCodec
        """
        return cls.sized("small", **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> JukeboxCodec:
        """``JukeboxCodec.sized("tiny", **overrides)``: an alias kept for earlier code.

        Parameters
        ----------
        **overrides
            Constructor parameters that replace the size's.

        Returns
        -------
        JukeboxCodec
        """
        return cls.sized("tiny", **overrides)

    # ------------------------------------------------------------------ building
    def _validate_params(self) -> None:
        for name in ("sample_rate", "levels", "emb_width", "l_bins", "batch_size"):
            check_positive_int(getattr(self, name), name)
        for name in ("max_steps", "segment_length", "checkpoint_every", "dilation_growth_rate"):
            check_positive_int(getattr(self, name), name)
        for name in ("downs_t", "strides_t", "widths", "depths"):
            value = getattr(self, name)
            if not isinstance(value, Sequence) or len(value) != self.levels:
                raise ValueError(f"{name} needs one entry per level ({self.levels}), got {value!r}")
            for v in value:
                check_positive_int(v, name)
        for name in ("n_ffts", "hops", "windows"):
            value = getattr(self, name)
            if not isinstance(value, Sequence) or len(value) != len(self.n_ffts) or not value:
                raise ValueError(
                    f"n_ffts, hops and windows must be equally long, got {name}={value!r}"
                )
            for v in value:
                check_positive_int(v, name)
        for n_fft, win in zip(self.n_ffts, self.windows, strict=True):
            if win > n_fft:
                raise ValueError(f"each window must be <= its n_fft, got {win} > {n_fft}")
        if not 0.0 <= float(self.mu) < 1.0:
            raise ValueError(f"mu must lie in [0, 1), got {self.mu!r}")
        for name in ("commit", "spectral", "linf", "m_conv", "lr"):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")
        if int(self.m_conv * min(self.widths)) < 1:
            raise ValueError(f"m_conv={self.m_conv!r} leaves residual units with no channels")
        if self.max_time is not None and not float(self.max_time) > 0:
            raise ValueError(f"max_time must be positive seconds or None, got {self.max_time!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    def _build_module(self) -> JukeboxVQVAE:
        self._validate_params()
        return JukeboxVQVAE(
            levels=self.levels,
            downs_t=self.downs_t,
            strides_t=self.strides_t,
            emb_width=self.emb_width,
            l_bins=self.l_bins,
            widths=self.widths,
            depths=self.depths,
            m_conv=self.m_conv,
            dilation_growth_rate=self.dilation_growth_rate,
            mu=self.mu,
        )

    def initialize(self) -> JukeboxCodec:
        """Build the network with seeded weights, load ``weights`` if given, freeze if asked.

        Returns
        -------
        self
        """
        super().initialize()
        if self.weights is not None:
            self._load_weights(self.weights)
        if self.frozen:
            self.freeze()
        return self

    def _load_weights(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if path.suffix == ".safetensors":
            state, _ = _read_safetensors(path)
            ema = {k: state.pop(k) for k in list(state) if k.rsplit(".", 1)[-1] in _EMA_KEYS}
        else:
            state, ema = load_jukebox_checkpoint(path), {}
        load_state_dict_strict(self.module_, state, str(path))
        for level, block in enumerate(self.module_.bottleneck.level_blocks):
            block.reset_ema()
            prefix = f"bottleneck.level_blocks.{level}."
            if prefix + "k_sum" in ema and prefix + "k_elem" in ema:
                block.k_sum.copy_(ema[prefix + "k_sum"])
                block.k_elem.copy_(ema[prefix + "k_elem"])

    def freeze(self) -> JukeboxCodec:
        """Stop every parameter from training; decoding stays differentiable in its input.

        Returns
        -------
        self
        """
        self._ensure_initialized()
        for p in self.module_.parameters():
            p.requires_grad_(False)
        self.module_.eval()
        return self

    # ------------------------------------------------------------------ sizes
    def hop_length(self, level: str | int) -> int:
        """Samples per latent step at ``level`` (8, 32, 128 with the paper's settings).

        Parameters
        ----------
        level : {"deep", "low", "high"} or int
            The latent level (0, 1, 2 for deep, low, high).

        Returns
        -------
        int
            The product of ``stride ** down`` over the levels up to ``level``.
        """
        index = self._level(level)
        factors = zip(self.strides_t[: index + 1], self.downs_t[: index + 1], strict=True)
        return int(np.prod([stride**down for stride, down in factors]))

    def latent_length(self, n_samples: int, level: str | int) -> int:
        """Latent steps for ``n_samples`` of audio (padded up to a whole hop).

        Parameters
        ----------
        n_samples : int
            Length of the audio, in samples (>= 0).
        level : {"deep", "low", "high"} or int
            The latent level.

        Returns
        -------
        int
            ``ceil(n_samples / hop_length(level))``.
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
            raise ValueError(f"n_samples must be an int, got {n_samples!r}")
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        return math.ceil(n_samples / self.hop_length(level))

    def receptive_field(self, level: str | int) -> int:
        """Audio samples one latent step of ``level`` depends on (its encoder's receptive field).

        Encoding a stretch of audio that reaches this far beyond a latent step
        on either side gives that step as encoding the whole clip does (up to
        rounding), which lets a training step encode only the frames it uses.

        Parameters
        ----------
        level : {"deep", "low", "high"} or int

        Returns
        -------
        int
            ``1 + sum((kernel - 1) * dilation * jump)`` over the encoder's
            convolutions in order, ``jump`` being the product of the strides
            before each.
        """
        self._check_initialized()
        field, jump = 1, 1
        for layer in self.module_.encoders[self._level(level)].modules():
            if isinstance(layer, nn.Conv1d):
                field += (layer.kernel_size[0] - 1) * layer.dilation[0] * jump
                jump *= layer.stride[0]
        return field

    def _level(self, level: str | int) -> int:
        index = level_index(level)
        if index >= self.levels:
            raise ValueError(f"level {level!r} does not exist in a {self.levels}-level codec")
        return index

    # ------------------------------------------------------------------ inference
    def _check_audio(self, audio: Any, name: str = "audio") -> torch.Tensor:
        x = check_tensor(audio, name=name, ndim=(1, 2, 3), device=self.device_)
        if x.ndim == 3:
            if x.shape[1] != 1:
                raise ValueError(
                    f"{name} must be mono (batch, samples) or (batch, 1, samples), "
                    f"got shape {tuple(x.shape)}"
                )
            x = x[:, 0]
        elif x.ndim == 1:
            x = x[None]
        if x.shape[-1] == 0:
            raise ValueError(f"{name} has no samples (shape {tuple(x.shape)})")
        return x

    def _pad(self, x: torch.Tensor, level: int) -> torch.Tensor:
        hop = self.hop_length(level)
        extra = (-x.shape[-1]) % hop
        return F.pad(x, (0, extra)) if extra else x

    def _encode_raw(self, x: torch.Tensor, level: int) -> torch.Tensor:
        return self.module_.encoders[level](x[:, None, :])

    def transform(self, audio: Any, level: str | int = "deep") -> torch.Tensor:
        """Continuous (pre-quantisation) latents of one level.

        Parameters
        ----------
        audio : array-like or torch.Tensor, shape (batch, samples)
            Mono audio at ``sample_rate`` (``(samples,)`` and
            ``(batch, 1, samples)`` are accepted). Lengths that are not a
            multiple of the hop are zero-padded.
        level : {"deep", "low", "high"} or {0, 1, 2}, default="deep"

        Returns
        -------
        torch.Tensor, shape (batch, emb_width, latent_length)
            On ``device_``, computed without gradients.
        """
        self._check_initialized()
        index = self._level(level)
        x = self._pad(self._check_audio(audio), index)
        with torch.no_grad(), _eval(self.module_):
            parts = [self._encode_raw(chunk, index) for chunk in x.split(self.batch_size)]
        return torch.cat(parts)

    def fit_transform(
        self, audio: Any, y: Any = None, *, level: str | int = "deep"
    ) -> torch.Tensor:
        """Train on ``audio``, then return its latents (:meth:`fit`, then :meth:`transform`).

        ``level`` goes to :meth:`transform` (every level is trained). Unlike
        :meth:`fit`, this takes only an audio array: a dataset's clips may
        differ in length, so they have no single latent batch to return.

        Parameters
        ----------
        audio : array-like or torch.Tensor of shape (n_clips, samples)
            Mono clips at ``sample_rate`` (``(samples,)`` is one clip).
        y : ignored
        level : {"deep", "low", "high"} or {0, 1, 2}, default="deep"
            Level whose latents are returned.

        Returns
        -------
        torch.Tensor of shape (n_clips, emb_width, latent_length)
            What :meth:`transform` returns for ``audio`` at ``level``.
        """
        if not isinstance(audio, torch.Tensor | np.ndarray | list | tuple):
            raise TypeError(
                f"fit_transform takes an audio array (n_clips, samples), got "
                f"{type(audio).__name__}; fit a dataset with fit, then transform its audio"
            )
        return self.fit(audio, y).transform(audio, level=level)

    def quantize(
        self, latents: Any, level: str | int = "deep"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Snap latents to their nearest codebook vectors, with a straight-through gradient.

        Parameters
        ----------
        latents : torch.Tensor, shape (batch, emb_width, time)
        level : {"deep", "low", "high"} or {0, 1, 2}, default="deep"

        Returns
        -------
        quantized : torch.Tensor, shape (batch, emb_width, time)
            The codebook vectors in the forward pass; in the backward pass the
            gradient goes to ``latents`` unchanged.
        codes : torch.Tensor of int64, shape (batch, time)
        """
        self._check_initialized()
        index = self._level(level)
        z = self._check_latents(latents)
        return self._quantize(z, index)

    def snap(self, latents: Any, level: str | int = "deep") -> torch.Tensor:
        """The nearest codebook vector of each latent frame, exactly (no gradient path).

        ``quantize(latents)[0]`` equals these vectors only up to float rounding
        (``z + (snapped - z)``); this is the codebook's rows themselves, what
        ``lookup(quantize(latents)[1])`` gives, from one search.

        Parameters
        ----------
        latents : torch.Tensor, shape (batch, emb_width, time)
        level : {"deep", "low", "high"} or {0, 1, 2}, default="deep"

        Returns
        -------
        torch.Tensor, shape (batch, emb_width, time)
            On ``device_``.
        """
        self._check_initialized()
        index = self._level(level)
        z = self._check_latents(latents)
        return self._snap(z, index)[0].detach()

    def _snap(self, z: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        book = self.module_.bottleneck.level_blocks[level]
        codes = book.nearest(rearrange(z, "b c t -> (b t) c"))
        snapped = rearrange(book.k[codes], "(b t) c -> b c t", b=z.shape[0])
        return snapped, codes.reshape(z.shape[0], z.shape[2])

    def _quantize(self, z: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        snapped, codes = self._snap(z, level)
        # Straight-through: forward the codebook vector, backward the identity.
        return z + (snapped - z).detach(), codes

    def encode(self, audio: Any, level: str | int = "deep") -> torch.Tensor:
        """Discrete codes of one level.

        Parameters
        ----------
        audio : array-like or torch.Tensor, shape (batch, samples)
        level : {"deep", "low", "high"} or {0, 1, 2}, default="deep"

        Returns
        -------
        torch.Tensor of int64, shape (batch, latent_length)
        """
        latents = self.transform(audio, level)
        with torch.no_grad():
            return self._quantize(latents, self._level(level))[1]

    def _check_latents(self, latents: Any) -> torch.Tensor:
        if isinstance(latents, torch.Tensor) and latents.is_floating_point():
            z = latents.to(self.device_, torch.float32)  # .to keeps the autograd graph
            if z.ndim != 3 or z.shape[1] != self.emb_width:
                raise ValueError(
                    f"latents must have shape (batch, {self.emb_width}, time), got {tuple(z.shape)}"
                )
            if z.shape[0] == 0 or z.shape[2] == 0:
                raise ValueError(f"latents are empty (shape {tuple(z.shape)})")
            if not all_finite(z):
                raise ValueError("latents contain NaN or infinite values")
            return z
        return check_tensor(
            latents, name="latents", ndim=3, shape=(None, self.emb_width, None), device=self.device_
        )

    def decode(
        self,
        codes_or_latents: Any,
        level: str | int = "deep",
        length: int | None = None,
        quantize: bool = False,
    ) -> torch.Tensor:
        """Audio from codes or latents of one level, differentiable w.r.t. latents.

        Parameters
        ----------
        codes_or_latents : torch.Tensor
            Integer codes of shape ``(batch, time)`` (looked up in the
            codebook), or float latents of shape ``(batch, emb_width, time)``,
            decoded as given (pass ``quantize=True`` to snap them first, with a
            straight-through gradient).
        level : {"deep", "low", "high"} or {0, 1, 2}, default="deep"
        length : int, optional
            Trim the output to this many samples (e.g. the length before
            padding to a whole hop).
        quantize : bool, default=False
            Snap float latents to the codebook before decoding.

        Returns
        -------
        torch.Tensor, shape (batch, time * hop_length(level))
            On ``device_``. No ``no_grad`` is applied, so a loss on this audio
            sends gradient into float latents (and into the decoder unless
            it is frozen).
        """
        self._check_initialized()
        index = self._level(level)
        x = codes_or_latents
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if isinstance(x, torch.Tensor) and not x.is_floating_point():
            z = self._lookup(x, index)
        else:
            z = self._check_latents(x)
            if quantize:
                z = self._quantize(z, index)[0]
        with _eval(self.module_):
            audio = torch.cat([self.module_.decoders[index](c) for c in z.split(self.batch_size)])
        audio = audio[:, 0]
        if length is not None:
            check_positive_int(length, "length")
            if length > audio.shape[-1]:
                raise ValueError(f"length={length} exceeds the {audio.shape[-1]} decoded samples")
            audio = audio[:, :length]
        return audio

    inverse_transform = decode

    def lookup(self, codes: Any, level: str | int = "deep") -> torch.Tensor:
        """The codebook vectors of integer codes (what :meth:`decode` decodes).

        Parameters
        ----------
        codes : torch.Tensor of int, shape (batch, time)
            Codes in ``[0, l_bins)``, as :meth:`encode` gives them.
        level : {"deep", "low", "high"} or {0, 1, 2}, default="deep"

        Returns
        -------
        torch.Tensor, shape (batch, emb_width, time)
            On ``device_``; exactly the codebook's rows.
        """
        self._check_initialized()
        codes = torch.as_tensor(codes)
        if codes.is_floating_point():
            raise TypeError(f"codes must be integers, got {codes.dtype}")
        return self._lookup(codes, self._level(level))

    def _lookup(self, codes: torch.Tensor, level: int) -> torch.Tensor:
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must have shape (batch, time), got {tuple(codes.shape)}")
        if codes.dtype == torch.bool:
            raise TypeError("codes must be integers, got bool")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.l_bins:
            raise ValueError(f"codes must lie in [0, {self.l_bins}), got values in [{lo}, {hi}]")
        book = self.module_.bottleneck.level_blocks[level].k
        return rearrange(book[codes.to(self.device_).long()], "b t c -> b c t")

    def reconstruct(self, audio: Any, level: str | int = "deep") -> torch.Tensor:
        """Encode, quantise and decode ``audio``, trimmed back to its length (no gradients).

        Parameters
        ----------
        audio : array-like or torch.Tensor
            Mono audio ``(batch, samples)``.
        level : {"deep", "low", "high"} or int, default "deep"
            The level whose codes carry the audio.

        Returns
        -------
        torch.Tensor, shape (batch, samples)
        """
        self._check_initialized()
        x = self._check_audio(audio)
        codes = self.encode(x, level)
        with torch.no_grad():
            return self.decode(codes, level, length=x.shape[-1])

    # ------------------------------------------------------------------ training
    def fit(self, audio: Any, y: Any = None) -> JukeboxCodec:
        """Train every level on random crops of ``audio``.

        Parameters
        ----------
        audio : array-like or torch.Tensor of shape (n_clips, samples), or a dataset
            Mono clips at ``sample_rate``; or a dataset whose items are
            ``(image, waveform, category)`` (its waveforms are used). A
            library dataset (``load_bop``, ``load_pairs``) contributes each
            distinct piece once, unaugmented, through its ``stack_audio``;
            the random crops come from the codec's own seeded stream.
        y : ignored

        Returns
        -------
        self
        """
        if self.frozen:
            raise ValueError("this codec was built with frozen=True; set frozen=False to fit it")
        self.initialize()
        clips = self._training_clips(audio)
        module = self.module_
        seg = self._segment_length()
        clips = [F.pad(c, (0, seg - c.numel())) if c.numel() < seg else c for c in clips]
        gen = torch.Generator().manual_seed(self.seed_)
        optimizer = torch.optim.AdamW(module.parameters(), lr=float(self.lr))
        self.history_ = []
        module.train()
        step = 0
        # With a time budget the step count is open-ended: show a plain counter.
        total = self.max_steps if self.max_time is None else None
        log = TrainingLog(
            desc="codec",
            total=total,
            verbose=self.verbose,
            history=self.history_,
            max_time=self.max_time,
            leave=False,
        )
        if self.lr_schedule == "cosine":
            # read when the scheduler steps: after each step, for the next one
            schedule = budget_cosine_schedule(
                optimizer, lambda: self._budget_spent(step, log.elapsed)
            )
        else:
            schedule = constant_schedule(optimizer)
        try:
            while step < self.max_steps and not log.out_of_time():
                rate = optimizer.param_groups[0]["lr"]
                batch = self._sample_batch(clips, seg, gen)
                step += 1
                record = self._train_step(batch, optimizer, gen, step=step)
                record["lr"] = rate
                log.log(record)
                if self.checkpoint_dir is not None and step % self.checkpoint_every == 0:
                    self.save(Path(self.checkpoint_dir) / "codec-last.safetensors")
                schedule.step()
        finally:
            log.close()
            module.eval()
        self.n_steps_ = step
        if self.checkpoint_dir is not None:
            self.save(Path(self.checkpoint_dir) / "codec-last.safetensors")
        return self

    def _budget_spent(self, step: int, elapsed: float) -> float:
        """Share of the training budget used: the larger of steps and time."""
        done = step / self.max_steps
        if self.max_time is not None:
            done = max(done, elapsed / float(self.max_time))
        return done

    def _segment_length(self) -> int:
        top = self.hop_length(self.levels - 1)
        seg = math.ceil(self.segment_length / top) * top
        if seg <= max(self.n_ffts) // 2:
            raise ValueError(
                f"segment_length={self.segment_length} is too short for the spectral loss "
                f"(n_fft up to {max(self.n_ffts)})"
            )
        return seg

    def _training_clips(self, audio: Any) -> list[torch.Tensor]:
        paths = getattr(audio, "audio_paths", None)
        if hasattr(audio, "stack_audio") and paths is not None:
            # A library dataset: many images share a piece, so read each piece once.
            first: dict[str, int] = {}
            for i, p in enumerate(paths):
                first.setdefault(str(p), i)
            if not first:
                raise ValueError("the dataset given to fit is empty")
            x = audio.stack_audio(sorted(first.values()))
            return list(check_tensor(x, name="dataset audio", ndim=2).unbind(0))
        if isinstance(audio, torch.utils.data.Dataset) or (
            hasattr(audio, "__getitem__") and hasattr(audio, "__len__") and _is_item_dataset(audio)
        ):
            if len(audio) == 0:
                raise ValueError("the dataset given to fit is empty")
            clips = []
            for i in range(len(audio)):
                wave = audio[i][1]
                clips.append(self._check_audio(wave, name=f"waveform of item {i}").reshape(-1))
            return [c.cpu() for c in clips]
        x = check_tensor(audio, name="audio", ndim=(1, 2))
        if x.ndim == 1:
            x = x[None]
        if x.shape[-1] == 0:
            raise ValueError(f"audio has no samples (shape {tuple(x.shape)})")
        return list(x.unbind(0))

    def _sample_batch(self, clips: list[torch.Tensor], seg: int, gen: torch.Generator):
        picks = torch.randint(len(clips), (self.batch_size,), generator=gen).tolist()
        rows = []
        for i in picks:
            clip = clips[i]
            offset = int(torch.randint(clip.numel() - seg + 1, (1,), generator=gen))
            rows.append(clip[offset : offset + seg])
        return torch.stack(rows).to(self.device_)

    def _train_step(
        self,
        x: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        gen: torch.Generator,
        step: int | None = None,
    ) -> dict[str, Any]:
        module = self.module_
        total = x.new_zeros(())
        record: dict[str, Any] = {} if step is None else {"step": step}
        for level in range(self.levels):
            z = module.encoders[level](x[:, None, :])
            book = module.bottleneck.level_blocks[level]
            flat = rearrange(z, "b c t -> (b t) c")
            if not book.initialised:
                book.seed_from(flat.detach(), gen)
            codes = book.nearest(flat)
            snapped = book.k[codes].detach()
            commit = F.mse_loss(flat, snapped)
            quantized = rearrange(
                flat + (snapped - flat).detach(), "(b t) c -> b c t", b=x.shape[0]
            )
            x_hat = module.decoders[level](quantized)[:, 0]
            recons = F.mse_loss(x_hat, x) + float(self.linf) * linf_loss(x, x_hat)
            spec = multispectral_loss(x, x_hat, self.n_ffts, self.hops, self.windows)
            total = total + recons + float(self.spectral) * spec + float(self.commit) * commit
            revived = book.ema_update(flat, codes, gen)
            counts = torch.bincount(codes, minlength=book.k.shape[0]).float()
            probs = counts / counts.sum()
            entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
            record[f"recons_{level}"] = float(recons.detach())
            record[f"spectral_{level}"] = float(spec.detach())
            record[f"commit_{level}"] = float(commit.detach())
            record[f"used_{level}"] = int((counts > 0).sum())
            record[f"perplexity_{level}"] = float(entropy.exp())
            record[f"revived_{level}"] = revived
        optimizer.zero_grad(set_to_none=True)
        # A non-finite loss or gradient skips the update and says so in the record.
        guarded_step(total, module, optimizer, record, desc="codec")
        record["loss"] = float(total.detach())
        return record

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights and EMA statistics to a ``.safetensors`` file, atomically.

        The file also records the constructor parameters, so :meth:`load`
        rebuilds the same codec; ``JukeboxCodec(weights=path)`` loads it into
        a codec built with matching parameters.

        Parameters
        ----------
        path : str or os.PathLike
            Destination; must end in ``.safetensors``. Missing folders are created.

        Returns
        -------
        pathlib.Path
        """
        from safetensors.torch import save as safetensors_bytes

        self._check_initialized()
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"save writes .safetensors files, got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        for level, block in enumerate(self.module_.bottleneck.level_blocks):
            for name in _EMA_KEYS:
                key = f"bottleneck.level_blocks.{level}.{name}"
                tensors[key] = getattr(block, name).detach().cpu().contiguous()
        params = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in self.get_params().items()
            if k not in ("weights", "checkpoint_dir", "random_state", "device")
        }
        metadata = {"format": _FORMAT, "params": json.dumps(params)}
        with atomic_write(path) as fh:
            fh.write(safetensors_bytes(tensors, metadata=metadata))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> JukeboxCodec:
        """Rebuild a codec saved by :meth:`save` (parameters and weights).

        Parameters
        ----------
        path : str or path-like
            A ``.safetensors`` file written by :meth:`save`.
        **overrides
            Constructor parameters to change (``device``, ``frozen`` ...).

        Returns
        -------
        JukeboxCodec
            Initialised with the file's weights.
        """
        _, metadata = _read_safetensors(Path(path))
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} was not written by JukeboxCodec.save")
        params = json.loads(metadata["params"])
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()}
        params.update(weights=str(path))
        params.update(overrides)
        return cls(**params).initialize()


# --------------------------------------------------------------------------- helpers
class _eval:
    """Run a block with the module in eval mode, restoring its previous mode."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __enter__(self) -> None:
        self.was_training = self.module.training
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


def _is_item_dataset(obj: Any) -> bool:
    if isinstance(obj, np.ndarray | torch.Tensor | list):
        return False
    try:
        item = obj[0]
    except Exception:
        return False
    return isinstance(item, tuple | list) and len(item) >= 2


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc
    return tensors, metadata
