"""The ConchShell generators: video feature + image category -> continuous Jukebox latents.

Each Jukebox level has its own generator (Table 1 of the paper; structures from the authors' code):

- **G-High** (level 2, hop 128, 1000 frames for 8 s) is a *strided* stack: a
  Linear layer spreads the conditioned feature over a 1-channel sequence,
  convolutions (two of them with stride 2) and residual blocks turn it into
  channels, and a last convolution lands on exactly ``n_frames`` steps.
- **G-Low** and **G-Deep** (levels 1 and 0) are *pooled* stacks: six stages of
  reflection padding, a wide convolution (kernel 40) and max pooling, each
  followed by residual blocks; two tail convolutions bring the channels down to
  ``emb_width``, and a Linear layer over time maps the remaining length onto
  ``n_frames`` (the paper's "linear layer with 16k output channels").

All outputs pass through ``tanh`` scaled by 100, the range of Jukebox latents.
``size="paper"`` builds the authors' structures exactly; ``"small"`` and
``"tiny"`` keep each level's structure with fewer channels and shorter
kernels, for CPU training and for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import torch
from einops import rearrange
from sklearn.base import TransformerMixin
from torch import nn
from torch.nn import functional as F

from conchshell._validation import check_categories, check_positive_int, check_tensor
from conchshell.base import SIZES, check_size
from conchshell.gan._layers import (
    CONV_INIT_STD,
    StateDictPickleMixin,
    fit_feature_scaling,
    he_init_,
    normal_init_,
    resolve_init_std,
    set_implied_sizes,
    wn_conv1d,
)
from conchshell.levels import CLIP_SAMPLES, PAPER_HOPS, level_index, level_name
from conchshell.training import TrainingLog, guarded_step

__all__ = ["Generator", "PooledGenerator", "ResidualBlock", "StridedGenerator"]

OUTPUT_SCALE = 100.0
_SLOPE = 0.2  # LeakyReLU slope used throughout (MelGAN's)
# "he" init: the output layer starts at 5 % of He scale, so tanh(x) * 100 starts near the
# spread of real latents (about 6-9) instead of saturated at +-100.
_HE_OUTPUT_GAIN = 0.05


class ResidualBlock(nn.Module):
    """Dilated residual block with a learned shortcut (the authors' MelGAN-style block).

    ``LeakyReLU -> reflection pad d -> WN-Conv(k3, dilation d) -> LeakyReLU ->
    WN-Conv(k1)``, added to a weight-normalised 1x1 shortcut. The length is
    unchanged.

    Parameters
    ----------
    channels : int
        Input and output channels.
    dilation : int
        Dilation of the kernel-3 convolution (and its reflection padding).
    """

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(_SLOPE),
            nn.ReflectionPad1d(dilation),
            wn_conv1d(channels, channels, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(_SLOPE),
            wn_conv1d(channels, channels, kernel_size=1),
        )
        self.shortcut = wn_conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shortcut plus residual branch; same shape as ``x``.

        Parameters
        ----------
        x : torch.Tensor
            Input ``(batch, channels, length)``.

        Returns
        -------
        torch.Tensor
        """
        out = self.block(x)
        # Adding into the branch's fresh output saves a tensor (autograd-safe: a
        # convolution does not keep its output for the backward pass).
        out += self.shortcut(x)
        return out


def _residual_stack(channels: int, dilations: tuple[int, ...]) -> list[nn.Module]:
    return [ResidualBlock(channels, d) for d in dilations]


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 1) -> nn.Conv1d:
    # The stage convolutions are plain (not weight-normed): Table 1's counts say so.
    return nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding)


