"""The velocity network of the flow-matching generator (see :mod:`conchshell.gan.flow`).

A one-dimensional convolutional network over a latent sequence, local in
time, conditioned on the flow time, the image's category and its video
feature through per-block scales and shifts (FiLM). The time axis is first
folded into channels (``fold`` frames per step), so the convolutions run
on a sequence ``fold`` times shorter; a second, coarser stage (``stride``
times shorter again) widens the receptive field to about half a second at
the Deep level, enough for the rhythm of a few notes.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

__all__ = ["FlowNet"]


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    # Sinusoids of the flow time in [0, 1], at log-spaced frequencies.
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


class _Block(nn.Module):
    """Pre-norm residual block: GroupNorm, FiLM, GELU, dilated conv, GELU, 1x1 conv."""

    def __init__(self, channels: int, cond_dim: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels, affine=False)
        self.film = nn.Linear(cond_dim, 2 * channels)
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        # Each block starts as the identity, so a deep stack trains from the first step.
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[..., None].chunk(2, 1)
        h = self.norm(x) * (1 + scale) + shift
        h = self.mix(F.gelu(self.conv(F.gelu(h))))
        return x + h


class FlowNet(nn.Module):
    """Velocity ``v(x_t, t | category, feature)`` over ``(batch, emb_width, frames)``.

    Parameters
    ----------
    emb_width : int
        Latent channels.
    in_features : int
        Size of the video feature.
    n_categories : int
        Number of categories; one more embedding row stands for "no
        category", which classifier-free guidance uses.
    channels : int
        Width of the fine stage (the coarse stage is twice as wide).
    fold : int
        Frames folded into channels before the first convolution.
    stride : int
        Length ratio of the coarse stage to the fine one.
    dilations : tuple of int
        Dilations of the fine stage's blocks (before and after the coarse one, each).
    coarse_dilations : tuple of int
        Dilations of the coarse stage's blocks.
    cond_dim : int
        Size of the conditioning vector.
    """

    def __init__(
        self,
        emb_width: int,
        in_features: int,
        n_categories: int,
        channels: int = 128,
        fold: int = 4,
        stride: int = 4,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        coarse_dilations: tuple[int, ...] = (1, 2, 4, 8, 16),
        cond_dim: int = 256,
    ) -> None:
        super().__init__()
        self.emb_width, self.fold, self.stride = emb_width, fold, stride
        self.cond_dim = cond_dim
        self.category = nn.Embedding(n_categories + 1, cond_dim)
        self.feature = nn.Linear(in_features, cond_dim)
        self.time = nn.Sequential(
            nn.Linear(cond_dim, cond_dim), nn.GELU(), nn.Linear(cond_dim, cond_dim)
        )
        self.cond = nn.Sequential(nn.GELU(), nn.Linear(cond_dim, cond_dim))
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_scale", torch.ones(in_features))
        self.register_buffer("latent_mean", torch.zeros(emb_width))
        self.register_buffer("latent_scale", torch.ones(emb_width))
        self.inp = nn.Conv1d(emb_width * fold, channels, 3, padding=1)
        self.down_blocks = nn.ModuleList(_Block(channels, cond_dim, d) for d in dilations)
        wide = 2 * channels
        self.down = nn.Conv1d(channels, wide, stride, stride=stride)
        self.coarse = nn.ModuleList(_Block(wide, cond_dim, d) for d in coarse_dilations)
        self.up = nn.ConvTranspose1d(wide, channels, stride, stride=stride)
        self.up_blocks = nn.ModuleList(_Block(channels, cond_dim, d) for d in dilations)
        self.out = nn.Conv1d(channels, emb_width * fold, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def granule(self) -> int:
        """Frames the length must be a multiple of."""
        return self.fold * self.stride

    @property
    def null_category(self) -> int:
        """The embedding row that stands for "no category" (classifier-free guidance)."""
        return self.category.num_embeddings - 1

    def condition(
        self, t: torch.Tensor, categories: torch.Tensor, features: torch.Tensor | None
    ) -> torch.Tensor:
        """The conditioning vector of each row.

        Parameters
        ----------
        t : torch.Tensor of shape (n,)
            Flow times in ``[0, 1]``.
        categories : torch.Tensor of shape (n,), int
            Category ids; :attr:`null_category` for none.
        features : torch.Tensor of shape (n, in_features) or None
            Video features (unscaled); ``None`` leaves them out.

        Returns
        -------
        torch.Tensor of shape (n, cond_dim)
        """
        c = self.category(categories)
        if features is not None:
            x = (features - self.feature_mean) / self.feature_scale
            c = c + self.feature(x)
        return self.cond(c + self.time(_time_embedding(t, self.cond_dim).to(c.dtype)))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        categories: torch.Tensor,
        features: torch.Tensor | None,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """Velocity at ``x`` (standardised latents) and flow time ``t``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, emb_width, frames)
            The point on the flow, any number of frames.
        t : torch.Tensor of shape (n,)
            Flow time of each row.
        categories : torch.Tensor of shape (n,), int
            Category ids.
        features : torch.Tensor of shape (n, in_features) or None
            Video features.
        guidance : float, default=1.0
            With ``w != 1``, the classifier-free guided velocity
            ``v(no condition) + w (v(condition) - v(no condition))``, both
            halves in one pass of twice the rows.

        Returns
        -------
        torch.Tensor of shape (n, emb_width, frames)
        """
        if guidance == 1.0:
            return self._velocity(x, t, categories, features)
        null = torch.full_like(categories, self.null_category)
        if features is not None:
            mean = self.feature_mean.to(features.dtype).expand_as(features)
            features = torch.cat([features, mean])
        v = self._velocity(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([categories, null]), features
        )
        cond, uncond = v.chunk(2)
        return uncond + guidance * (cond - uncond)

    def _velocity(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        categories: torch.Tensor,
        features: torch.Tensor | None,
    ) -> torch.Tensor:
        cond = self.condition(t, categories, features)
        length = x.shape[-1]
        pad = -length % self.granule
        if pad:
            x = F.pad(x, (0, pad), mode="reflect" if pad < length else "replicate")
        h = self.inp(rearrange(x, "b c (t f) -> b (c f) t", f=self.fold))
        skip = []
        for block in self.down_blocks:
            h = block(h, cond)
            skip.append(h)
        g = self.down(h)
        for block in self.coarse:
            g = block(g, cond)
        h = h + self.up(g)
        for block in self.up_blocks:
            h = block(h + skip.pop(), cond)
        v = rearrange(self.out(h), "b (c f) t -> b c (t f)", f=self.fold)
        return v[..., :length]
