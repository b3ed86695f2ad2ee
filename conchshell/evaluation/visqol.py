"""ViSQOL v3 in audio (music) mode, through the ``visqol-python`` package.

``visqol-python`` is a pure-Python port of Google's ViSQOL v3.3.3 whose wheel
ships the audio-mode support-vector-regression model
(``libsvm_nu_svr_model.txt``), so nothing is downloaded. Audio mode expects
48 kHz: 16 kHz clips are resampled (band-limited to 8 kHz, which the reference
and the generated clip share, so the score compares what is there). The
result is MOS-LQO on 1-5, higher is better; it takes about 0.75 s per 8-second
pair on one CPU core.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torchaudio.functional as AF

from conchshell.evaluation._audio import check_pair, check_sample_rate, reduce_scores
from conchshell.levels import SAMPLE_RATE

__all__ = ["VISQOL_SAMPLE_RATE", "visqol_available", "visqol_music"]

VISQOL_SAMPLE_RATE = 48_000


@functools.cache
def _api() -> Any:
    try:
        from visqol import VisqolApi
    except ImportError as exc:  # an optional extra: say how to get it
        raise ImportError(
            "visqol_music needs the 'visqol-python' package (pip install visqol-python)"
        ) from exc
    api = VisqolApi()
    api.create(mode="audio")
    return api


def visqol_available() -> bool:
    """Whether ``visqol-python`` (with its bundled audio-mode model) can be imported."""
    try:
        _api()
    except ImportError:
        return False
    return True


def visqol_music(
    reference: object,
    generated: object,
    *,
    sample_rate: int = SAMPLE_RATE,
    reduction: str = "mean",
) -> float | np.ndarray:
    """ViSQOL MOS-LQO in audio mode (the mode meant for music); higher is better.

    Parameters
    ----------
    reference : array-like or torch.Tensor
        Real audio, ``(samples,)`` or ``(n, samples)``, mono.
    generated : array-like or torch.Tensor
        Generated audio of the same shape.
    sample_rate : int, default=16000
        Rate of both inputs; they are resampled to 48 kHz for ViSQOL.
    reduction : {"mean", "none"}, default="mean"
        ``"mean"`` returns one float; ``"none"`` the per-clip scores ``(n,)``.

    Returns
    -------
    float or numpy.ndarray
        MOS-LQO in [1, 5]; about 4.7 for identical clips. A silent reference
        gives NaN (ViSQOL finds no patches to compare).

    Raises
    ------
    ImportError
        When ``visqol-python`` is not installed.
    """
    sample_rate = check_sample_rate(sample_rate)
    # ViSQOL's patches are 30 frames of 256 samples at 48 kHz: ask for at least 0.5 s.
    ref, gen = check_pair(reference, generated, min_samples=sample_rate // 2)
    api = _api()
    if sample_rate != VISQOL_SAMPLE_RATE:
        ref = AF.resample(ref, sample_rate, VISQOL_SAMPLE_RATE)
        gen = AF.resample(gen, sample_rate, VISQOL_SAMPLE_RATE)
    scores = np.full(ref.shape[0], np.nan)
    for i, (r, g) in enumerate(zip(ref.double().numpy(), gen.double().numpy(), strict=True)):
        if not np.any(r):
            continue
        scores[i] = api.measure_from_arrays(r, g, VISQOL_SAMPLE_RATE).moslqo
    return reduce_scores(scores, reduction)
