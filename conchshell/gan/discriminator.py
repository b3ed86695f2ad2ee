"""The multi-scale discriminator over flattened Jukebox latents (MelGAN's, as the authors sized it).

A latent ``(batch, 64, T)`` is read as one long 1-channel signal
``(batch, 1, 64 * T)``, channel-major: all ``T`` steps of channel 0, then all
of channel 1, and so on (what ``latents.reshape(batch, 1, -1)`` gives, as in
the authors' code). Identical sub-discriminators look at it at successively
halved resolutions, and each returns all of its layer outputs so the
generator can be trained by feature matching.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn

from conchshell._validation import check_positive_int, check_tensor
from conchshell.base import check_size
from conchshell.gan._layers import (
    CONV_INIT_STD,
    StateDictPickleMixin,
    normal_init_,
    resolve_init_std,
    wn_conv1d,
)

__all__ = ["MultiScaleDiscriminator", "MultiScaleDiscriminatorModule", "ScaleDiscriminator"]

_SLOPE = 0.2
_FIRST_PAD, _FIRST_KERNEL = 7, 16
# Constructor parameters of each size (MultiScaleDiscriminator.sized); "paper" is the defaults.
_SIZED: dict[str, dict[str, Any]] = {
    "paper": {},
    "small": {"ndf": 4, "n_layers": 3, "max_channels": 64, "init_std": None},
    "tiny": {
        "num_scales": 2,
        "ndf": 4,
        "n_layers": 2,
        "downsampling_factor": 2,
        "max_channels": 16,
        "init_std": None,
    },
}


def flatten_latents(latents: torch.Tensor) -> torch.Tensor:
    """Return ``(batch, 1, length)`` input, flattening ``(batch, C, T)`` channel-major."""
    if latents.ndim != 3:
        raise ValueError(
            "latents must have shape (batch, 1, length) or (batch, channels, frames), "
            f"got {tuple(latents.shape)}"
        )
    if latents.shape[1] == 1:
        return latents
    return rearrange(latents, "b c t -> b 1 (c t)")


class ScaleDiscriminator(nn.Module):
    """One scale: MelGAN's ``NLayerDiscriminator`` as the authors sized it.

    ``reflection pad 7 -> WN-Conv(1 -> ndf, k16)``; ``n_layers`` grouped
    weight-normed convolutions (kernel ``10 f + 1``, stride ``f``, padding
    ``5 f``, groups ``C_in / 4``, channels times ``f`` up to ``max_channels``,
    ``f = downsampling_factor``); ``WN-Conv(C -> C/2, k5, pad 1)``;
    ``WN-Conv(C/2 -> 1, k3, pad 1)``. LeakyReLU(0.2) follows every layer but the
    last.

    Parameters
    ----------
    ndf, n_layers, downsampling_factor, max_channels : int
        See :class:`MultiScaleDiscriminator`.
    """

    def __init__(self, ndf: int, n_layers: int, downsampling_factor: int, max_channels: int):
        super().__init__()
        f = downsampling_factor
        layers = [
            nn.Sequential(
                nn.ReflectionPad1d(_FIRST_PAD),
                wn_conv1d(1, ndf, kernel_size=_FIRST_KERNEL),
                nn.LeakyReLU(_SLOPE),
            )
        ]
        channels = ndf
        for _ in range(n_layers):
            c_out = min(channels * f, max_channels)
            groups = max(channels // 4, 1)
            if c_out % groups:
                raise ValueError(
                    f"{channels} -> {c_out} channels cannot be split in {groups} groups: "
                    "choose ndf and max_channels as multiples of 4"
                )
            conv = wn_conv1d(
                channels, c_out, kernel_size=10 * f + 1, stride=f, padding=5 * f, groups=groups
            )
            layers.append(nn.Sequential(conv, nn.LeakyReLU(_SLOPE)))
            channels = c_out
        half = max(channels // 2, 1)
        layers.append(
            nn.Sequential(wn_conv1d(channels, half, kernel_size=5, padding=1), nn.LeakyReLU(_SLOPE))
        )
        layers.append(wn_conv1d(half, 1, kernel_size=3, padding=1))
        self.layers = nn.ModuleList(layers)
        self.downsampling_factor = f

    def output_length(self, length: int) -> int:
        """Length of the logits for an input of ``length`` samples (<= 0: too short).

        Parameters
        ----------
        length : int
            Input length in samples.

        Returns
        -------
        int
        """
        if length <= _FIRST_PAD:
            return 0
        f = self.downsampling_factor
        length = length + 2 * _FIRST_PAD - _FIRST_KERNEL + 1
        for _ in range(len(self.layers) - 3):
            length = (length + 10 * f - (10 * f + 1)) // f + 1
        return length + 2 - 5 + 1  # the k5 and k3 convolutions; k3 keeps the length

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output for ``x``, the logits last.

        Parameters
        ----------
        x : torch.Tensor
            Input of shape ``(batch, 1, length)``.

        Returns
        -------
        list of torch.Tensor
            One ``(batch, channels, length_i)`` map per layer; the last is
            ``(batch, 1, output_length(length))``.
        """
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiScaleDiscriminatorModule(nn.Module):
    """``num_scales`` :class:`ScaleDiscriminator` s, average-pooled in between.

    ``forward(latents)`` takes ``(batch, 1, length)`` or ``(batch, C, T)``
    (flattened channel-major) and returns, per scale, the list of layer
    outputs with the logits last.

    Parameters
    ----------
    num_scales : int
        Number of scale discriminators; each reads the previous one's input
        average-pooled by 2.
    ndf, n_layers, downsampling_factor, max_channels : int
        Sizes of every :class:`ScaleDiscriminator`.
    """

    def __init__(
        self,
        num_scales: int,
        ndf: int,
        n_layers: int,
        downsampling_factor: int,
        max_channels: int,
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            ScaleDiscriminator(ndf, n_layers, downsampling_factor, max_channels)
            for _ in range(num_scales)
        )
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def min_length(self) -> int:
        """Shortest flattened input every scale can read."""
        length = 1
        while not self._fits(length):
            length += 1
        return length

    def _fits(self, length: int) -> bool:
        for index, scale in enumerate(self.scales):
            if index:
                length = (length + 2 - 4) // 2 + 1
            if scale.output_length(length) < 1:
                return False
        return True

    def forward(self, latents: torch.Tensor) -> list[list[torch.Tensor]]:
        """Run every scale on ``latents``.

        Parameters
        ----------
        latents : torch.Tensor
            ``(batch, 1, length)``, or ``(batch, C, T)`` flattened channel-major.

        Returns
        -------
        list of list of torch.Tensor
            Per scale, every layer's output, the logits ``(batch, 1, L_k)`` last.

        Raises
        ------
        ValueError
            When the flattened input is shorter than :meth:`min_length`.
        """
        x = flatten_latents(latents)
        if not self._fits(x.shape[-1]):
            raise ValueError(
                f"a flattened input of {x.shape[-1]} samples is too short for this "
                f"discriminator: it needs at least {self.min_length()}"
            )
        results = []
        for index, scale in enumerate(self.scales):
            if index:
                x = self.downsample(x)
            results.append(scale(x))
        return results


