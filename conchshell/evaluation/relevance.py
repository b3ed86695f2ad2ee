"""Image-music relevance: does a generated clip sound like its image's category?

:class:`RelevanceClassifier` is an audio scene classifier trained on the
dataset's *real* clips (log-mel statistics and chroma, standardised, into a
scikit-learn classifier; trains in well under a second for a few hundred
clips). Applied to generated clips it gives

- **relevance accuracy**: how often the clip is classified as the category of
  the image it was generated for (chance is ``1 / n_categories``; its accuracy
  on real held-out clips is the ceiling a generator can reach);
- **paired retrieval**: in the classifier's standardised feature space, how
  often a generated clip is closer to its own image's reference clip than to
  another image's reference (chance 0.5, perfect 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchaudio
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from conchshell._validation import check_positive_int
from conchshell.evaluation._audio import as_batch, check_pair, check_sample_rate
from conchshell.evaluation.descriptors import describe, mean_chroma
from conchshell.levels import SAMPLE_RATE

__all__ = ["FEATURE_SETS", "RelevanceClassifier", "paired_retrieval", "relevance_accuracy"]

FEATURE_SETS = ("logmel", "chroma", "descriptors")
_MIN_SAMPLES = 8000


def _logmel_stats(batch: torch.Tensor, sample_rate: int, n_mels: int) -> np.ndarray:
    """Mean and standard deviation over time of each log-mel band, ``(n, 2 * n_mels)``."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=1024, hop_length=256, n_mels=n_mels, power=2.0
    )
    with torch.inference_mode():
        logmel = torch.log10(mel(batch) + 1e-8)  # (n, n_mels, frames)
    return torch.cat([logmel.mean(-1), logmel.std(-1)], dim=1).numpy().astype(np.float64)


class RelevanceClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Audio scene classifier trained on real clips, to judge generated ones.

    Parameters
    ----------
    features : sequence of {"logmel", "chroma", "descriptors"}, default=("logmel", "chroma")
        What describes a clip: per-band mean and spread of the log-mel
        spectrogram (timbre, register, dynamics), mean chroma (harmony, mode),
        and the four musical descriptors of
        :func:`conchshell.evaluation.describe` (tempo, register, loudness,
        mode; slower, about 0.1 s per clip).
    n_mels : int, default=64
        Mel bands for the log-mel statistics.
    classifier : scikit-learn classifier or None, default=None
        Fitted on the standardised features (cloned in ``fit``). ``None``
        builds ``LogisticRegression(C=0.1, max_iter=5000)``: strongly
        regularised, since a dataset has few real clips per category.
    sample_rate : int, default=16000
        Rate of every clip passed in.

    Attributes
    ----------
    classes_ : numpy.ndarray
        Categories seen in ``fit``.
    scaler_ : sklearn.preprocessing.StandardScaler
        Standardises the features; its output is the embedding.
    classifier_ : scikit-learn classifier
        The fitted classifier.
    n_features_ : int
        Length of the feature vector.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> low = [np.sin(2 * np.pi * f * t) for f in (110, 123, 131)]
    >>> high = [np.sin(2 * np.pi * f * t) for f in (880, 988, 1047)]
    >>> clf = RelevanceClassifier().fit(np.stack(low + high), [0, 0, 0, 1, 1, 1])
    >>> clf.predict(np.sin(2 * np.pi * 932 * t)).tolist()
    [1]
    """

    def __init__(
        self,
        features: Sequence[str] = ("logmel", "chroma"),
        n_mels: int = 64,
        classifier: BaseEstimator | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.features = features
        self.n_mels = n_mels
        self.classifier = classifier
        self.sample_rate = sample_rate

    def _check_params(self) -> tuple[str, ...]:
        feats = (self.features,) if isinstance(self.features, str) else tuple(self.features)
        unknown = [f for f in feats if f not in FEATURE_SETS]
        if not feats or unknown:
            raise ValueError(
                f"features must be a non-empty subset of {FEATURE_SETS}, got {self.features!r}"
            )
        check_positive_int(self.n_mels, "n_mels")
        check_sample_rate(self.sample_rate)
        return feats

    def featurize(self, X: object) -> np.ndarray:
        """Raw (unstandardised) feature vectors ``(n, n_features)`` of the clips ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Mono audio ``(n, samples)``.

        Returns
        -------
        numpy.ndarray of shape (n, n_features)
            The chosen ``features`` blocks side by side (log-mel statistics, mean
            chroma, descriptors with NaN set to 0).
        """
        feats = self._check_params()
        batch = as_batch(X, name="X", min_samples=_MIN_SAMPLES)
        parts = []
        if "logmel" in feats:
            parts.append(_logmel_stats(batch, self.sample_rate, self.n_mels))
        if "chroma" in feats:
            parts.append(mean_chroma(batch, sample_rate=self.sample_rate))
        if "descriptors" in feats:
            # A silent clip has no tempo, register or mode: put it at the origin of those.
            parts.append(np.nan_to_num(describe(batch, sample_rate=self.sample_rate)))
        return np.concatenate(parts, axis=1)

    def fit(self, X: object, y: object) -> RelevanceClassifier:
        """Train on real clips and their categories.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Real audio ``(n, samples)``, mono.
        y : array-like of shape (n,)
            Category of each clip.

        Returns
        -------
        self
        """
        z = self.featurize(X)
        y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).reshape(-1)
        if y.shape[0] != z.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries for {z.shape[0]} clips")
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need clips of at least 2 categories, got {self.classes_.tolist()}")
        self.scaler_ = StandardScaler().fit(z)
        base = (
            LogisticRegression(C=0.1, max_iter=5000)
            if self.classifier is None
            else clone(self.classifier)
        )
        self.classifier_ = base.fit(self.scaler_.transform(z), y)
        self.n_features_ = z.shape[1]
        return self

    def transform(self, X: object) -> np.ndarray:
        """Embedding ``(n, n_features)``: the standardised features of the clips.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Mono audio ``(n, samples)``.

        Returns
        -------
        numpy.ndarray of shape (n, n_features)
        """
        check_is_fitted(self)
        return self.scaler_.transform(self.featurize(X))

    def predict(self, X: object) -> np.ndarray:
        """Predicted category of each clip.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Mono audio ``(n, samples)``.

        Returns
        -------
        numpy.ndarray of shape (n,)
        """
        return self.classifier_.predict(self.transform(X))

    def predict_proba(self, X: object) -> np.ndarray:
        """Category probabilities ``(n, n_classes)`` (when the classifier has them).

        Parameters
        ----------
        X : array-like or torch.Tensor
            Mono audio ``(n, samples)``.

        Returns
        -------
        numpy.ndarray of shape (n, n_classes)
        """
        return self.classifier_.predict_proba(self.transform(X))


def relevance_accuracy(
    categories: object, generated: object, *, classifier: RelevanceClassifier
) -> float:
    """Fraction of generated clips classified as their image's category.

    ``(y_true, y_pred)`` argument order, so ``make_scorer(relevance_accuracy,
    classifier=fitted)`` scores an estimator whose ``predict`` returns audio,
    with the categories as ``y``.

    Parameters
    ----------
    categories : array-like of shape (n,)
        Category of the image each clip was generated for.
    generated : array-like or torch.Tensor
        ``(n, samples)`` generated audio.
    classifier : RelevanceClassifier
        Fitted on real clips.

    Returns
    -------
    float
        Chance is ``1 / len(classifier.classes_)``.
    """
    return float(classifier.score(generated, categories))


def paired_retrieval(
    reference: object,
    generated: object,
    *,
    classifier: RelevanceClassifier,
) -> float:
    """How often a generated clip is closer to its own reference than to another's.

    For each generated clip ``g_i`` and each other pair ``j`` whose reference
    differs from ``r_i`` (images often share one piece of music; those pairs are
    skipped), count a win when ``d(g_i, r_i) < d(g_i, r_j)`` (ties count half),
    with ``d`` the Euclidean distance in the classifier's embedding.

    Parameters
    ----------
    reference : array-like or torch.Tensor
        ``(n, samples)`` real audio paired with each image, ``n >= 2``.
    generated : array-like or torch.Tensor
        ``(n, samples)`` generated audio, in the same order.
    classifier : RelevanceClassifier
        Fitted on real clips; its ``transform`` is the embedding.

    Returns
    -------
    float
        Mean win rate over clips, in [0, 1]; chance 0.5. NaN when every
        reference is the same clip.
    """
    ref, gen = check_pair(reference, generated, min_samples=_MIN_SAMPLES)
    if ref.shape[0] < 2:
        raise ValueError(f"paired retrieval needs at least 2 pairs, got {ref.shape[0]}")
    e_ref = classifier.transform(ref)
    e_gen = classifier.transform(gen)
    d = np.linalg.norm(e_gen[:, None, :] - e_ref[None, :, :], axis=-1)  # d[i, j] = |g_i - r_j|
    # identical references (one piece shared by several images) are not competitors
    keys = np.array([hash(r.numpy().tobytes()) for r in ref])
    same = keys[:, None] == keys[None, :]
    own = np.diag(d)[:, None]
    wins = (own < d) + 0.5 * (own == d)
    valid = ~same
    counts = valid.sum(1)
    if not counts.any():
        return float("nan")
    rates = (wins * valid).sum(1)[counts > 0] / counts[counts > 0]
    return float(rates.mean())
