"""I3D's stem on the distinct frames of a forged video (a fast-path rewrite).

The forger repeats every frame (three times in ``"groups"`` mode, eighteen in
``"repeat"`` and ``"static"``). A temporal convolution over a window of
repeated frames sees each distinct frame several times with different kernel
slices, so the slices can be summed first: the output at time ``t`` is a 2-D
convolution of the few distinct frames under its window with merged kernels.
The sums are exact maths; only the float rounding of the additions differs.

For I3D-R50's stem (kernel 5 x 7 x 7 over 18 frames repeated 3 times) every
output frame sees 1 to 3 distinct frames instead of 5 slices: 42 % of the
multiply-adds. Outputs whose window covers the same frames with the same
merged kernel are computed once (the 14 inner frames of a static video).
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["RepeatedFramesConv3d", "distinct_frame_stem", "frame_runs"]


def frame_runs(video: torch.Tensor) -> list[int]:
    """Run id of every frame: consecutive frames equal in every batch item share one.

    Parameters
    ----------
    video : torch.Tensor of shape (batch, channels, T, H, W)

    Returns
    -------
    list of int
        ``T`` non-decreasing ids starting at 0.
    """
    runs = [0]
    for t in range(1, video.shape[2]):
        same = torch.equal(video[:, :, t], video[:, :, t - 1])
        runs.append(runs[-1] + (0 if same else 1))
    return runs


class RepeatedFramesConv3d(nn.Module):
    """A ``Conv3d`` (time stride 1) that convolves each distinct frame run once.

    On a video without repeated frames it calls the wrapped convolution.

    Parameters
    ----------
    conv : torch.nn.Conv3d
        Time stride and every dilation 1, one group, zero padding.
    """

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        if not self.supports(conv):
            raise ValueError(
                f"only a zero-padded Conv3d with time stride 1, no dilation and one group "
                f"can be merged over repeated frames, got {conv}"
            )
        self.conv = conv
        # Merged kernels per window pattern; invalid once the weights move or change dtype.
        self._kernels: dict[tuple, torch.Tensor] = {}
        self._kernels_of: tuple | None = None

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        """Whether ``conv`` is a Conv3d this rewrite keeps exact.

        Parameters
        ----------
        conv : torch.nn.Module

        Returns
        -------
        bool
        """
        return (
            isinstance(conv, nn.Conv3d)
            and conv.stride[0] == 1
            and tuple(conv.dilation) == (1, 1, 1)
            and conv.groups == 1
            and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple)
        )

    def _merged(self, pattern: tuple[int | None, ...], width: int) -> torch.Tensor:
        """Kernel ``(out, in * width, kh, kw)``: block ``j`` sums the slices that see run ``j``."""
        weight = self.conv.weight
        key = (weight.data_ptr(), weight.dtype, weight.device)
        if key != self._kernels_of:
            self._kernels, self._kernels_of = {}, key
        if pattern not in self._kernels:
            # Sum in at least float32, round once to the weights' dtype.
            w = weight if weight.dtype == torch.float64 else weight.float()
            blocks = [
                sum(w[:, :, k] for k, run in enumerate(pattern) if run == j) for j in range(width)
            ]
            merged = torch.cat(blocks, dim=1).to(weight.dtype)
            self._kernels[pattern] = merged.contiguous(memory_format=torch.channels_last)
        return self._kernels[pattern]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` (batch, in, T, H, W) as the wrapped Conv3d would.

        Parameters
        ----------
        x : torch.Tensor

        Returns
        -------
        torch.Tensor
            ``(batch, out, T', H', W')``.
        """
        runs = frame_runs(x)
        n_runs = runs[-1] + 1
        if n_runs == len(runs):
            return self.conv(x)
        conv = self.conv
        k_t, pad_t = conv.kernel_size[0], conv.padding[0]
        n_out = len(runs) + 2 * pad_t - k_t + 1
        # Per output frame: the first run under its window and which run each slice sees.
        jobs: dict[tuple[int, tuple[int | None, ...]], list[int]] = defaultdict(list)
        for t in range(n_out):
            seen = [
                runs[i] if 0 <= i < len(runs) else None for i in range(t - pad_t, t - pad_t + k_t)
            ]
            first = min(r for r in seen if r is not None)
            jobs[(first, tuple(None if r is None else r - first for r in seen))].append(t)
        # One frame per run, channels-last 2-D for oneDNN.
        starts = [runs.index(r) for r in range(n_runs)]
        frames = x[:, :, starts]
        batch = x.shape[0]
        results: dict[tuple, torch.Tensor] = {}
        by_pattern: dict[tuple, list[int]] = defaultdict(list)
        for first, pattern in jobs:
            by_pattern[pattern].append(first)
        for pattern, firsts in by_pattern.items():
            width = max(r for r in pattern if r is not None) + 1
            index = torch.tensor([[f + j for j in range(width)] for f in firsts])
            # (batch, in, jobs, width, H, W) -> (batch * jobs, width * in, H, W), run-major.
            stacked = rearrange(frames[:, :, index], "b c n w h x -> (b n) (w c) h x")
            y = F.conv2d(
                stacked.contiguous(memory_format=torch.channels_last),
                self._merged(pattern, width),
                conv.bias,
                stride=conv.stride[1:],
                padding=conv.padding[1:],
            )
            y = rearrange(y, "(b n) c h x -> b c n h x", b=batch)
            for i, first in enumerate(firsts):
                results[(first, pattern)] = y[:, :, i]
        h, w = next(iter(results.values())).shape[-2:]
        # Channels-last 3-D, the layout the rest of the fast path's I3D uses.
        out = x.new_empty((batch, n_out, h, w, conv.out_channels)).permute(0, 4, 1, 2, 3)
        for key, ts in jobs.items():
            for t in ts:
                out[:, :, t] = results[key]
        return out


def distinct_frame_stem(module: nn.Module) -> int:
    """Wrap ``module``'s first Conv3d in :class:`RepeatedFramesConv3d`, in place.

    Only the first convolution sees the forged frames themselves; every later
    one sees the stem's output, whose frames differ.

    Parameters
    ----------
    module : torch.nn.Module
        A video network such as I3D (a ``torch.fx`` graph module works too).

    Returns
    -------
    int
        1 when a convolution was wrapped, 0 when there was none to wrap.
    """
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv3d):
            if not RepeatedFramesConv3d.supports(child):
                return 0
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, RepeatedFramesConv3d(child))
            return 1
    return 0
