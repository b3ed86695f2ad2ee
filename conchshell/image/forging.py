"""Forging a time axis: turn an image encoder's block maps into a short video.

I3D reads videos, and a still image has no time axis. Algorithm 1 of the
paper forges one from the encoder's depth: every block's feature map becomes
one RGB-like frame, repeated a few times, so "time" runs from shallow to deep
features. :class:`TemporalForger` does this (``mode="groups"``), or builds
a no-forging baseline: a static video of the image itself (``mode="repeat"``)
or of the encoder's last block map (``mode="static"``, the VGG baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import repeat
from sklearn.base import TransformerMixin
from torch import nn
from torch.nn import functional as F

from conchshell._validation import check_positive_int, check_tensor
from conchshell.base import TorchComponent, resolve_device
from conchshell.image.tcnn import check_images

__all__ = ["ForgingModule", "TemporalForger"]

_MODES = ("groups", "repeat", "static")


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class ForgingModule(nn.Module):
    """Differentiable forging, usable inside a training graph.

    Parameters
    ----------
    mode : {"groups", "repeat", "static"}
    repeats : int
        Frames per block map (``"groups"``).
    size : int
        Output height and width.
    n_frames : int
        Frames of the static videos (``"repeat"``, ``"static"``).
    """

    def __init__(self, mode: str, repeats: int, size: int, n_frames: int) -> None:
        super().__init__()
        self.mode, self.repeats, self.size, self.n_frames = mode, repeats, size, n_frames

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Video of shape (batch, 3, frames, size, size).

        Parameters
        ----------
        x : torch.Tensor or sequence of torch.Tensor
            The image ``(batch, 3, H, W)`` for ``"repeat"``; otherwise the encoder's
            block maps ``(batch, C_i, H_i, W_i)``, each folded to 3 channels by
            averaging three channel groups (``"static"`` uses only the last map).

        Returns
        -------
        torch.Tensor
        """
        if self.mode == "repeat":
            return repeat(_resize(x, self.size), "b c h w -> b c t h w", t=self.n_frames)
        if self.mode == "static":
            return repeat(self._frame(x[-1]), "b c h w -> b c t h w", t=self.n_frames)
        frames = [self._frame(fmap) for fmap in x]
        video = torch.stack(frames, dim=2)  # (b, 3, n_blocks, size, size)
        return repeat(video, "b c n h w -> b c (n r) h w", r=self.repeats)

    def _frame(self, fmap: torch.Tensor) -> torch.Tensor:
        # tensor_split gives the first C % 3 groups one channel more than the rest.
        groups = torch.tensor_split(fmap, 3, dim=1)
        frame = torch.cat([g.mean(dim=1, keepdim=True) for g in groups], dim=1)
        return _resize(frame, self.size)


