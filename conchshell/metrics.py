"""Objective audio measures: spectral distance, SI-SDR, PESQ, STOI and codebook usage.

Every function takes a reference and an estimate as numpy arrays or torch
tensors of shape ``(samples,)`` or ``(batch, samples)``. Per-clip measures
(:func:`si_sdr`, :func:`pesq_wb`, :func:`stoi`) return one value per clip as a
numpy array; :func:`mel_l1` returns the mean over the batch (it is the
generator's training loss, :func:`conchshell.gan.losses.mel_l1_loss`). PESQ and STOI are
speech measures: on piano they barely notice band-limiting, so report them
beside spectral measures, never alone.

Examples
--------
>>> import numpy as np
>>> t = np.arange(16000) / 16000
>>> ref = np.sin(2 * np.pi * 440 * t)
>>> float(si_sdr(ref, ref + 0.01 * np.sin(2 * np.pi * 3000 * t))[0]) > 30
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from conchshell._validation import check_positive_int

__all__ = [
    "codebook_usage",
    "mel_l1",
    "nanmean_count",
    "pesq_wb",
    "si_sdr",
    "stoi",
]


def _pair(reference: Any, estimate: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 arrays of shape (batch, samples), checked to match."""
    arrays = []
    for name, x in (("reference", reference), ("estimate", estimate)):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must have shape (samples,) or (batch, samples), got {arr.shape}"
            )
        if arr.shape[1] == 0 or arr.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        arrays.append(arr)
    ref, est = arrays
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} differ in shape")
    return ref, est


def mel_l1(
    reference: Any,
    estimate: Any,
    sample_rate: int = 16000,
    n_fft: int = 2048,
    hop_length: int = 300,
    win_length: int = 1200,
    n_mels: int = 128,
) -> float:
    """Mean absolute difference of log10-mel spectrograms: the generator's mel loss.

    The figure is :func:`conchshell.gan.losses.mel_l1_loss` (paper eq. 5)
    evaluated without gradients, so what is reported (Table 2's mel-L1
    column, ``bench/codec.py``) is the term the generator trains on. With the
    defaults: audio at 16 kHz, a Hann-windowed STFT with n_fft 2048, hop 300
    and window 1200, magnitudes (power 1) on 128 Slaney-scale mel filters
    with Slaney (area) normalisation, then ``log10(max(mel, 1e-5))``; the
    mean runs over clips, mel bins and frames.

    Parameters
    ----------
    reference, estimate : array-like, shape (samples,) or (batch, samples)
        Mono audio at ``sample_rate``; computed in float32.
    sample_rate, n_fft, hop_length, win_length, n_mels : int
        The mel transform's settings; change them only to measure something
        other than the training loss.

    Returns
    -------
    float
        0 for identical signals; larger is worse. Halving the amplitude
        moves every mel bin above the floor by ``log10(2) = 0.301``.
    """
    from conchshell.gan.losses import mel_l1_loss

    ref, est = _pair(reference, estimate)
    settings = (sample_rate, n_fft, hop_length, win_length, n_mels)
    with torch.no_grad():
        value = mel_l1_loss(torch.from_numpy(ref).float(), torch.from_numpy(est).float(), *settings)
    return float(value)


def si_sdr(reference: Any, estimate: Any, eps: float = 1e-12) -> np.ndarray:
    """Scale-invariant signal-to-distortion ratio in dB, one value per clip.

    Both signals are made zero-mean; the reference is scaled to best match the
    estimate, and the ratio of its energy to the energy of what remains is
    returned. A silent reference gives NaN.

    Parameters
    ----------
    reference, estimate : array-like, shape (samples,) or (batch, samples)

    Returns
    -------
    numpy.ndarray of float, shape (batch,)
    """
    ref, est = _pair(reference, estimate)
    ref = ref - ref.mean(axis=1, keepdims=True)
    est = est - est.mean(axis=1, keepdims=True)
    energy = (ref**2).sum(axis=1)
    scores = np.full(ref.shape[0], np.nan)
    ok = energy > eps
    alpha = (ref[ok] * est[ok]).sum(axis=1) / energy[ok]
    target = alpha[:, None] * ref[ok]
    noise = est[ok] - target
    scores[ok] = 10 * np.log10(((target**2).sum(axis=1) + eps) / ((noise**2).sum(axis=1) + eps))
    return scores


