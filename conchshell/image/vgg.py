"""VGG block features, for the paper's VGG baseline and as a drop-in TCNN alternative.

:class:`VGGEncoder` runs torchvision's VGG feature layers and returns the
output of each convolution block just before its max-pooling, as a list of
maps in the same form :class:`~conchshell.image.tcnn.TCNNEncoder` gives, so
:class:`~conchshell.image.forging.TemporalForger` reads either.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torchvision
from sklearn.base import TransformerMixin
from torch import nn

from conchshell._validation import check_positive_int
from conchshell.base import TorchComponent, load_state_dict_strictly
from conchshell.image.tcnn import check_images

__all__ = ["ARCHS", "VGGEncoder", "VGGFeatures"]

ARCHS = (
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
)


class VGGFeatures(nn.Module):
    """torchvision's ``features`` stack, returning the map before each max-pool.

    Parameters
    ----------
    features : torch.nn.Sequential
        A torchvision VGG ``features`` module. Its state-dict keys stay
        ``features.N.*``, as in torchvision's files.
    blocks : sequence of int
        Which blocks (0-based) to return, in increasing order.
    """

    def __init__(self, features: nn.Sequential, blocks: Sequence[int]) -> None:
        super().__init__()
        self.features = features
        self.blocks = tuple(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Block maps, each of shape (batch, C_i, H_i, W_i).

        Parameters
        ----------
        x : torch.Tensor
            Normalised images ``(batch, 3, H, W)``.

        Returns
        -------
        list of torch.Tensor
            The output of each selected block (before its max pooling), shallowest first.
        """
        maps, block, last = [], 0, max(self.blocks)
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                if block in self.blocks:
                    maps.append(x)
                if block == last:
                    break  # the deeper layers are not needed
                block += 1
            x = layer(x)
        return maps


def _init_like_torchvision(module: nn.Module) -> None:
    # The initialisation torchvision's VGG applies to its feature layers.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()