class TemporalForger(TransformerMixin, TorchComponent):
    """Build the video that I3D reads from an encoder's block maps (Algorithm 1).

    ``mode="groups"``: for every block map of shape (batch, C, H, W), the C
    channels are split into 3 contiguous groups with :func:`torch.tensor_split`
    (when C is not a multiple of 3, the first ``C % 3`` groups hold one channel
    more: 16 channels give groups of 6, 5 and 5), each group is averaged into
    one channel, the 3-channel frame is resized to ``size x size`` (bilinear),
    and repeated ``repeats`` times along time. The frames follow the blocks
    from shallow to deep. TCNN-6 gives (batch, 3, 18, 224, 224).

    ``mode="repeat"``: the input is the image batch itself, resized to
    ``size x size`` and repeated ``n_frames`` times (the "without forging"
    baseline).

    ``mode="static"``: only the encoder's last block map is turned into a
    frame (as in ``"groups"``) and repeated ``n_frames`` times: the encoder's
    features without a forged time axis (the paper's VGG baseline).

    The forger has no weights: ``fit`` only checks the parameters.

    Parameters
    ----------
    mode : {"groups", "repeat", "static"}, default="groups"
        Forge from block maps, repeat the image, or repeat the last block map.
    repeats : int, default=3
        Frames per block map (``"groups"``).
    size : int, default=224
        Height and width of the video.
    n_frames : int, default=18
        Length of the static video (``"repeat"``, ``"static"``); 18 matches
        TCNN-6 forging.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the video is built.
    random_state : None, default=None
        Unused (forging is deterministic); kept for the common interface.

    Attributes
    ----------
    module_ : ForgingModule
        The forging step as a parameter-free module, for use in a graph.

    Examples
    --------
    >>> import torch
    >>> maps = [torch.rand(2, 16, 224, 224), torch.rand(2, 32, 112, 112)]
    >>> TemporalForger(size=64, device="cpu").transform(maps).shape
    torch.Size([2, 3, 6, 64, 64])
    """

    def __init__(
        self,
        mode: str = "groups",
        repeats: int = 3,
        size: int = 224,
        n_frames: int = 18,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.mode = mode
        self.repeats = repeats
        self.size = size
        self.n_frames = n_frames
        self.device = device
        self.random_state = random_state

    def _build_module(self) -> ForgingModule:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        for name in ("repeats", "size", "n_frames"):
            check_positive_int(getattr(self, name), name)
        return ForgingModule(self.mode, int(self.repeats), int(self.size), int(self.n_frames))

    def fit(self, X: object = None, y: object = None) -> TemporalForger:
        """Check the parameters and build the (weightless) module; ``X`` and ``y`` are ignored.

        Parameters
        ----------
        X, y : ignored
            Present for the scikit-learn API.

        Returns
        -------
        self
        """
        self.initialize()
        return self

    def _check_maps(self, maps: object, device: torch.device) -> list[torch.Tensor]:
        if isinstance(maps, torch.Tensor | np.ndarray) or not isinstance(maps, Sequence):
            shape = tuple(getattr(maps, "shape", ()))
            raise ValueError(
                f"mode={self.mode!r} expects the list of block feature maps an encoder's transform "
                f"returns, each (batch, C, H, W); got {type(maps).__name__} of shape {shape} "
                "(use mode='repeat' to make a video from images)"
            )
        if len(maps) == 0:
            raise ValueError(f"mode={self.mode!r} needs at least one block feature map, got none")
        checked = []
        for i, fmap in enumerate(maps):
            t = check_tensor(fmap, name=f"block map {i}", ndim=4, device=device)
            if t.shape[1] < 3:
                raise ValueError(
                    f"block map {i} has {t.shape[1]} channels; forging splits them into 3 "
                    "groups, so it needs at least 3"
                )
            if checked and t.shape[0] != checked[0].shape[0]:
                raise ValueError(
                    f"block map {i} has batch size {t.shape[0]}, block map 0 has "
                    f"{checked[0].shape[0]}"
                )
            checked.append(t)
        return checked

    def transform(self, X: object) -> torch.Tensor:
        """Forge the video.

        Parameters
        ----------
        X : list of tensors of shape (batch, C_i, H_i, W_i), or images
            ``mode="groups"``: the block maps from an encoder's ``transform``.
            ``mode="repeat"``: normalised images of shape (batch, 3, H, W).
            ``mode="static"``: block maps, of which only the last is used.

        Returns
        -------
        torch.Tensor of shape (batch, 3, frames, size, size)
            ``frames`` is ``repeats * len(X)`` or ``n_frames``; on ``device_``.
        """
        # Stateless: build the step from the current parameters, so set_params needs no refit.
        module = self._build_module()
        device = resolve_device(self.device)
        if self.mode in ("groups", "static"):
            inputs: object = self._check_maps(X, device)
        else:
            if isinstance(X, list | tuple):
                raise ValueError(
                    f"mode='repeat' expects an image batch (batch, 3, H, W), got a list of "
                    f"{len(X)} items (use mode='groups' for an encoder's block maps)"
                )
            inputs = check_images(X).to(device)
        with torch.no_grad():
            return module(inputs)

    # Stateless: transform works before fit.
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
