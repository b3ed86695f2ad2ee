"""Musical descriptors of a clip and their agreement with a scene category.

Four descriptors, each estimated with a well-kept routine:

- **tempo** (BPM): librosa's autocorrelation tempo estimate on the onset-strength
  envelope, at 10 ms frames;
- **register** (MIDI note number): the median of the clip's pitch energy, i.e. the
  piano key (constant-Q bin, A0 = 21 to C8 = 108) below which half of the
  constant-Q power lies. For piano the partials above each fundamental raise it
  by a few semitones, equally for real and generated clips;
- **loudness** (LUFS): ITU-R BS.1770 integrated loudness with its gating
  (``torchaudio.functional.loudness``); silence gives the -70 LUFS absolute gate;
- **mode** (major-ness in [-2, 2]): the clip's mean chroma is correlated with the
  24 rotations of the Krumhansl-Kessler key profiles; the best major correlation
  minus the best minor one, > 0 for major.

:class:`DescriptorProfile` learns their distribution per category over real
clips, then judges generated clips by z-scores against their own category and
by whether their nearest category (in descriptor space) is the right one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import librosa
import numpy as np
import torch
import torchaudio.functional as AF
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from conchshell.evaluation._audio import as_batch, check_sample_rate
from conchshell.levels import SAMPLE_RATE

__all__ = [
    "DESCRIPTORS",
    "KK_MAJOR",
    "KK_MINOR",
    "LOUDNESS_FLOOR",
    "PITCH_CLASSES",
    "DescriptorProfile",
    "describe",
    "descriptor_agreement",
    "descriptor_distance",
    "estimate_key",
    "estimate_loudness",
    "estimate_register",
    "estimate_tempo",
    "mean_chroma",
]

DESCRIPTORS: tuple[str, ...] = ("tempo", "register", "loudness", "mode")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
LOUDNESS_FLOOR = -70.0  # BS.1770's absolute gate: what a silent clip measures
# Smallest spread a category may have per descriptor, so a category of near-identical
# clips does not turn a small difference into a huge z-score: 5 BPM, 1 semitone, 1 LU, 0.05.
_MIN_SCALE = (5.0, 1.0, 1.0, 0.05)
_PIANO_LOW, _PIANO_KEYS = 21, 88
_MIN_SAMPLES = 8000  # BS.1770 needs a 400 ms block; ask for half a second everywhere


def _hop(sample_rate: int) -> int:
    return max(1, sample_rate // 100)  # 10 ms frames, as in conchshell.evaluation.beats


@contextmanager
def _quiet_cqt() -> Iterator[None]:
    # librosa's constant-Q transform halves the rate once per octave and warns when a
    # short clip's lowest octaves are shorter than its FFT; the result is still right.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        yield


def estimate_tempo(audio: object, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Tempo in BPM of each clip (NaN for a silent clip).

    Parameters
    ----------
    audio : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)``, mono.
    sample_rate : int, default=16000

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``.
    """
    sample_rate = check_sample_rate(sample_rate)
    batch = as_batch(audio, min_samples=_MIN_SAMPLES).numpy()
    hop = _hop(sample_rate)
    out = np.full(len(batch), np.nan)
    for i, clip in enumerate(batch):
        if np.any(clip):
            envelope = librosa.onset.onset_strength(y=clip, sr=sample_rate, hop_length=hop)
            out[i] = librosa.feature.tempo(
                onset_envelope=envelope, sr=sample_rate, hop_length=hop
            ).item()
    return out


def _cqt_power(batch: np.ndarray, sample_rate: int) -> np.ndarray:
    # (n, 88 keys, frames): one bin per piano key from A0
    with _quiet_cqt():
        cqt = librosa.cqt(
            batch,
            sr=sample_rate,
            hop_length=4 * _hop(sample_rate),
            fmin=librosa.midi_to_hz(_PIANO_LOW),
            n_bins=_PIANO_KEYS,
            bins_per_octave=12,
        )
    return np.abs(cqt) ** 2


