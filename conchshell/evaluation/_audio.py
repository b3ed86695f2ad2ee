"""Input handling shared by the evaluation metrics.

Every metric takes mono audio at 16 kHz as numpy or torch, one clip ``(samples,)``
or a batch ``(n, samples)`` (``(n, 1, samples)`` is accepted too), as floats in
[-1, 1] (integer PCM is not rescaled), and returns
plain numpy/float results, so it runs the same on a generator's output and on
clips read from disk.
"""

from __future__ import annotations

import numpy as np
import torch

from conchshell._validation import check_positive_int, check_tensor

__all__ = ["as_batch", "check_pair", "check_sample_rate", "reduce_scores"]

_REDUCTIONS = ("mean", "none")


def as_batch(audio: object, *, name: str = "audio", min_samples: int = 1) -> torch.Tensor:
    """Return ``audio`` as a float32 CPU tensor of shape ``(n, samples)``.

    Parameters
    ----------
    audio : array-like or torch.Tensor
        ``(samples,)``, ``(n, samples)`` or ``(n, 1, samples)``.
    name : str, default="audio"
        How the input is called in error messages.
    min_samples : int, default=1
        The shortest clip the caller can analyse.

    Returns
    -------
    torch.Tensor
        Shape ``(n, samples)``, detached, on the CPU.
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
    t = check_tensor(audio, name=name, ndim=(1, 2, 3), device="cpu")
    if t.ndim == 3:
        if t.shape[1] != 1:
            raise ValueError(
                f"{name} must be mono: shape (n, 1, samples) expected, got {tuple(t.shape)}"
            )
        t = t[:, 0]
    elif t.ndim == 1:
        t = t.unsqueeze(0)
    if t.shape[-1] < min_samples:
        raise ValueError(
            f"{name} clips have {t.shape[-1]} samples; at least {min_samples} are needed"
        )
    return t.contiguous()


def check_pair(
    reference: object, generated: object, *, min_samples: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a reference batch and a generated batch of the same shape."""
    ref = as_batch(reference, name="reference", min_samples=min_samples)
    gen = as_batch(generated, name="generated", min_samples=min_samples)
    if ref.shape != gen.shape:
        raise ValueError(
            f"reference and generated must have the same shape (n, samples), "
            f"got {tuple(ref.shape)} and {tuple(gen.shape)}"
        )
    return ref, gen


def check_sample_rate(sample_rate: object) -> int:
    """Return ``sample_rate`` as a positive int or raise a clear error."""
    return check_positive_int(sample_rate, "sample_rate")


def reduce_scores(scores: np.ndarray, reduction: str) -> float | np.ndarray:
    """Average per-clip scores (``"mean"``) or return them (``"none"``).

    Clips whose score is undefined are NaN; the mean skips them, and is NaN only
    when every clip is undefined.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    scores = np.asarray(scores, dtype=np.float64)
    if reduction == "none":
        return scores
    if np.all(np.isnan(scores)):
        return float("nan")
    return float(np.nanmean(scores))