class VGGEncoder(TransformerMixin, TorchComponent):
    """torchvision VGG feature layers as a block-feature encoder.

    Parameters
    ----------
    arch : str, default="vgg16"
        One of ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19`` and their ``_bn``
        variants.
    weights : str or os.PathLike or None, default=None
        A local torchvision-format state dict (``.pth``) of that architecture,
        read with ``torch.load(weights_only=True)``. Every ``features.*`` key
        must be present with the right shape; ``classifier.*`` keys may be
        present (they are checked and then dropped); anything else is an
        error. Nothing is ever downloaded. Without a file the features come
        from a seeded random initialisation, and :meth:`initialize` warns.
    blocks : sequence of int or None, default=None
        Which of the five blocks (0-based) to return; ``None`` returns all.
    batch_size : int, default=8
        Images per forward pass in :meth:`transform` (bounds memory).
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the module runs.
    random_state : int, RandomState or None, default=None
        Seeds the random initialisation when there is no ``weights`` file.

    Attributes
    ----------
    module_ : VGGFeatures
        The feature layers (kept frozen, in eval mode).
    blocks_ : tuple of int
        The blocks returned.

    Examples
    --------
    >>> import torch, warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     enc = VGGEncoder(arch="vgg11", device="cpu", random_state=0).fit()
    >>> [tuple(m.shape[1:]) for m in enc.transform(torch.randn(1, 3, 64, 64))]
    [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4)]
    """

    _N_BLOCKS = 5

    def __init__(
        self,
        arch: str = "vgg16",
        weights: str | os.PathLike | None = None,
        blocks: Sequence[int] | None = None,
        batch_size: int = 8,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.arch = arch
        self.weights = weights
        self.blocks = blocks
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> tuple[int, ...]:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        check_positive_int(self.batch_size, "batch_size")
        if self.blocks is None:
            return tuple(range(self._N_BLOCKS))
        blocks = tuple(self.blocks)
        if (
            not blocks
            or any(not isinstance(b, int | np.integer) for b in blocks)
            or sorted(set(blocks)) != list(blocks)
            or blocks[0] < 0
            or blocks[-1] >= self._N_BLOCKS
        ):
            raise ValueError(
                f"blocks must be increasing, distinct block indices in [0, {self._N_BLOCKS}), "
                f"got {self.blocks!r}"
            )
        return tuple(int(b) for b in blocks)

    def _meta_model(self) -> nn.Module:
        # Built on the meta device (instant, no memory): VGG's classifier alone holds ~120M
        # parameters that block features never use.
        with torch.device("meta"):
            return getattr(torchvision.models, self.arch)(weights=None)

    def _build_module(self) -> VGGFeatures:
        module = VGGFeatures(self._meta_model().features.to_empty(device="cpu"), self.blocks_)
        _init_like_torchvision(module)
        return module

    def initialize(self) -> VGGEncoder:
        """Build the feature layers, loading ``weights`` if given.

        Returns
        -------
        self
        """
        self.blocks_ = self._check_params()
        super().initialize()
        if self.weights is None:
            warnings.warn(
                f"VGGEncoder({self.arch!r}) has no weights file: its features come from a random "
                "initialisation. Pass weights='path/to/vgg.pth' (torchvision format) for "
                "ImageNet features.",
                UserWarning,
                stacklevel=2,
            )
        else:
            self._load(os.fspath(self.weights))
        self.module_.requires_grad_(False)
        self.module_.eval()
        return self

    def _load(self, path: str) -> None:
        if not os.path.isfile(path):
            raise ValueError(f"weights file {path!r} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"weights file {path!r} could not be read as a torch state dict "
                f"(weights_only loading): {exc}"
            ) from exc
        if not isinstance(state, dict):
            raise ValueError(
                f"weights file {path!r} holds a {type(state).__name__}, expected a "
                "torchvision state dict"
            )
        expected = {k: v.shape for k, v in self._meta_model().state_dict().items()}
        unexpected = sorted(k for k in state if k not in expected)
        wrong = sorted(
            f"{k}: file {tuple(v.shape)} vs {self.arch} {tuple(expected[k])}"
            for k, v in state.items()
            if k in expected and k.startswith("classifier.") and v.shape != expected[k]
        )
        if unexpected or wrong:
            raise ValueError(
                f"weights file {path!r} is not a torchvision {self.arch} state dict: "
                + "; ".join(
                    part
                    for part in (
                        f"unexpected keys: {', '.join(unexpected[:8])}" if unexpected else "",
                        f"shape mismatches: {', '.join(wrong[:8])}" if wrong else "",
                    )
                    if part
                )
            )
        features = {k: v for k, v in state.items() if k.startswith("features.")}
        load_state_dict_strictly(
            self.module_, features, source=f"weights file {path!r} ({self.arch})"
        )

    def fit(self, X: object = None, y: object = None) -> VGGEncoder:
        """Build the module; nothing is learned (``X`` and ``y`` are ignored).

        Parameters
        ----------
        X, y : ignored
            Present for the scikit-learn API.

        Returns
        -------
        self
        """
        return self.initialize()

    def transform(self, images: object) -> list[torch.Tensor]:
        """Block features of a batch of images.

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, H, W)
            Normalised RGB images, at least ``2 ** max(blocks)`` px on each side
            (16 px for all five blocks).

        Returns
        -------
        list of torch.Tensor
            One map per selected block, the output of its last ReLU before
            the max-pool (``vgg16`` at 224 px: 64x224x224, 128x112x112,
            256x56x56, 512x28x28, 512x14x14), on ``device_``.
        """
        self._check_initialized()
        x = check_images(images)
        side = 2 ** max(self.blocks_)
        if min(x.shape[-2:]) < side:
            raise ValueError(
                f"images must be at least {side}x{side} px to reach block {max(self.blocks_)}, "
                f"got {tuple(x.shape[-2:])}"
            )
        parts = []
        with torch.no_grad():
            for begin in range(0, len(x), self.batch_size):
                parts.append(self.module_(x[begin : begin + self.batch_size].to(self.device_)))
        return [torch.cat(maps) for maps in zip(*parts, strict=True)]
