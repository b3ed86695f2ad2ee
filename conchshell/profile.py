"""Parameter and multiply-accumulate (MAC) counting for any module and input.

The convention is the one behind the paper's Table 1 (the ``thop`` counter's):

- a convolution costs ``output elements x C_in / groups x kernel size``
  (bias not counted); a transposed convolution ``input elements x C_out /
  groups x kernel size``;
- a linear layer costs ``in x out`` per output row;
- average pooling costs one MAC per output element; max pooling costs
  nothing (it compares, it does not multiply), which is what makes TCNN-6
  come to exactly 827,507,200 MACs;
- normalisation, activations, embeddings and element-wise functions are free.

Parameters are all of the module's parameters (weight norm's ``g`` and ``v``
both count). Table 1 leaves the generators' category embedding out: pass
``exclude=(torch.nn.Embedding,)`` to do the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Profile", "count_macs", "count_parameters", "profile"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_AVG_POOL = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


@dataclass(frozen=True)
class Profile:
    """What :func:`profile` measured.

    Attributes
    ----------
    params : int
        Parameters counted (after ``exclude``).
    macs : int
        Multiply-accumulates of one forward pass on the given input.
    layers : list of (str, str, int)
        ``(qualified name, layer type, MACs)`` for every layer that costs MACs,
        in call order.
    """

    params: int
    macs: int
    layers: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def flops(self) -> int:
        """Floating-point operations, taken as two per MAC."""
        return 2 * self.macs

    def __str__(self) -> str:
        return f"{self.params / 1e6:.3f}M params, {self.macs / 1e9:.4f}G MACs"


def count_parameters(module: nn.Module, exclude: Sequence[type[nn.Module]] = ()) -> int:
    """Count the parameters of ``module``, skipping submodules of ``exclude`` types.

    Parameters
    ----------
    module : torch.nn.Module
    exclude : sequence of module types, default=()
        Parameters of submodules of these types are left out (Table 1 leaves
        out the generators' ``nn.Embedding``).

    Returns
    -------
    int

    Examples
    --------
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    excluded: set[int] = set()
    for sub in module.modules():
        if exclude and isinstance(sub, tuple(exclude)):
            excluded.update(id(p) for p in sub.parameters())
    return sum(p.numel() for p in module.parameters() if id(p) not in excluded)


def _layer_macs(layer: nn.Module, inputs: tuple, output: object) -> int:
    if not isinstance(output, torch.Tensor):
        return 0
    if isinstance(layer, _CONV):
        kernel = math.prod(layer.kernel_size)
        return output.numel() * (layer.in_channels // layer.groups) * kernel
    if isinstance(layer, _CONV_T):
        kernel = math.prod(layer.kernel_size)
        return inputs[0].numel() * (layer.out_channels // layer.groups) * kernel
    if isinstance(layer, nn.Linear):
        rows = output.numel() // layer.out_features
        return rows * layer.in_features * layer.out_features
    if isinstance(layer, _AVG_POOL):
        return output.numel()
    return 0


def profile(
    module: nn.Module,
    *inputs: torch.Tensor,
    exclude: Sequence[type[nn.Module]] = (),
    **kwargs: object,
) -> Profile:
    """Count parameters and MACs of one forward pass of ``module`` on ``inputs``.

    Parameters
    ----------
    module : torch.nn.Module
        Any module. It is run once in eval mode without gradients; its
        training flag is restored afterwards.
    *inputs : torch.Tensor
        Positional inputs of ``module.forward``. The MACs are for this whole
        batch: pass a batch of one to get per-sample figures.
    exclude : sequence of module types, optional
        Submodule types whose parameters are not counted.
    **kwargs
        Keyword inputs of ``module.forward``.

    Returns
    -------
    Profile

    Examples
    --------
    >>> p = profile(torch.nn.Conv1d(1, 4, 3, bias=False), torch.zeros(1, 1, 10))
    >>> p.params, p.macs
    (12, 96)
    """
    layers: list[tuple[str, str, int]] = []
    names = {id(m): n for n, m in module.named_modules()}
    handles = []

    def hook(layer: nn.Module, args: tuple, output: object) -> None:
        macs = _layer_macs(layer, args, output)
        if macs:
            layers.append((names.get(id(layer), ""), type(layer).__name__, macs))

    for sub in module.modules():
        if isinstance(sub, _CONV + _CONV_T + _AVG_POOL + (nn.Linear,)):
            handles.append(sub.register_forward_hook(hook))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return Profile(
        params=count_parameters(module, exclude),
        macs=sum(m for _, _, m in layers),
        layers=layers,
    )


def count_macs(module: nn.Module, *inputs: torch.Tensor, **kwargs: object) -> int:
    """MACs of one forward pass of ``module`` on ``inputs`` (see :func:`profile`).

    Parameters
    ----------
    module : torch.nn.Module
    *inputs : torch.Tensor
        The forward pass's positional inputs.
    **kwargs
        Passed on to :func:`profile` (``exclude``).

    Returns
    -------
    int
    """
    return profile(module, *inputs, **kwargs).macs
