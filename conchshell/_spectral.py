"""The multi-resolution STFT distance, shared by the codec's loss and the evaluation.

At each STFT resolution (Hann window, centred frames, reflect padding) it adds
the spectral convergence ``||S_ref - S_est||_F / ||S_ref||_F`` and the mean
absolute difference of the log magnitudes, then averages over the
resolutions. :func:`conchshell.codec.jukebox.multispectral_loss` trains on it
(one figure for the whole batch, with gradients);
:func:`conchshell.evaluation.multi_resolution_stft_distance` reports it (one
figure per clip).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["multi_resolution_stft", "stft_magnitude"]


def stft_magnitude(
    x: torch.Tensor, n_fft: int, hop_length: int, win_length: int, *, power_floor: float
) -> torch.Tensor:
    """STFT magnitudes ``sqrt(max(|X|**2, power_floor))`` of ``x`` ``(..., samples)``.

    Parameters
    ----------
    x : torch.Tensor
        Waveforms, ``(samples,)`` or ``(batch, samples)``.
    n_fft, hop_length, win_length : int
        The STFT's size, hop and Hann window length.
    power_floor : float
        The smallest squared magnitude kept: it keeps the log finite and
        gives the square root a gradient where ``|X|`` is zero.

    Returns
    -------
    torch.Tensor
        ``(..., n_fft // 2 + 1, frames)``, real, in ``x``'s dtype.
    """
    window = torch.hann_window(win_length, device=x.device, dtype=x.dtype)
    spec = torch.stft(
        x,
        n_fft,
        hop_length,
        win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=power_floor))


def multi_resolution_stft(
    target: torch.Tensor,
    estimate: torch.Tensor,
    resolutions: Iterable[tuple[int, int, int]],
    *,
    power_floor: float,
    per_clip: bool = False,
) -> torch.Tensor:
    """Spectral convergence plus log-magnitude L1, averaged over STFT resolutions.

    Parameters
    ----------
    target, estimate : torch.Tensor of shape (batch, samples)
        Reference and estimated waveforms. Gradients flow through both.
    resolutions : iterable of (n_fft, hop_length, win_length)
        The STFTs compared.
    power_floor : float
        Passed to :func:`stft_magnitude`; magnitudes are at least
        ``sqrt(power_floor)``, so neither the log nor the convergence's
        denominator needs another guard.
    per_clip : bool, default=False
        ``False``: one norm and one mean over the whole batch, a scalar (the
        codec's training loss). ``True``: one figure per clip, ``(batch,)``.

    Returns
    -------
    torch.Tensor
        A scalar, or ``(batch,)`` with ``per_clip``; 0 for identical inputs.
    """
    resolutions = list(resolutions)
    if not resolutions:
        raise ValueError("resolutions must not be empty")
    dims = (-2, -1) if per_clip else None
    total = target.new_zeros(target.shape[:-1] if per_clip else ())
    for n_fft, hop, win in resolutions:
        ref = stft_magnitude(target, n_fft, hop, win, power_floor=power_floor)
        est = stft_magnitude(estimate, n_fft, hop, win, power_floor=power_floor)
        convergence = torch.linalg.vector_norm(ref - est, dim=dims) / torch.linalg.vector_norm(
            ref, dim=dims
        )
        log_l1 = (torch.log(ref) - torch.log(est)).abs().mean(dim=dims)
        total = total + convergence + log_l1
    return total / len(resolutions)