def _conv_length(length: int, kernel: int, stride: int = 1, padding: int = 1) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class _ConditionedGenerator(nn.Module):
    """Shared front: feature scaling, category embedding, optional noise, input checks.

    ``noise_dim > 0`` concatenates a standard-normal vector to the conditioning
    (drawn here when the caller gives none), so one picture can give many
    pieces. ``feature_scaling`` standardises the features with a stored mean
    and scale (buffers, set by :meth:`Generator.fit`; identity until then).
    """

    def __init__(
        self,
        in_features: int,
        n_categories: int,
        embed_dim: int,
        emb_width: int,
        noise_dim: int = 0,
        feature_scaling: bool = False,
    ):
        super().__init__()
        self.in_features = in_features
        self.n_categories = n_categories
        self.emb_width = emb_width
        self.noise_dim = noise_dim
        self.embedding = nn.Embedding(n_categories, embed_dim)
        self.feature_scaling = feature_scaling
        if feature_scaling:
            # Buffers, not parameters: Table 1's counts are unchanged; the weights file keeps them.
            self.register_buffer("feature_mean", torch.zeros(in_features))
            self.register_buffer("feature_scale", torch.ones(in_features))

    @property
    def n_inputs(self) -> int:
        """Width of the conditioning vector: features, embedding and noise."""
        return self.in_features + self.embedding.embedding_dim + self.noise_dim

    def _condition(
        self, features: torch.Tensor, categories: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"features must have shape (batch, {self.in_features}), got {tuple(features.shape)}"
            )
        batch = features.shape[0]
        if categories.ndim != 1 or categories.shape[0] != batch:
            raise ValueError(
                f"categories must have shape ({batch},), got {tuple(categories.shape)}"
            )
        if self.feature_scaling:
            features = (features - self.feature_mean) / self.feature_scale
        parts = [features, self.embedding(categories.long())]
        if self.noise_dim:
            if noise is None:
                noise = torch.randn(batch, self.noise_dim, device=features.device)
            elif tuple(noise.shape) != (batch, self.noise_dim):
                raise ValueError(
                    f"noise must have shape ({batch}, {self.noise_dim}), got {tuple(noise.shape)}"
                )
            parts.append(noise.to(features.dtype))
        elif noise is not None:
            raise ValueError("this generator takes no noise (noise_dim=0); pass noise=None")
        return torch.cat(parts, dim=1)

    def at_frames(
        self,
        features: torch.Tensor,
        categories: torch.Tensor,
        noise: torch.Tensor | None,
        frames: torch.Tensor,
    ) -> torch.Tensor:
        """The output at some latent frames only: ``forward(...)[..., frames]``.

        Parameters
        ----------
        features, categories, noise : torch.Tensor
            As :meth:`forward`.
        frames : torch.Tensor of int
            Frame indices.

        Returns
        -------
        torch.Tensor
            ``(batch, emb_width, len(frames))``.
        """
        return self(features, categories, noise)[..., frames]

    def forward(
        self,
        features: torch.Tensor,
        categories: torch.Tensor,
        noise: torch.Tensor | None = None,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """Map ``features (batch, in_features)`` and ``categories (batch,)`` to latents.

        Parameters
        ----------
        features : torch.Tensor
            Image features ``(batch, in_features)``.
        categories : torch.Tensor
            Integer category ids ``(batch,)``.
        noise : torch.Tensor, optional
            ``(batch, noise_dim)`` when the generator has noise; drawn when omitted.
        guidance : float, default=1.0
            Other than 1: :meth:`guided`'s output (an argument here, so that
            wrappers which only forward calls, such as the fast path's, pass it on).

        Returns
        -------
        torch.Tensor
            ``(batch, emb_width, n_frames)`` in ``[-100, 100]``.
        """
        if guidance != 1:
            return self.guided(features, categories, noise, guidance)
        hidden = self._hidden(features, categories, noise)
        return torch.tanh(self.output_layer()(hidden)) * OUTPUT_SCALE

    def _hidden(
        self, features: torch.Tensor, categories: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """Everything before :meth:`output_layer`: ``(batch, channels, length)``."""
        raise NotImplementedError

    def output_layer(self) -> nn.Module:
        """The last weighted layer, before ``tanh``."""
        raise NotImplementedError

    def guided(
        self,
        features: torch.Tensor,
        categories: torch.Tensor,
        noise: torch.Tensor | None,
        guidance: float,
    ) -> torch.Tensor:
        """The output pushed away from the average over every category.

        The network has no "no category" input, so the reference is the mean
        of the hidden activations before the output layer for the same
        features and noise under each of the ``n_categories`` categories;
        the output layer then reads ``mean + guidance * (own - mean)``. The
        output layer is affine, so this equals the same combination of the
        pre-``tanh`` outputs, at the cost of one output layer instead of
        ``n_categories`` (the output layer is most of a Deep forward pass).

        Parameters
        ----------
        features, categories, noise : torch.Tensor
            As :meth:`forward`; ``noise`` is drawn once here when omitted, so
            every category sees the same draw.
        guidance : float
            1 gives :meth:`forward`'s output up to rounding; 0 the category
            average; above 1 a stronger scene.

        Returns
        -------
        torch.Tensor
            ``(batch, emb_width, n_frames)`` in ``[-100, 100]``.
        """
        batch, k = features.shape[0], self.n_categories
        if self.noise_dim and noise is None:
            noise = torch.randn(batch, self.noise_dim, device=features.device)
        every = torch.arange(k, device=categories.device).repeat(batch)
        hidden = self._hidden(
            features.repeat_interleave(k, 0),
            every,
            None if noise is None else noise.repeat_interleave(k, 0),
        ).unflatten(0, (batch, k))
        mean = hidden.mean(1)
        own = hidden[torch.arange(batch, device=hidden.device), categories.long()]
        return torch.tanh(self.output_layer()(mean + guidance * (own - mean))) * OUTPUT_SCALE


class StridedGenerator(_ConditionedGenerator):
    """G-High's structure: Linear -> strided conv stages -> final conv to ``n_frames``.

    Every stage is ``LeakyReLU -> Conv(kernel, stride, padding 1) -> residual
    blocks``; the last convolution (padding 1) maps to ``emb_width`` channels.
    The Linear layer's width is the shortest sequence the convolutions turn
    into exactly ``n_frames`` steps, rounded up to a multiple of the total
    stride (for the paper's 1000 frames this gives the authors' 4800).

    Parameters
    ----------
    in_features, n_categories, embed_dim, emb_width, n_frames : int
        Conditioning sizes and the output shape ``(emb_width, n_frames)``.
    channels, kernels, strides : tuple of int
        One entry per stage.
    final_kernel : int
        Kernel of the last convolution.
    dilations : tuple of int, default=(1, 3)
        One residual block per dilation after every stage.
    """

    def __init__(
        self,
        in_features: int,
        n_categories: int,
        embed_dim: int,
        emb_width: int,
        n_frames: int,
        channels: tuple[int, ...],
        kernels: tuple[int, ...],
        strides: tuple[int, ...],
        final_kernel: int,
        dilations: tuple[int, ...] = (1, 3),
        noise_dim: int = 0,
        feature_scaling: bool = False,
    ) -> None:
        super().__init__(
            in_features, n_categories, embed_dim, emb_width, noise_dim, feature_scaling
        )
        self.width = self.input_width(n_frames, kernels, strides, final_kernel, dilations)
        self.n_frames = n_frames
        self.linear = nn.Linear(self.n_inputs, self.width)
        layers: list[nn.Module] = []
        c_in = 1
        for c_out, kernel, stride in zip(channels, kernels, strides, strict=True):
            layers += [nn.LeakyReLU(_SLOPE), _conv(c_in, c_out, kernel, stride)]
            layers += _residual_stack(c_out, dilations)
            c_in = c_out
        layers += [nn.LeakyReLU(_SLOPE), _conv(c_in, emb_width, final_kernel)]
        self.body = nn.Sequential(*layers)

    def output_layer(self) -> nn.Module:
        """The last weighted layer (before ``tanh``): the final convolution."""
        return self.body[-1]

    @staticmethod
    def input_width(
        n_frames: int,
        kernels: tuple[int, ...],
        strides: tuple[int, ...],
        final_kernel: int,
        dilations: tuple[int, ...] = (1, 3),
    ) -> int:
        """Length of the 1-channel sequence that the stack maps onto ``n_frames`` steps.

        Parameters
        ----------
        n_frames : int
            Output length wanted (latent frames).
        kernels, strides : tuple of int
            Kernel size and stride of each strided convolution, in order.
        final_kernel : int
            Kernel size of the last (unstrided) convolution.
        dilations : tuple of int, default (1, 3)
            Dilations of the residual blocks; every stage must stay longer than the
            largest.

        Returns
        -------
        int
            A multiple of ``prod(strides)``.

        Raises
        ------
        ValueError
            When a stage would be too short for the residual blocks.
        """
        length = (n_frames - 1) + final_kernel - 2
        for kernel, stride in zip(reversed(kernels), reversed(strides), strict=True):
            length = (length - 1) * stride + kernel - 2
        # Lengths s*k .. s*k + s - 1 all land on n_frames: take the multiple of s.
        total = math.prod(strides)
        length = max(total, -(-length // total) * total)
        check = length
        for kernel, stride in zip(kernels, strides, strict=True):
            check = _conv_length(check, kernel, stride)
            if check <= max(dilations):
                raise ValueError(
                    f"n_frames={n_frames} leaves only {check} steps before a residual block "
                    f"with dilation {max(dilations)}: use a longer output"
                )
        if _conv_length(check, final_kernel) != n_frames:  # pragma: no cover - arithmetic guard
            raise ValueError(f"no input width gives n_frames={n_frames} for this stack")
        return length

    def _hidden(
        self, features: torch.Tensor, categories: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """Everything before the final convolution: ``(batch, channels, length)``."""
        x = self.linear(self._condition(features, categories, noise))
        return self.body[:-1](rearrange(x, "b l -> b 1 l"))


class PooledGenerator(_ConditionedGenerator):
    """G-Low's and G-Deep's structure: pooled conv stages, then a Linear layer over time.

    Every stage is ``LeakyReLU -> reflection pad -> Conv(kernel, padding 1) ->
    MaxPool1d(pool_kernel, stride, padding 1) -> residual blocks``. Then
    ``LeakyReLU -> reflection pad -> Conv(-> tail_channels) -> MaxPool(stride 1)``
    and ``LeakyReLU -> reflection pad -> Conv(-> emb_width) -> tanh``, and a
    Linear layer maps the remaining length onto ``n_frames``.

    Parameters
    ----------
    in_features, n_categories, embed_dim, emb_width, n_frames : int
        Conditioning sizes and the output shape ``(emb_width, n_frames)``.
    width : int
        Output size of the input Linear layer (the sequence length).
    channels, reflect, pool_strides : tuple of int
        Per stage: output channels, reflection padding, pooling stride.
    kernel : int
        Kernel of every convolution.
    tail_channels, tail_reflect, final_reflect : int
        Channels and paddings of the two tail convolutions.
    pool_kernel : int, default=10
    dilations : tuple of int, default=(1, 3)
    """

    def __init__(
        self,
        in_features: int,
        n_categories: int,
        embed_dim: int,
        emb_width: int,
        n_frames: int,
        width: int,
        channels: tuple[int, ...],
        kernel: int,
        reflect: tuple[int, ...],
        pool_strides: tuple[int, ...],
        tail_channels: int,
        tail_reflect: int,
        final_reflect: int,
        pool_kernel: int = 10,
        dilations: tuple[int, ...] = (1, 3),
        noise_dim: int = 0,
        feature_scaling: bool = False,
    ) -> None:
        super().__init__(
            in_features, n_categories, embed_dim, emb_width, noise_dim, feature_scaling
        )
        self.width = width
        self.n_frames = n_frames
        self.linear = nn.Linear(self.n_inputs, width)
        layers: list[nn.Module] = []
        length, c_in = width, 1

        def add_conv(c_out: int, pad: int, stride: int | None) -> None:
            nonlocal length, c_in
            if pad >= length:
                raise ValueError(
                    f"the sequence is only {length} steps long before a reflection pad of "
                    f"{pad}: n_frames/width are too small for this generator"
                )
            layers.extend(
                [nn.LeakyReLU(_SLOPE), nn.ReflectionPad1d(pad), _conv(c_in, c_out, kernel)]
            )
            length = _conv_length(length + 2 * pad, kernel)
            if stride is not None:
                layers.append(nn.MaxPool1d(pool_kernel, stride=stride, padding=1))
                length = _conv_length(length, pool_kernel, stride)
            if length < 1:
                raise ValueError("the sequence shrinks to nothing: width is too small")
            c_in = c_out

        for c_out, pad, stride in zip(channels, reflect, pool_strides, strict=True):
            add_conv(c_out, pad, stride)
            layers += _residual_stack(c_out, dilations)
        add_conv(tail_channels, tail_reflect, 1)
        add_conv(emb_width, final_reflect, None)
        layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)
        self.frames = nn.Linear(length, n_frames)  # Linear over time

    def output_layer(self) -> nn.Module:
        """The last weighted layer (before ``tanh``): the Linear over time."""
        return self.frames

    def _hidden(
        self, features: torch.Tensor, categories: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """Everything before the Linear over time: ``(batch, emb_width, length)``."""
        x = self.linear(self._condition(features, categories, noise))
        # The fast path's channels-last convolutions hand back a strided view; a
        # Linear over a strided input copies its whole weight (10 ms at paper scale).
        return self.body(rearrange(x, "b l -> b 1 l")).contiguous()

    def at_frames(
        self,
        features: torch.Tensor,
        categories: torch.Tensor,
        noise: torch.Tensor | None,
        frames: torch.Tensor,
    ) -> torch.Tensor:
        # (Documented on the base class.) Most of a forward pass is the Linear over time
        # and the elementwise work on its (batch, emb_width, n_frames) output: only the
        # rows asked for are computed.
        x = self._hidden(features, categories, noise)
        x = F.linear(x, self.frames.weight[frames], self.frames.bias[frames])
        return torch.tanh(x) * OUTPUT_SCALE


@torch.no_grad()
def _signal_preserving_init(module: nn.Module) -> nn.Module:
    """``init_std="he"``: He-normal everywhere, then keep each stage near unit scale.

    He-normal alone doubles the variance in every residual block (shortcut plus
    branch), and the pooled body's ``tanh`` then saturates and forgets the input.
    So each shortcut is variance-preserving for a linear map (gain 1), each
    branch starts at a tenth of its He scale, and the output layer at
    :data:`_HE_OUTPUT_GAIN`.
    """
    he_init_(module, _SLOPE, last=module.output_layer(), gain=_HE_OUTPUT_GAIN)
    for block in module.modules():
        if isinstance(block, ResidualBlock):
            for conv, gain in ((block.shortcut, 1.0), (block.block[4], 0.1)):
                weight = torch.empty_like(conv.weight)
                nn.init.kaiming_normal_(weight, nonlinearity="linear")
                conv.weight = weight * gain  # through weight norm's right_inverse
    return module


@dataclass(frozen=True)
class _Strided:
    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    final_kernel: int


@dataclass(frozen=True)
class _Pooled:
    width: int
    channels: tuple[int, ...]
    kernel: int
    reflect: tuple[int, ...]
    pool_strides: tuple[int, ...]
    tail_channels: int
    tail_reflect: int
    final_reflect: int
    pool_kernel: int = 10


# (level name, size) -> structure. The paper rows are the authors' code.
_SPECS: dict[tuple[str, str], _Strided | _Pooled] = {
    ("high", "paper"): _Strided(
        (64, 128, 256, 512, 256), (10, 20, 40, 60, 60), (2, 2, 1, 1, 1), 42
    ),
    ("high", "small"): _Strided((16, 32, 64, 64), (8, 16, 16, 16), (2, 2, 1, 1), 16),
    ("high", "tiny"): _Strided((4, 8), (4, 4), (2, 1), 6),
    **{
        (name, "paper"): _Pooled(
            4096, (32, 64, 128, 256, 512, 1024), 40, (16, 32, 64, 64, 64, 64), strides, 256, 64, 64
        )
        for name, strides in (("low", (2, 2, 2, 2, 1, 1)), ("deep", (2, 2, 2, 1, 1, 1)))
    },
    **{
        (name, "small"): _Pooled(1024, (16, 32, 64, 128), 16, (8, 8, 8, 8), strides, 64, 8, 8)
        for name, strides in (("low", (2, 2, 2, 2)), ("deep", (2, 2, 2, 1)))
    },
    **{
        (name, "tiny"): _Pooled(64, (4, 8), 4, (2, 2), strides, 8, 2, 2, pool_kernel=4)
        for name, strides in (("low", (2, 2)), ("deep", (2, 1)))
    },
}


_PAPER_SIZES = {"in_features": 2048, "n_categories": 6, "embed_dim": 256, "emb_width": 64}


class _LatentGenerator(TransformerMixin, StateDictPickleMixin):
    """What the latent generators share: their sizes, input checks and ``fit_transform``.

    Subclasses have the parameters ``level``, ``in_features``,
    ``n_categories``, ``emb_width``, ``n_frames`` (and, when they train
    step by step, ``warm_start``), and define ``fit``, ``transform`` and
    ``_build_module``.

    Class attributes tell :class:`~conchshell.ImageToMusic` how to train one:
    ``adversarial`` (it has an adversarial stage), ``needs_steps`` (its fit
    is bounded by ``warm_start_steps``), ``snapped_targets`` (it is fitted on
    latents snapped to the codebook rather than on the encoder's output) and
    ``is_network`` (:func:`~conchshell.inference.optimize` may cast it).
    """

    adversarial = True
    needs_steps = True
    snapped_targets = False
    is_network = True

    _what = "generator"  # its name in error messages
    # What ImageToMusic.set_fitted_params may change on a fitted generator (the rest is
    # structure or training).
    _fitted_settable: tuple[str, ...] = ("guidance", "batch_size", "verbose")

    def initialize(
        self,
        *,
        in_features: int | None = None,
        n_categories: int | None = None,
        n_frames: int | None = None,
        emb_width: int | None = None,
    ) -> Self:
        """Build the module with fresh, seeded weights at the sizes the data implies.

        Parameters
        ----------
        in_features, n_categories, n_frames, emb_width : int, optional
            Sizes implied by the data or the other components (an estimator
            passes its extractor's feature size, its number of categories and
            the codec's latent shape). Each serves where the parameter of the
            same name is ``None``; a set parameter must agree with it.

        Returns
        -------
        self
            With ``module_`` and the fitted sizes (``in_features_``, ...) set.

        Raises
        ------
        ValueError
            When a set parameter contradicts an implied size.
        """
        self.level_ = level_index("deep" if self.level is None else self.level)
        implied = {
            "in_features": in_features,
            "n_categories": n_categories,
            "emb_width": emb_width,
            "n_frames": n_frames,
        }
        paper = dict(_PAPER_SIZES, n_frames=CLIP_SAMPLES // PAPER_HOPS[self.level_])
        set_implied_sizes(self, implied, paper, self._what)
        return super().initialize()

    def _check_inputs(
        self, features: object, categories: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_tensor(features, name="features", ndim=2, shape=(None, self.in_features_))
        c = check_categories(categories, n_samples=x.shape[0], n_categories=self.n_categories_)
        return x, c

    def _fit_inputs(
        self, features: object, latents: object, categories: object
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Build the module at the data's sizes (unless continuing), then check the inputs."""
        if not (getattr(self, "warm_start", False) and hasattr(self, "module_")):
            # Sizes left unset are learned from the data; set ones are checked against it below.
            shape = np.shape(latents)
            learned = {"in_features": np.shape(features)[-1]}
            if len(shape) == 3:
                learned.update(emb_width=shape[1], n_frames=shape[2])
            self.initialize(**{k: v for k, v in learned.items() if getattr(self, k) is None})
        x, c = self._check_inputs(features, categories)
        y = check_tensor(
            latents, name="latents", ndim=3, shape=(x.shape[0], self.emb_width_, self.n_frames_)
        )
        return x, c, y

    def fit_transform(self, features: object, latents: object, categories: object) -> torch.Tensor:
        """Train on the targets, then predict them back (:meth:`fit`, then :meth:`transform`).

        The generator is conditioned, so unlike scikit-learn's
        ``fit_transform(X, y)`` it takes :meth:`fit`'s three arguments and
        passes ``features`` and ``categories`` on to :meth:`transform`.

        Parameters
        ----------
        features : array-like of shape (n_samples, in_features)
            Video features.
        latents : array-like of shape (n_samples, emb_width, n_frames)
            Continuous target latents.
        categories : array-like of shape (n_samples,)
            Integer category ids in ``[0, n_categories)``.

        Returns
        -------
        torch.Tensor of shape (n_samples, emb_width, n_frames_)
            What :meth:`transform` returns for ``features`` and ``categories``.
        """
        return self.fit(features, latents, categories).transform(features, categories)


class Generator(_LatentGenerator):
    """ConchShell generator for one Jukebox level (a scikit-learn style component).

    It maps an I3D video feature and the image's category to the *continuous*
    64-d latent sequence of one Jukebox level; the codec snaps it to the
    codebook and decodes it. :meth:`fit` trains it alone by L1 regression on
    target latents (a warm start before adversarial training); adversarial
    training uses ``module_`` directly.

    At ``size="paper"`` the structures are the authors' code. Measured with
    :func:`conchshell.profile.profile` on one sample: parameters without the
    6 x 256 category embedding (Table 1's convention: weight norm's ``g`` and
    ``v`` count, the embedding does not), with it (all of ``module_``), and MACs:

    ======  ==============  ==============  =========  =======================
    level   w/o embedding   ``module_``     MACs       Table 1 (params, MACs)
    ======  ==============  ==============  =========  =======================
    high    33,108,800      33,110,336      23.800 G   33.109M, 23.800G
    low     65,182,528      65,184,064      27.205 G   65.183M, 27.205G
    deep    78,298,528      78,300,064      44.453 G   100.420M, 59.197G
    ======  ==============  ==============  =========  =======================

    The paper gives G-Deep as 100.420M parameters and 59.197 GMACs. No variant
    of the authors' code we tried reproduces that, while the same code with
    G-Low's pooling strides reproduces G-Low's figures exactly; so this class
    ships the code's G-Deep and its measured 78.30M / 44.453G.

    Parameters
    ----------
    level : {"deep", "low", "high"}, {0, 1, 2} or None, default="deep"
        Jukebox level the latents belong to (``None``: the paper's Deep, unless
        an enclosing estimator sets it).
    in_features : int or None, default=None
        Size of the video feature. ``None`` (like ``n_categories``,
        ``emb_width`` and ``n_frames``) takes the size the data implies: the
        features given to :meth:`fit`, or the sizes an enclosing estimator
        passes to :meth:`initialize`; built alone, the paper's (2048 for I3D-R50).
        A set value must agree with what the data implies.
    n_categories : int or None, default=None
        Number of image categories (the paper's 6 when built alone).
    embed_dim : int, default=256
        Size of the category embedding concatenated to the feature.
    emb_width : int or None, default=None
        Latent channels (the codec's ``emb_width``; the paper's 64 when built alone).
    n_frames : int or None, default=None
        Latent length. ``None`` is 128000 samples over the level's paper hop:
        16000 (deep), 4000 (low), 1000 (high).
    size : {"paper", "small", "tiny"}, default="paper"
        Structure: the authors', a narrower one for CPU training, or a very
        small one for tests. All accept any ``n_frames``, ``in_features`` and
        ``emb_width``.
    init_std : float, None, "auto" or "he", default="auto"
        Convolution weights are drawn from N(0, ``init_std``) (the authors'
        0.02); ``None`` keeps torch's fan-in scaled default. ``"auto"`` is 0.02
        at ``size="paper"`` and ``None`` for the small and tiny structures,
        whose narrow layers a fixed 0.02 would leave dominated by their biases
        (measured: L1 regression then barely learns the conditioning).
        ``"he"`` keeps the signal's scale through the stack: He-normal weights
        for LeakyReLU(0.2) in every convolution and Linear layer, zero biases,
        and the output layer scaled by 0.05 so the ``tanh`` starts unsaturated
        (:func:`conchshell.gan._layers.he_init_`). Measured on the small Deep
        structure: with the default init the spread across the six categories
        fades about 0.6x per convolution (4.5e-4 at the output against an
        output spread of 5.4); with ``"he"`` the categories stay apart.
    noise_dim : int, default=0
        Size of a standard-normal noise vector concatenated to the
        conditioning, so one picture can give many pieces (0: none, as the
        paper; a difference from it where set). :meth:`transform` draws it from
        ``random_state`` unless given.
    n_candidates : int, default=1
        With noise, :meth:`fit` draws this many noise vectors per target and
        regresses the output nearest to the target (conditional implicit
        maximum likelihood, Li and Malik 2019): each piece is matched by one
        sample instead of all samples being pulled to the average of the
        pieces, which is what plain L1 regression (1) converges to.
    search_frames : int or None, default=None
        With ``n_candidates > 1``, compare the candidates with the target on
        this many random latent frames per batch instead of all of them (a
        difference from exact IMLE where set). The search runs the generator
        once per candidate without gradients; on the whole output that is
        three quarters of a small Deep step on a CPU, and the frames are many
        (16,000) where the candidates' distances differ in the third digit.
    guidance : float, default=1.0
        At :meth:`transform`, push each output away from the average over
        every category, as classifier-free guidance does (Ho and Salimans
        2022): the output layer reads ``mean + guidance * (own - mean)`` of
        its input under the picture's own category and under the mean of all
        categories (same features, same noise; the torch module's ``guided``
        method). 1 is the paper's plain output; above
        1 a difference from it. Regression (IMLE's included) leaves each
        scene's latents near the average of its pieces; guidance moves them
        out again. Measured on the small Deep model it helped on held-out
        training photos and not on val (docs/training.md), so no preset sets
        it. Costs ``n_categories`` passes of the layers before the output
        layer and one of the output layer; training is unchanged.
    feature_scaling : bool, default=False
        Standardise the features with the mean and scale of :meth:`fit`'s
        features (stored with the weights). Untrained I3D features are tiny
        (standard deviation about 0.003 across pictures) beside the category
        embedding; scaled, they reach the generator at the same size.
    max_epochs : int, default=10
        Epochs of :meth:`fit`.
    max_steps : int or None, default=None
        Stop :meth:`fit` after this many optimiser steps.
    max_time : float or None, default=None
        Wall-clock budget of :meth:`fit` in seconds: it stops at the first
        step past it.
    lr : float, default=1e-4
        AdamW learning rate of :meth:`fit`.
    weight_decay : float, default=1e-5
        AdamW weight decay (the authors').
    batch_size : int, default=8
        Batch size of :meth:`fit` and :meth:`transform`.
    warm_start : bool, default=False
        Continue from the current ``module_`` in :meth:`fit` instead of
        building fresh weights.
    verbose : int, default=0
        Show a progress bar over the epochs of :meth:`fit` when positive.
    device : {"auto", "cpu", "cuda"}, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds the initial weights and the shuffling of :meth:`fit`.

    Attributes
    ----------
    module_ : StridedGenerator or PooledGenerator
        The torch module; ``module_(features, categories)`` runs with gradients.
    level_ : int
        Jukebox level index (0 deep, 1 low, 2 high).
    n_frames_ : int
        Latent length produced.
    in_features_, n_categories_, emb_width_ : int
        The sizes in use (the paper's where the parameter is ``None``).
    noise_dim_ : int
        Size of the noise input the module was built with.
    device_ : torch.device
    history_ : list of dict
        Per epoch of :meth:`fit`, in :mod:`conchshell.training`'s format:
        ``epoch``, ``step`` (optimiser steps so far; a warm start counts on),
        ``loss`` (mean L1 over the batches whose update was not skipped),
        ``seconds`` (since this call to ``fit`` started) and ``n_skipped``
        (batches so far whose loss or gradient was not finite).

    Examples
    --------
    >>> import torch
    >>> g = Generator("high", in_features=32, size="tiny", n_frames=20, device="cpu",
    ...               random_state=0).initialize()
    >>> g.transform(torch.zeros(2, 32), [0, 5]).shape
    torch.Size([2, 64, 20])
    """

    def __init__(
        self,
        level: str | int | None = "deep",
        in_features: int | None = None,
        n_categories: int | None = None,
        embed_dim: int = 256,
        emb_width: int | None = None,
        n_frames: int | None = None,
        size: str = "paper",
        init_std: float | str | None = "auto",
        noise_dim: int = 0,
        n_candidates: int = 1,
        search_frames: int | None = None,
        guidance: float = 1.0,
        feature_scaling: bool = False,
        max_epochs: int = 10,
        max_steps: int | None = None,
        max_time: float | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        batch_size: int = 8,
        warm_start: bool = False,
        verbose: int = 0,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.level = level
        self.in_features = in_features
        self.n_categories = n_categories
        self.embed_dim = embed_dim
        self.emb_width = emb_width
        self.n_frames = n_frames
        self.size = size
        self.init_std = init_std
        self.noise_dim = noise_dim
        self.n_candidates = n_candidates
        self.search_frames = search_frames
        self.guidance = guidance
        self.feature_scaling = feature_scaling
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
    def sized(cls, size: str, **overrides: Any) -> Generator:
        """A generator of one of the library's sizes (see :data:`conchshell.base.SIZES`).

        The same as ``Generator(size=size, **overrides)``: here the size is a
        constructor parameter, because it picks a structure no other parameter
        describes. This classmethod gives every sized component the same call
        (``JukeboxCodec.sized``, ``MultiScaleDiscriminator.sized``).

        Parameters
        ----------
        size : {"paper", "small", "tiny"}
            Which structure (see the ``size`` parameter).
        **overrides
            Any other constructor parameter.

        Returns
        -------
        Generator
            An unfitted generator.

        Examples
        --------
        >>> Generator.sized("small", level="high").get_params()["size"]
        'small'
        """
        return cls(size=check_size(size), **overrides)

    def _build_module(self) -> nn.Module:
        # The sizes come from initialize(), or from the state a pickle restored.
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        sizes = {
            "in_features": self.in_features_,
            "n_categories": self.n_categories_,
            "embed_dim": check_positive_int(self.embed_dim, "embed_dim"),
            "emb_width": self.emb_width_,
        }
        std = resolve_init_std(
            self.init_std, CONV_INIT_STD if self.size == "paper" else None, allowed=("he",)
        )
        spec = _SPECS[(level_name(self.level_), self.size)]
        if isinstance(self.noise_dim, bool) or not isinstance(self.noise_dim, int | np.integer):
            raise ValueError(f"noise_dim must be a non-negative integer, got {self.noise_dim!r}")
        if self.noise_dim < 0:
            raise ValueError(f"noise_dim must be a non-negative integer, got {self.noise_dim!r}")
        sizes["noise_dim"] = self.noise_dim_ = int(self.noise_dim)
        sizes["feature_scaling"] = bool(self.feature_scaling)
        if isinstance(spec, _Strided):
            module: nn.Module = StridedGenerator(
                **sizes,
                n_frames=self.n_frames_,
                channels=spec.channels,
                kernels=spec.kernels,
                strides=spec.strides,
                final_kernel=spec.final_kernel,
            )
        else:
            module = PooledGenerator(
                **sizes,
                n_frames=self.n_frames_,
                width=spec.width,
                channels=spec.channels,
                kernel=spec.kernel,
                reflect=spec.reflect,
                pool_strides=spec.pool_strides,
                tail_channels=spec.tail_channels,
                tail_reflect=spec.tail_reflect,
                final_reflect=spec.final_reflect,
                pool_kernel=spec.pool_kernel,
            )
        if std == "he":
            return _signal_preserving_init(module)
        return normal_init_(module, std)

    # --------------------------------------------------------------- training
    def fit(self, features: object, latents: object, categories: object) -> Generator:
        """Train the generator alone by L1 regression on target latents.

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
        module = self.module_
        history = self.history_ if self.warm_start and hasattr(self, "history_") else []
        if module.feature_scaling and not history:
            # The first fit sets the scaling; a continued fit keeps what the weights learned on.
            fit_feature_scaling(module.feature_mean, module.feature_scale, x)
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        rng = np.random.RandomState(self.seed_)
        noise_rng = torch.Generator().manual_seed(int(self.seed_))
        self.history_ = history
        # A warm start continues the history: its epochs and steps count on.
        done = int(history[-1].get("step", 0)) if history else 0
        steps = 0  # in this call, for max_steps
        module.train()
        with TrainingLog(
            desc="Generator",
            total=int(self.max_epochs),
            verbose=self.verbose,
            unit="epoch",
            history=history,
            max_time=self.max_time,
        ) as log:
            for _ in range(int(self.max_epochs)):
                epoch = len(history) + 1
                order = torch.from_numpy(rng.permutation(x.shape[0]))
                total, seen = 0.0, 0
                for batch in order.split(int(self.batch_size)):
                    xb, cb = x[batch].to(self.device_), c[batch].to(self.device_)
                    yb = y[batch].to(self.device_)
                    noise = self._nearest_noise(xb, cb, yb, noise_rng)
                    loss = F.l1_loss(module(xb, cb, noise), yb)
                    optimizer.zero_grad(set_to_none=True)
                    steps += 1
                    where = {"epoch": epoch, "step": done + steps}
                    # One record per epoch: a skipped batch is counted, not recorded.
                    if guarded_step(loss, module, optimizer, where, desc="Generator"):
                        total += float(loss.detach()) * len(batch)
                        seen += len(batch)
                    else:
                        log.count_skipped()
                    if self.max_steps is not None and steps >= self.max_steps:
                        break
                    if log.out_of_time():
                        break
                record = {
                    "epoch": epoch,
                    "step": done + steps,
                    "loss": total / seen if seen else math.nan,
                }
                log.log(record)
                if self.max_steps is not None and steps >= self.max_steps:
                    break
                if log.out_of_time():
                    break
        module.eval()
        return self

    def _check_settings(self) -> None:
        # Also called by ImageToMusic before any stage trains, so a bad value fails at once.
        for name in ("max_epochs", "batch_size", "n_candidates"):
            check_positive_int(getattr(self, name), name)
        if self.max_steps is not None:
            check_positive_int(self.max_steps, "max_steps")
        if self.search_frames is not None:
            check_positive_int(self.search_frames, "search_frames")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        self._check_guidance()

    def _check_guidance(self) -> float:
        g = self.guidance
        if isinstance(g, bool) or not isinstance(g, int | float) or not math.isfinite(g) or g < 0:
            raise ValueError(f"guidance must be a finite number >= 0, got {g!r}")
        return float(g)

    def _nearest_noise(
        self, x: torch.Tensor, c: torch.Tensor, y: torch.Tensor, rng: torch.Generator
    ) -> torch.Tensor | None:
        """Noise for a training batch: per target, the nearest (L1) of ``n_candidates`` draws."""
        n_noise = int(getattr(self, "noise_dim_", 0))
        if not n_noise:
            return None
        k, n = int(self.n_candidates), x.shape[0]
        draws = torch.randn(n, k, n_noise, generator=rng).to(x.device)
        if k == 1:
            return draws[:, 0]
        run, target = self.module_, y
        if self.search_frames is not None and self.search_frames < self.n_frames_:
            frames = torch.randperm(self.n_frames_, generator=rng)[: int(self.search_frames)]
            frames = frames.sort().values.to(x.device)
            target = y[..., frames]

            def run(x: torch.Tensor, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
                return self.module_.at_frames(x, c, z, frames)

        with torch.no_grad():
            dist = torch.stack(
                [(run(x, c, draws[:, j]) - target).abs().mean((1, 2)) for j in range(k)], 1
            )
        return draws[torch.arange(n), dist.argmin(1)]

    def sample_noise(self, n_samples: int, seed: int | None = None) -> torch.Tensor | None:
        """The noise :meth:`transform` feeds when given none: ``(n_samples, noise_dim)``.

        Parameters
        ----------
        n_samples : int
            Rows to draw.
        seed : int, optional
            Seed of the draw; default ``random_state``'s. Row ``i`` is the same
            for every ``n_samples > i``.

        Returns
        -------
        torch.Tensor or None
            ``None`` when the generator has no noise input.
        """
        self._check_initialized()
        n_noise = int(getattr(self, "noise_dim_", 0))
        if not n_noise:
            return None
        seed = int(self.seed_) if seed is None else int(seed)
        return torch.randn(n_samples, n_noise, generator=torch.Generator().manual_seed(seed))

    def transform(self, features: object, categories: object, noise: object = None) -> torch.Tensor:
        """Predict continuous latents (eval mode, no gradient, in batches).

        Parameters
        ----------
        features : array-like of shape (n_samples, in_features)
        categories : array-like of shape (n_samples,)
        noise : array-like of shape (n_samples, noise_dim), optional
            For a generator with noise: default :meth:`sample_noise` (the same
            features give the same latents from call to call).

        Returns
        -------
        torch.Tensor of shape (n_samples, emb_width, n_frames_)
            On the CPU, float32, in ``[-100, 100]``.
        """
        self._check_initialized()
        guidance = self._check_guidance()
        x, c = self._check_inputs(features, categories)
        n_noise = int(getattr(self, "noise_dim_", 0))
        if n_noise:
            z = self.sample_noise(x.shape[0]) if noise is None else noise
            z = check_tensor(z, name="noise", ndim=2, shape=(x.shape[0], n_noise))
        elif noise is not None:
            raise ValueError("this generator has no noise input (noise_dim=0); pass noise=None")
        else:
            z = torch.zeros(x.shape[0], 0)
        batch_size = check_positive_int(self.batch_size, "batch_size")
        module = self.module_
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                out = [
                    module(
                        xb.to(self.device_),
                        cb.to(self.device_),
                        zb.to(self.device_) if n_noise else None,
                        guidance,
                    ).cpu()
                    for xb, cb, zb in zip(
                        x.split(batch_size), c.split(batch_size), z.split(batch_size), strict=True
                    )
                ]
        finally:
            module.train(was_training)
        return torch.cat(out)
