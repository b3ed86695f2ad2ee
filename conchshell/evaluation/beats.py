"""Onset-based rhythm agreement: beat coverage and beat hit.

The measures of the dance-to-music literature (D2M-GAN, CMT): onsets are
picked from the onset-strength envelope (spectral flux of a log-mel
spectrogram, librosa's ``onset_strength``) of the generated clip and of its
reference, then

- **beat coverage** = #generated onsets / #reference onsets (1 is ideal; a
  clip with no rhythmic events scores 0, a noisy one above 1);
- **beat hit** = fraction of reference onsets matched, one to one, by a
  generated onset within ``tolerance`` seconds (1 is ideal).

A reference with no onsets leaves both undefined (NaN), and the mean skips it.
"""

from __future__ import annotations

import librosa
import numpy as np

from conchshell.evaluation._audio import as_batch, check_pair, check_sample_rate, reduce_scores
from conchshell.levels import SAMPLE_RATE

__all__ = ["DEFAULT_TOLERANCE", "beat_coverage", "beat_hit", "match_onsets", "onset_times"]

# 70 ms: the window mir_eval uses for beat F-measure; an eighth note at 200 BPM is 150 ms.
DEFAULT_TOLERANCE = 0.07


def _hop(sample_rate: int) -> int:
    # 10 ms frames: 120 BPM is exactly 50 frames, so tempo and onsets are not
    # quantised to a coarse grid (librosa's default hop of 512 is 32 ms at 16 kHz).
    return max(1, sample_rate // 100)


def onset_times(audio: object, *, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Onset times in seconds of each clip, from its spectral-flux envelope.

    Parameters
    ----------
    audio : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)``, mono.
    sample_rate : int, default=16000

    Returns
    -------
    list of numpy.ndarray
        One sorted array of onset times per clip.
    """
    sample_rate = check_sample_rate(sample_rate)
    batch = as_batch(audio, min_samples=2048).numpy()
    hop = _hop(sample_rate)
    out = []
    for clip in batch:
        if not np.any(clip):
            out.append(np.zeros(0))  # librosa would normalise an all-zero envelope
            continue
        envelope = librosa.onset.onset_strength(y=clip, sr=sample_rate, hop_length=hop)
        out.append(
            librosa.onset.onset_detect(
                onset_envelope=envelope, sr=sample_rate, hop_length=hop, units="time"
            )
        )
    return out


def match_onsets(reference: np.ndarray, generated: np.ndarray, tolerance: float) -> int:
    """Number of reference onsets matched one to one by a generated onset.

    Greedy in time order: each reference onset takes the earliest unused
    generated onset within ``tolerance`` seconds, so one generated onset never
    counts for two reference onsets.

    Parameters
    ----------
    reference : numpy.ndarray
        Onset times of the reference clip, in seconds.
    generated : numpy.ndarray
        Onset times of the generated clip, in seconds, sorted ascending.
    tolerance : float
        Largest time difference, in seconds, that still counts as a match.

    Returns
    -------
    int

    Examples
    --------
    >>> import numpy as np
    >>> match_onsets(np.array([0.0, 1.0, 2.0]), np.array([0.03, 0.05, 2.2]), 0.05)
    1
    """
    matched, j = 0, 0
    for t in np.sort(reference):
        while j < len(generated) and generated[j] < t - tolerance:
            j += 1
        if j < len(generated) and generated[j] <= t + tolerance:
            matched += 1
            j += 1
    return matched


def _check_tolerance(tolerance: object) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float | np.floating):
        raise TypeError(f"tolerance must be a number of seconds, got {tolerance!r}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must lie in (0, 1) seconds, got {tolerance}")
    return float(tolerance)


def beat_coverage(
    reference: object,
    generated: object,
    *,
    sample_rate: int = SAMPLE_RATE,
    reduction: str = "mean",
) -> float | np.ndarray:
    """Number of generated onsets over number of reference onsets (1 is ideal).

    Parameters
    ----------
    reference, generated : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)`` mono audio of the same shape.
    sample_rate : int, default=16000
    reduction : {"mean", "none"}, default="mean"

    Returns
    -------
    float or numpy.ndarray
        NaN for a clip whose reference has no onsets.
    """
    check_pair(reference, generated)
    ref_on = onset_times(reference, sample_rate=sample_rate)
    gen_on = onset_times(generated, sample_rate=sample_rate)
    scores = [len(g) / len(r) if len(r) else np.nan for r, g in zip(ref_on, gen_on, strict=True)]
    return reduce_scores(np.asarray(scores), reduction)


def beat_hit(
    reference: object,
    generated: object,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    sample_rate: int = SAMPLE_RATE,
    reduction: str = "mean",
) -> float | np.ndarray:
    """Fraction of reference onsets hit by a generated onset within ``tolerance`` s.

    Parameters
    ----------
    reference, generated : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)`` mono audio of the same shape.
    tolerance : float, default=0.07
        Half-width of the matching window in seconds.
    sample_rate : int, default=16000
    reduction : {"mean", "none"}, default="mean"

    Returns
    -------
    float or numpy.ndarray
        In [0, 1]; NaN for a clip whose reference has no onsets.
    """
    tolerance = _check_tolerance(tolerance)
    check_pair(reference, generated)
    ref_on = onset_times(reference, sample_rate=sample_rate)
    gen_on = onset_times(generated, sample_rate=sample_rate)
    scores = [
        match_onsets(r, g, tolerance) / len(r) if len(r) else np.nan
        for r, g in zip(ref_on, gen_on, strict=True)
    ]
    return reduce_scores(np.asarray(scores), reduction)