def estimate_register(audio: object, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Median pitch (MIDI note number) of each clip's constant-Q power.

    Parameters
    ----------
    audio : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)``, mono.
    sample_rate : int, default=16000
        Must be above 8.4 kHz so that C8 (4186 Hz) is below Nyquist.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``: MIDI numbers in [21, 108]; NaN for a silent clip.
        An A4 (440 Hz) sine gives 69.
    """
    sample_rate = check_sample_rate(sample_rate)
    if sample_rate < 8500:
        raise ValueError(
            f"sample_rate must be at least 8500 Hz for the piano range, got {sample_rate}"
        )
    batch = as_batch(audio, min_samples=_MIN_SAMPLES).numpy()
    power = _cqt_power(batch, sample_rate).sum(-1)  # (n, 88)
    out = np.full(len(batch), np.nan)
    for i, p in enumerate(power):
        total = p.sum()
        if total > 0:
            out[i] = _PIANO_LOW + int(np.searchsorted(np.cumsum(p), 0.5 * total))
    return out


def estimate_loudness(audio: object, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Integrated loudness (LUFS, ITU-R BS.1770) of each clip.

    Parameters
    ----------
    audio : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)``, mono, at least 0.5 s.
    sample_rate : int, default=16000

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``. Halving the amplitude lowers it by 6.02 LU; a clip whose
        every block falls under the absolute gate gives ``LOUDNESS_FLOOR`` (-70).
    """
    sample_rate = check_sample_rate(sample_rate)
    batch = as_batch(audio, min_samples=_MIN_SAMPLES)
    # torchaudio treats a leading dim as channels: measure each clip on its own.
    out = np.array([AF.loudness(clip.unsqueeze(0).double(), sample_rate).item() for clip in batch])
    return np.where(np.isnan(out), LOUDNESS_FLOOR, np.maximum(out, LOUDNESS_FLOOR))