def pesq_wb(reference: Any, estimate: Any, sample_rate: int = 16000) -> np.ndarray:
    """Wide-band PESQ (ITU-T P.862.2) per clip, NaN where PESQ finds no utterance.

    The ``pesq`` package raises on clips it finds no speech-like activity in
    (silence, some sparse music); those clips get NaN so a batch still scores.
    Use :func:`nanmean_count` to average and count them.

    Parameters
    ----------
    reference, estimate : array-like, shape (samples,) or (batch, samples)
    sample_rate : int, default=16000
        Wide-band PESQ is defined at 16 kHz only.

    Returns
    -------
    numpy.ndarray of float, shape (batch,)
        Scores from about 1.0 (bad) to 4.64 (transparent), or NaN.
    """
    from pesq import NoUtterancesError, pesq

    if sample_rate != 16000:
        raise ValueError(f"wide-band PESQ needs 16 kHz audio, got sample_rate={sample_rate}")
    ref, est = _pair(reference, estimate)
    scores = np.full(ref.shape[0], np.nan)
    for i in range(ref.shape[0]):
        if not (ref[i].any() and est[i].any()):
            continue  # silence: PESQ has no utterance to find (and would divide by zero)
        try:
            scores[i] = pesq(sample_rate, ref[i], est[i], "wb")
        except NoUtterancesError:
            continue
    return scores


def stoi(reference: Any, estimate: Any, sample_rate: int = 16000) -> np.ndarray:
    """Short-time objective intelligibility (0..1) per clip, via ``pystoi``.

    Parameters
    ----------
    reference, estimate : array-like, shape (samples,) or (batch, samples)
    sample_rate : int, default=16000

    Returns
    -------
    numpy.ndarray of float, shape (batch,)
    """
    from pystoi import stoi as _stoi

    ref, est = _pair(reference, estimate)
    return np.array(
        [_stoi(r, e, sample_rate, extended=False) for r, e in zip(ref, est, strict=True)]
    )


def codebook_usage(codes: Any, n_codes: int) -> dict[str, float]:
    """How evenly a set of discrete codes uses a codebook.

    Parameters
    ----------
    codes : array-like of int
        Codes of any shape, each in ``[0, n_codes)``.
    n_codes : int
        Codebook size.

    Returns
    -------
    dict
        ``perplexity``: exp of the entropy of the code histogram (1 when one
        code is used, ``n_codes`` when all are used equally);
        ``used_fraction``: share of the codebook used at least once;
        ``n_used``: number of codes used.

    Examples
    --------
    >>> codebook_usage([0, 1, 2, 3], n_codes=8)["perplexity"]
    4.0
    """
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes).reshape(-1)
    n_codes = check_positive_int(n_codes, "n_codes")
    if arr.size == 0:
        raise ValueError("codes is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"codes must be integers, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_codes:
        raise ValueError(f"codes must lie in [0, {n_codes}), got [{arr.min()}, {arr.max()}]")
    counts = np.bincount(arr, minlength=n_codes)
    probs = counts[counts > 0] / arr.size
    entropy = float(-(probs * np.log(probs)).sum())
    n_used = int((counts > 0).sum())
    return {
        "perplexity": round(math.exp(entropy), 10),
        "used_fraction": n_used / n_codes,
        "n_used": n_used,
    }


def nanmean_count(scores: Any) -> tuple[float, int]:
    """Mean of the finite scores and the number of NaN scores left out.

    Parameters
    ----------
    scores : array-like of float
        Scores of any shape (flattened).

    Returns
    -------
    (float, int)
        NaN as the mean when every score is NaN.

    Examples
    --------
    >>> nanmean_count([1.0, float("nan"), 3.0])
    (2.0, 1)
    """
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    bad = int(np.isnan(arr).sum())
    good = arr[~np.isnan(arr)]
    return (float(good.mean()) if good.size else math.nan), bad
