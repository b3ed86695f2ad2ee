"""Multi-resolution STFT distance between generated and reference audio.

The distance that neural vocoders (Parallel WaveGAN, HiFi-GAN, DAC) train on:
at each of a few STFT resolutions, the spectral convergence
``||S_ref - S_gen||_F / ||S_ref||_F`` plus the mean absolute difference of the
log magnitudes, averaged over the resolutions. Short windows judge timing, long
ones pitch, so it sees what a speech measure such as PESQ ignores in piano
(a dulled attack, a detuned partial, missing bass).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from conchshell.evaluation._audio import check_pair, reduce_scores

__all__ = ["DEFAULT_RESOLUTIONS", "multi_resolution_stft_distance"]

# (n_fft, hop_length, win_length) at 16 kHz: 32, 64 and 128 ms windows with 75 % overlap.
DEFAULT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = (
    (512, 128, 512),
    (1024, 256, 1024),
    (2048, 512, 2048),
)
_EPS = 1e-5  # magnitude floor before the log: -100 dB, so silence does not dominate


def _magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, dtype=x.dtype)
    spec = torch.stft(
        x, n_fft=n_fft, hop_length=hop, win_length=win, window=window, return_complex=True
    )
    return spec.abs()


def _check_resolutions(resolutions: object) -> list[tuple[int, int, int]]:
    try:
        out = [tuple(int(v) for v in r) for r in resolutions]  # type: ignore[union-attr]
    except TypeError as exc:
        raise TypeError(
            f"resolutions must be a sequence of (n_fft, hop_length, win_length), "
            f"got {resolutions!r}"
        ) from exc
    if not out:
        raise ValueError("resolutions must not be empty")
    for r in out:
        if len(r) != 3 or min(r) <= 0 or r[2] > r[0]:
            raise ValueError(
                f"each resolution must be positive (n_fft, hop_length, win_length) with "
                f"win_length <= n_fft, got {r}"
            )
    return out  # type: ignore[return-value]


def multi_resolution_stft_distance(
    reference: object,
    generated: object,
    *,
    resolutions: Sequence[tuple[int, int, int]] = DEFAULT_RESOLUTIONS,
    reduction: str = "mean",
) -> float | np.ndarray:
    """Spectral convergence plus log-magnitude L1, averaged over STFT resolutions.

    Lower is better; identical signals score 0.

    Parameters
    ----------
    reference : array-like or torch.Tensor
        Real audio, ``(samples,)`` or ``(n, samples)``, mono.
    generated : array-like or torch.Tensor
        Generated audio of the same shape.
    resolutions : sequence of (n_fft, hop_length, win_length), default=DEFAULT_RESOLUTIONS
        The STFTs compared (Hann windows).
    reduction : {"mean", "none"}, default="mean"
        ``"mean"`` returns one float; ``"none"`` the per-clip distances ``(n,)``.

    Returns
    -------
    float or numpy.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> multi_resolution_stft_distance(x, x)
    0.0
    """
    res = _check_resolutions(resolutions)
    ref, gen = check_pair(reference, generated, min_samples=max(r[0] for r in res) // 2 + 1)
    total = torch.zeros(ref.shape[0], dtype=torch.float64)
    for n_fft, hop, win in res:
        s_ref = _magnitude(ref, n_fft, hop, win).double()
        s_gen = _magnitude(gen, n_fft, hop, win).double()
        diff = torch.linalg.vector_norm(s_ref - s_gen, dim=(-2, -1))
        convergence = diff / torch.linalg.vector_norm(s_ref, dim=(-2, -1)).clamp_min(_EPS)
        log_l1 = (s_ref.clamp_min(_EPS).log() - s_gen.clamp_min(_EPS).log()).abs().mean((-2, -1))
        total += convergence + log_l1
    return reduce_scores((total / len(res)).numpy(), reduction)