def mean_chroma(audio: object, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Time-averaged constant-Q chroma of each clip, ``(n, 12)``, C first.

    Parameters
    ----------
    audio : array-like or torch.Tensor
        Mono clips ``(n, samples)`` or one clip ``(samples,)``.
    sample_rate : int, default 16000
        Sample rate of ``audio``.

    Returns
    -------
    numpy.ndarray of shape (n, 12)
    """
    sample_rate = check_sample_rate(sample_rate)
    batch = as_batch(audio, min_samples=_MIN_SAMPLES).numpy()
    with _quiet_cqt():
        chroma = librosa.feature.chroma_cqt(
            y=batch, sr=sample_rate, hop_length=4 * _hop(sample_rate)
        )
    return chroma.mean(-1)


def _key_correlations(chroma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of a 12-bin chroma with each major and minor key profile."""

    def corr(profile: np.ndarray) -> np.ndarray:
        rotations = np.stack([np.roll(profile, k) for k in range(12)])  # tonic k
        return np.array([np.corrcoef(chroma, r)[0, 1] for r in rotations])

    return corr(KK_MAJOR), corr(KK_MINOR)


def estimate_key(audio: object, *, sample_rate: int = SAMPLE_RATE) -> list[tuple[str, str, float]]:
    """Key of each clip by the Krumhansl-Schmuckler method.

    Parameters
    ----------
    audio : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)``, mono.
    sample_rate : int, default=16000

    Returns
    -------
    list of (tonic, mode, majorness)
        ``tonic`` in ``PITCH_CLASSES``, ``mode`` ``"major"`` or ``"minor"``, and
        ``majorness`` = best major correlation - best minor correlation (> 0 for
        major). A silent clip gives ``("", "", nan)``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> chord = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0))
    >>> estimate_key(chord)[0][:2]
    ('C', 'major')
    """
    sample_rate = check_sample_rate(sample_rate)
    batch = as_batch(audio, min_samples=_MIN_SAMPLES).numpy()
    chroma = mean_chroma(batch, sample_rate=sample_rate)
    out: list[tuple[str, str, float]] = []
    for clip, c in zip(batch, chroma, strict=True):
        if not np.any(clip) or np.ptp(c) == 0:
            out.append(("", "", float("nan")))
            continue
        major, minor = _key_correlations(c)
        if major.max() >= minor.max():
            out.append(
                (PITCH_CLASSES[int(major.argmax())], "major", float(major.max() - minor.max()))
            )
        else:
            out.append(
                (PITCH_CLASSES[int(minor.argmax())], "minor", float(major.max() - minor.max()))
            )
    return out


def describe(audio: object, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """All four descriptors of each clip, columns in the order of ``DESCRIPTORS``.

    Parameters
    ----------
    audio : array-like or torch.Tensor
        ``(samples,)`` or ``(n, samples)``, mono, at least 0.5 s.
    sample_rate : int, default=16000

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 4)``: tempo (BPM), register (MIDI), loudness (LUFS),
        major-ness. NaN marks what a silent clip does not have.
    """
    batch = as_batch(audio, min_samples=_MIN_SAMPLES)
    mode = np.array([k[2] for k in estimate_key(batch, sample_rate=sample_rate)])
    return np.stack(
        [
            estimate_tempo(batch, sample_rate=sample_rate),
            estimate_register(batch, sample_rate=sample_rate),
            estimate_loudness(batch, sample_rate=sample_rate),
            mode,
        ],
        axis=1,
    )


class DescriptorProfile(TransformerMixin, BaseEstimator):
    """Per-category distribution of the musical descriptors of real clips.

    ``fit`` estimates, for each category, the mean and spread of tempo,
    register, loudness and mode over real clips; generated clips are then
    judged against the category of the image they were made for.

    Parameters
    ----------
    sample_rate : int, default=16000
        Rate of the audio passed to ``fit``, ``predict``, ``score``...
    min_scale : sequence of 4 float or None, default=None
        Floor on each descriptor's spread (a category of near-identical clips
        would otherwise make tiny differences look huge). ``None`` uses
        5 BPM, 1 semitone, 1 LU and 0.05 major-ness.
    precomputed : bool, default=False
        When True, ``X`` everywhere is already a descriptor matrix
        ``(n, 4)`` from :func:`describe`, which saves recomputing it.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The categories seen in ``fit``.
    means_ : numpy.ndarray
        ``(n_classes, 4)`` per-category descriptor means.
    scales_ : numpy.ndarray
        ``(n_classes, 4)`` per-category standard deviations (floored).
    pooled_scale_ : numpy.ndarray
        ``(4,)`` pooled within-category standard deviation, used to measure
        distances between a clip and every category.

    Examples
    --------
    >>> import numpy as np
    >>> d = np.array([[90, 60, -20, 0.3], [92, 61, -21, 0.2], [140, 72, -12, -0.3],
    ...               [138, 71, -13, -0.2]])
    >>> profile = DescriptorProfile(precomputed=True).fit(d, [0, 0, 1, 1])
    >>> profile.predict([[91, 60, -20, 0.25]]).tolist()
    [0]
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        min_scale: Sequence[float] | None = None,
        precomputed: bool = False,
    ) -> None:
        self.sample_rate = sample_rate
        self.min_scale = min_scale
        self.precomputed = precomputed

    def transform(self, X: object) -> np.ndarray:
        """Descriptor matrix ``(n, 4)`` of the clips ``X`` (as :func:`describe`).

        Parameters
        ----------
        X : array-like or torch.Tensor
            Audio ``(n, samples)``, or, when ``precomputed``, descriptors ``(n, 4)``
            that are returned as float64 after a shape check.

        Returns
        -------
        numpy.ndarray of shape (n, 4)
        """
        if self.precomputed:
            d = np.asarray(X, dtype=np.float64)
            if d.ndim != 2 or d.shape[1] != len(DESCRIPTORS):
                raise ValueError(
                    f"precomputed descriptors must have shape (n, {len(DESCRIPTORS)}), "
                    f"got {d.shape}"
                )
            return d
        return describe(X, sample_rate=self.sample_rate)

    def _min_scale(self) -> np.ndarray:
        floor = np.asarray(_MIN_SCALE if self.min_scale is None else self.min_scale, float)
        if floor.shape != (len(DESCRIPTORS),) or np.any(floor <= 0):
            raise ValueError(
                f"min_scale must be {len(DESCRIPTORS)} positive numbers, got {self.min_scale!r}"
            )
        return floor

    def _indices(self, y: object, n: int) -> np.ndarray:
        y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"categories has {y.shape[0]} entries for {n} clips")
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = y[self.classes_[idx] != y]
        if unknown.size:
            raise ValueError(
                f"categories {np.unique(unknown)[:5].tolist()} were not seen in fit "
                f"(known: {self.classes_.tolist()})"
            )
        return idx

    def fit(self, X: object, y: object) -> DescriptorProfile:
        """Learn each category's descriptor mean and spread from real clips.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Real audio ``(n, samples)`` (or descriptors ``(n, 4)`` when
            ``precomputed``).
        y : array-like of shape (n,)
            Category of each clip.

        Returns
        -------
        self
        """
        floor = self._min_scale()
        d = self.transform(X)
        y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).reshape(-1)
        if y.shape[0] != d.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries for {d.shape[0]} clips")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need clips of at least 2 categories, got {self.classes_.tolist()}")
        means, scales, residuals = [], [], []
        for c in self.classes_:
            dc = d[y == c]
            if np.isnan(dc).all(axis=0).any():
                raise ValueError(f"category {c!r} has a descriptor that no clip defines (silence?)")
            means.append(np.nanmean(dc, axis=0))
            scales.append(np.maximum(np.nan_to_num(np.nanstd(dc, axis=0)), floor))
            residuals.append(dc - means[-1])
        self.means_ = np.stack(means)
        self.scales_ = np.stack(scales)
        pooled = np.sqrt(np.nanmean(np.concatenate(residuals) ** 2, axis=0))
        self.pooled_scale_ = np.maximum(np.nan_to_num(pooled), floor)
        return self

    def zscores(self, X: object, y: object) -> np.ndarray:
        """Each clip's descriptors as z-scores against its own category ``(n, 4)``.

        NaN where the clip lacks a descriptor (a silent clip has no tempo).

        Parameters
        ----------
        X : array-like or torch.Tensor
            Audio ``(n, samples)`` (or descriptors ``(n, 4)`` when ``precomputed``).
        y : array-like of shape (n,)
            The category of each clip; every one must have been seen in fit.

        Returns
        -------
        numpy.ndarray of shape (n, 4)
        """
        check_is_fitted(self)
        d = self.transform(X)
        idx = self._indices(y, d.shape[0])
        return (d - self.means_[idx]) / self.scales_[idx]

    def _distances(self, d: np.ndarray) -> np.ndarray:
        diff = (d[:, None, :] - self.means_[None]) / self.pooled_scale_
        # A descriptor the clip lacks (silence has no tempo) counts as 3 spreads off.
        return np.sqrt((np.nan_to_num(diff, nan=3.0) ** 2).sum(-1))

    def distances(self, X: object) -> np.ndarray:
        """Distance ``(n, n_classes)`` from each clip to each category's mean.

        Euclidean in descriptors divided by the pooled within-category spread;
        a descriptor the clip lacks counts as 3 spreads away from every category.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Audio ``(n, samples)`` (or descriptors ``(n, 4)`` when ``precomputed``).

        Returns
        -------
        numpy.ndarray of shape (n, n_classes)
        """
        check_is_fitted(self)
        return self._distances(self.transform(X))

    def predict(self, X: object) -> np.ndarray:
        """The category whose descriptors each clip is closest to.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Audio ``(n, samples)`` (or descriptors ``(n, 4)`` when ``precomputed``).

        Returns
        -------
        numpy.ndarray of shape (n,)
            Labels from ``classes_``.
        """
        return self.classes_[self.distances(X).argmin(axis=1)]

    def score(self, X: object, y: object) -> float:
        """Descriptor agreement: fraction of clips whose nearest category is ``y``.

        Chance is about ``1 / n_classes``; real clips of a well-separated dataset
        score near 1.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Audio ``(n, samples)`` (or descriptors ``(n, 4)`` when ``precomputed``).
        y : array-like of shape (n,)
            The category each clip should match; every one must have been seen in fit.

        Returns
        -------
        float
            In ``[0, 1]``.
        """
        return self.report(X, y)["descriptor_agreement"]

    def report(self, X: object, y: object) -> dict[str, float]:
        """Agreement and mean absolute z-score per descriptor, as a flat dict.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Audio ``(n, samples)`` (or descriptors ``(n, 4)`` when ``precomputed``).
        y : array-like of shape (n,)
            The category each clip should match; every one must have been seen in fit.

        Returns
        -------
        dict
            ``descriptor_agreement`` (as :meth:`score`), ``abs_z_<name>`` for
            each descriptor and ``abs_z_mean`` over all four (lower is closer to
            the category; NaN descriptors are skipped).
        """
        check_is_fitted(self)
        d = self.transform(X)
        idx = self._indices(y, d.shape[0])
        z = np.abs((d - self.means_[idx]) / self.scales_[idx])
        agree = float(np.mean(self._distances(d).argmin(1) == idx))
        out = {"descriptor_agreement": agree}
        for name, column in zip(DESCRIPTORS, z.T, strict=True):
            out[f"abs_z_{name}"] = _nanmean(column)
        out["abs_z_mean"] = _nanmean(z)
        return out


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.any(~np.isnan(x)) else float("nan")


def descriptor_agreement(
    categories: object, generated: object, *, profile: DescriptorProfile
) -> float:
    """Fraction of generated clips whose nearest category by descriptors is their own.

    ``(y_true, y_pred)`` argument order, so ``make_scorer(descriptor_agreement,
    profile=fitted_profile)`` scores an estimator whose ``predict`` returns audio
    against the categories passed as ``y``.

    Parameters
    ----------
    categories : array-like of shape (n,)
        The category of the image each clip was generated for.
    generated : array-like or torch.Tensor
        ``(n, samples)`` generated audio.
    profile : DescriptorProfile
        Fitted on real clips.

    Returns
    -------
    float
    """
    return profile.score(generated, categories)


def descriptor_distance(
    categories: object, generated: object, *, profile: DescriptorProfile
) -> float:
    """Mean absolute z-score of the generated clips' descriptors against their category.

    Lower is better; clips drawn from the category's own (normal) spread average about 0.8.

    Parameters
    ----------
    categories : array-like of shape (n,)
        The category each generated clip was made for.
    generated : array-like or torch.Tensor
        Generated audio ``(n, samples)`` (or descriptors when the profile is
        ``precomputed``).
    profile : DescriptorProfile
        A profile fitted on real clips.

    Returns
    -------
    float
        ``profile.report(generated, categories)["abs_z_mean"]``.
    """
    return profile.report(generated, categories)["abs_z_mean"]
