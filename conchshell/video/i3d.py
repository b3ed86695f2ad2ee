"""I3D video features: the forged video -> one 2048-d vector per image.

The authors used an Inception-I3D; this library uses pytorchvideo's I3D
ResNet-50 (``i3d_r50``), whose pooled feature is also 2048-d. Kinetics
weights exist as a file (``I3D_8x8_R50.pyth``) but cannot be downloaded here,
so :class:`I3DExtractor` loads them from a local path when given one and
otherwise runs with its own seeded initialisation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from pytorchvideo.models.hub import i3d_r50
from sklearn.base import TransformerMixin
from torch import nn

from conchshell._validation import check_positive_int, check_tensor
from conchshell.base import TorchComponent, load_state_dict_strictly

__all__ = ["I3DBackbone", "I3DExtractor"]

_N_BACKBONE_BLOCKS = 6  # blocks.0-5: stem, res2, temporal pool, res3, res4, res5
_MIN_FRAMES = 2  # the temporal max-pool after res2 halves time
_MIN_SIDE = 32  # five stride-2 steps in space


class I3DBackbone(nn.Module):
    """I3D-R50 without its head: ``blocks.0-5``, then the mean over time and space.

    Parameters
    ----------
    blocks : sequence of torch.nn.Module
        The first six blocks of a pytorchvideo ``i3d_r50``. Their state-dict
        keys stay ``blocks.N.*``, as in pytorchvideo's checkpoints.
    """

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Features of shape (batch, channels) from a video (batch, 3, T, H, W).

        Parameters
        ----------
        video : torch.Tensor
            Clip ``(batch, 3, T, H, W)``.

        Returns
        -------
        torch.Tensor
            The last block's output averaged over time and space.
        """
        x = video
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3, 4))


class I3DExtractor(TransformerMixin, TorchComponent):
    """pytorchvideo's I3D ResNet-50 as a video feature extractor.

    Parameters
    ----------
    weights : str or os.PathLike or None, default=None
        A local Kinetics checkpoint in pytorchvideo's format (such as
        ``I3D_8x8_R50.pyth``): a dict whose ``model_state`` holds the whole
        model's state dict, head (``blocks.6.proj.*``) included. It is read
        with ``torch.load(weights_only=True)``, loaded strictly into the full
        model, and the head is then dropped. Without it the network keeps its
        own seeded initialisation and :meth:`initialize` warns.
    frozen : bool, default=True
        Freeze the parameters (``requires_grad=False``). ``False`` leaves them
        trainable, for an estimator that fine-tunes the extractor.
    width : int, default=64
        Stem channels. 64 is the real I3D-R50 (2048 features); smaller widths
        give ``32 * width`` features for fast CPU runs and tests (a
        checkpoint only fits width 64).
    batch_size : int, default=4
        Videos per forward pass in :meth:`transform` (bounds memory).
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the module runs.
    random_state : int, RandomState or None, default=None
        Seeds the initialisation when there is no checkpoint.

    Attributes
    ----------
    module_ : I3DBackbone
        The headless network (eval mode).
    n_features_out_ : int
        Length of the feature vector, ``32 * width``.

    Examples
    --------
    >>> import torch, warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     ext = I3DExtractor(width=8, device="cpu", random_state=0).fit()
    >>> ext.transform(torch.randn(2, 3, 4, 32, 32)).shape
    torch.Size([2, 256])
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        frozen: bool = True,
        width: int = 64,
        batch_size: int = 4,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.weights = weights
        self.frozen = frozen
        self.width = width
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        for name in ("width", "batch_size"):
            check_positive_int(getattr(self, name), name)
        if self.width % 4:
            # The bottlenecks' inner width is a quarter of their output width.
            raise ValueError(f"width must be a multiple of 4, got {self.width!r}")

    def _build_full(self) -> nn.Module:
        return i3d_r50(pretrained=False, stem_dim_out=int(self.width))

    def _build_module(self) -> I3DBackbone:
        full = self._build_full()
        if self.weights is not None:
            self._load(os.fspath(self.weights), full)
        return I3DBackbone(list(full.blocks[:_N_BACKBONE_BLOCKS]))

    def _load(self, path: str, full: nn.Module) -> None:
        source = f"I3D checkpoint {path!r}"
        if not os.path.isfile(path):
            raise ValueError(f"{source} does not exist")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"{source} could not be read with torch.load(weights_only=True): {exc}"
            ) from exc
        if not isinstance(checkpoint, Mapping) or "model_state" not in checkpoint:
            found = list(checkpoint)[:8] if isinstance(checkpoint, Mapping) else []
            raise ValueError(
                f"{source} is not in pytorchvideo's format: expected a dict with a "
                f"'model_state' entry, got {type(checkpoint).__name__} with keys {found}"
            )
        load_state_dict_strictly(
            full, checkpoint["model_state"], source=f"{source} (i3d_r50, width {self.width})"
        )

    def initialize(self) -> I3DExtractor:
        """Build the network (loading ``weights`` if given); do not train.

        Returns
        -------
        self
        """
        self._check_params()
        super().initialize()
        if self.weights is None:
            warnings.warn(
                "I3DExtractor has no weights file: its features come from its own seeded "
                "initialisation, not Kinetics training. Pass weights='path/to/I3D_8x8_R50.pyth' "
                "for the pretrained network.",
                UserWarning,
                stacklevel=2,
            )
        self.module_.requires_grad_(not self.frozen)
        self.module_.eval()
        self.n_features_out_ = 32 * int(self.width)
        return self

    def fit(self, X: object = None, y: object = None) -> I3DExtractor:
        """Build the network; nothing is learned here (``X`` and ``y`` are ignored).

        Parameters
        ----------
        X, y : ignored
            Present for the scikit-learn API.

        Returns
        -------
        self
        """
        return self.initialize()

    def transform(self, video: object) -> torch.Tensor:
        """Features of a batch of videos.

        Parameters
        ----------
        video : array-like or torch.Tensor of shape (batch, 3, T, H, W)
            At least 2 frames and 32x32 px.

        Returns
        -------
        torch.Tensor of shape (batch, n_features_out_)
            On ``device_``.
        """
        self._check_initialized()
        dtype = getattr(video, "dtype", None)
        if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
            raise ValueError(f"video must hold floating-point values, got dtype {dtype}")
        x = check_tensor(video, name="video", ndim=5, shape=(None, 3, None, None, None))
        t, h, w = x.shape[2:]
        if t < _MIN_FRAMES or min(h, w) < _MIN_SIDE:
            raise ValueError(
                f"video must have at least {_MIN_FRAMES} frames of at least "
                f"{_MIN_SIDE}x{_MIN_SIDE} px, got shape {tuple(x.shape)} (batch, 3, T, H, W)"
            )
        self.module_.eval()
        out = []
        with torch.no_grad():
            for begin in range(0, len(x), self.batch_size):
                out.append(self.module_(x[begin : begin + self.batch_size].to(self.device_)))
        return torch.cat(out)