class MultiScaleDiscriminator(StateDictPickleMixin):
    """Multi-scale discriminator on flattened latents (a scikit-learn style component).

    At the defaults it is the authors': 3,070,786 parameters per
    scale, 9,212,358 in all, and 2.7335 / 10.9757 / 43.9501 GMACs on the latents
    of 8 s at the High / Low / Deep level (input ``(1, 1, 64 T)``, T = 1000 /
    4000 / 16000; the average pooling between scales counts one MAC per output
    sample, which the Table 1 totals include).

    Parameters
    ----------
    num_scales : int, default=3
        Number of sub-discriminators; scale ``k`` reads the input average-pooled
        ``k`` times (kernel 4, stride 2).
    ndf : int, default=32
        Channels of each scale's first convolution (a multiple of 4).
    n_layers : int, default=4
        Grouped, strided convolutions per scale.
    downsampling_factor : int, default=4
        Stride (and channel growth) of those convolutions.
    max_channels : int, default=1024
        Channel ceiling of those convolutions.
    init_std : float or None, default=0.02
        Convolution weights are drawn from N(0, ``init_std``) (the authors'
        value); ``None`` keeps torch's fan-in scaled default (the
        ``"small"`` and ``"tiny"`` sizes' choice, see :meth:`sized`).
    device : {"auto", "cpu", "cuda"}, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds the initial weights.

    Attributes
    ----------
    module_ : MultiScaleDiscriminatorModule
        ``module_(latents)`` runs with gradients and returns the same as
        :meth:`transform`.
    device_ : torch.device

    Examples
    --------
    >>> import torch
    >>> d = MultiScaleDiscriminator.sized("tiny", device="cpu", random_state=0).initialize()
    >>> outs = d.transform(torch.zeros(2, 8, 16))  # flattened to (2, 1, 128)
    >>> len(outs), [o[-1].shape[1] for o in outs]
    (2, [1, 1])
    """

    def __init__(
        self,
        num_scales: int = 3,
        ndf: int = 32,
        n_layers: int = 4,
        downsampling_factor: int = 4,
        max_channels: int = 1024,
        init_std: float | None = CONV_INIT_STD,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.num_scales = num_scales
        self.ndf = ndf
        self.n_layers = n_layers
        self.downsampling_factor = downsampling_factor
        self.max_channels = max_channels
        self.init_std = init_std
        self.device = device
        self.random_state = random_state

    @classmethod
    def sized(cls, size: str, **overrides: Any) -> MultiScaleDiscriminator:
        """A discriminator of one of the library's sizes (see :data:`conchshell.base.SIZES`).

        - ``"paper"``: the authors' (the constructor's defaults; 9,212,358 parameters).
        - ``"small"``: narrower, for CPU training (3 scales, 103,134 parameters):
          0.191 / 0.762 / 3.050 GMACs on the latents of 8 s at the High / Low /
          Deep level (the paper's: 2.7335 / 10.9757 / 43.9501).
        - ``"tiny"``: for tests (2 scales, 5,636 parameters, inputs >= 20 long).

        A size only picks values of ordinary constructor parameters, so
        ``get_params`` shows them and ``clone`` and pickling keep them.

        Parameters
        ----------
        size : {"paper", "small", "tiny"}
            Which size.
        **overrides
            Constructor parameters that replace the size's.

        Returns
        -------
        MultiScaleDiscriminator
            An unfitted discriminator.

        Examples
        --------
        >>> MultiScaleDiscriminator.sized("small", num_scales=2).get_params()["ndf"]
        4
        """
        return cls(**{**_SIZED[check_size(size)], **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> MultiScaleDiscriminator:
        """``sized("small", **overrides)``: an alias kept for earlier code.

        Parameters
        ----------
        **overrides
            Constructor parameters that replace the size's.

        Returns
        -------
        MultiScaleDiscriminator
        """
        return cls.sized("small", **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> MultiScaleDiscriminator:
        """Deprecated (FutureWarning): use ``sized("tiny", **overrides)``.

        Parameters
        ----------
        **overrides
            Constructor parameters that replace the size's.

        Returns
        -------
        MultiScaleDiscriminator
        """
        warnings.warn(
            "MultiScaleDiscriminator.tiny() is deprecated; use "
            'MultiScaleDiscriminator.sized("tiny")',
            FutureWarning,
            stacklevel=2,
        )
        return cls.sized("tiny", **overrides)

    def _build_module(self) -> nn.Module:
        sizes = {
            name: check_positive_int(getattr(self, name), name)
            for name in ("num_scales", "ndf", "n_layers", "downsampling_factor", "max_channels")
        }
        if sizes["max_channels"] < sizes["ndf"]:
            raise ValueError(
                f"max_channels ({self.max_channels}) must be at least ndf ({self.ndf})"
            )
        std = resolve_init_std(self.init_std, CONV_INIT_STD)
        return normal_init_(MultiScaleDiscriminatorModule(**sizes), std)

    def transform(self, latents: object) -> list[list[torch.Tensor]]:
        """Score latents (eval mode, no gradient).

        Parameters
        ----------
        latents : array-like of shape (batch, 1, length) or (batch, channels, frames)
            A ``(batch, C, T)`` input with ``C > 1`` is flattened channel-major
            to ``(batch, 1, C * T)``.

        Returns
        -------
        list of list of torch.Tensor
            Per scale, the outputs of its layers (on the CPU), logits
            ``(batch, 1, frames)`` last.
        """
        self._check_initialized()
        x = check_tensor(latents, name="latents", ndim=3).to(self.device_)
        module = self.module_
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                outputs = module(x)
        finally:
            module.train(was_training)
        return [[t.cpu() for t in scale] for scale in outputs]
