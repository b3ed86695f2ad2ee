"""The evaluation metrics as scikit-learn scorers, and all of them at once.

How a scorer applies to a generator
-----------------------------------
A scikit-learn scorer is called as ``scorer(estimator, X, y)``: it runs
``estimator.predict(X)`` and compares the result with ``y``. For an image-to-
music model, ``X`` is the images and ``predict`` returns audio ``(n, 128000)``.
What ``y`` must be depends on the metric:

- **paired metrics** (``"mrstft"``, ``"visqol"``, ``"beat_coverage"``,
  ``"beat_hit"``, ``"paired_retrieval"``) compare each generated clip with the
  real clip paired with its image: ``y`` is that reference audio ``(n, samples)``;
- **category metrics** (``"relevance_accuracy"``, ``"descriptor_agreement"``,
  ``"descriptor_distance"``) judge each clip against its image's category:
  ``y`` is the category ids ``(n,)``.

Every metric function takes ``(y_true, y_pred)`` in that order, so these
scorers are plain ``sklearn.metrics.make_scorer`` objects with the metric's
``greater_is_better``; the fitted :class:`RelevanceClassifier` or
:class:`DescriptorProfile` a metric needs is bound as a keyword argument. A
``scoring`` dict passed to ``cross_validate`` shares one ``y``, so group
scorers by target (or call :func:`evaluate_audio`, which predicts nothing and
takes both targets at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.metrics import make_scorer

from conchshell.evaluation.beats import beat_coverage, beat_hit
from conchshell.evaluation.descriptors import (
    DescriptorProfile,
    descriptor_agreement,
    descriptor_distance,
)
from conchshell.evaluation.relevance import (
    RelevanceClassifier,
    paired_retrieval,
    relevance_accuracy,
)
from conchshell.evaluation.stft import multi_resolution_stft_distance
from conchshell.evaluation.visqol import visqol_music

__all__ = ["METRICS", "MetricSpec", "evaluate_audio", "make_audio_scorer"]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric needs and which direction is better.

    Attributes
    ----------
    function : callable
        ``function(y_true, y_pred, **kwargs) -> float``.
    greater_is_better : bool
        Direction for model selection (``beat_coverage`` is ideal at 1; it is
        reported as is and counted as greater-is-better up to that).
    target : {"reference", "categories"}
        What ``y_true`` is: the paired real audio or the image categories.
    needs : {None, "classifier", "profile"}
        The fitted object to pass as a keyword argument.
    """

    function: Callable[..., float]
    greater_is_better: bool
    target: str
    needs: str | None = None


METRICS: dict[str, MetricSpec] = {
    "mrstft": MetricSpec(multi_resolution_stft_distance, False, "reference"),
    "visqol": MetricSpec(visqol_music, True, "reference"),
    "beat_coverage": MetricSpec(beat_coverage, True, "reference"),
    "beat_hit": MetricSpec(beat_hit, True, "reference"),
    "paired_retrieval": MetricSpec(paired_retrieval, True, "reference", "classifier"),
    "relevance_accuracy": MetricSpec(relevance_accuracy, True, "categories", "classifier"),
    "descriptor_agreement": MetricSpec(descriptor_agreement, True, "categories", "profile"),
    "descriptor_distance": MetricSpec(descriptor_distance, False, "categories", "profile"),
}


def _spec(name: str) -> MetricSpec:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    return METRICS[name]


def _bound(
    name: str,
    classifier: RelevanceClassifier | None,
    profile: DescriptorProfile | None,
) -> dict[str, Any]:
    spec = _spec(name)
    if spec.needs == "classifier":
        if classifier is None:
            raise ValueError(f"metric {name!r} needs classifier=<fitted RelevanceClassifier>")
        return {"classifier": classifier}
    if spec.needs == "profile":
        if profile is None:
            raise ValueError(f"metric {name!r} needs profile=<fitted DescriptorProfile>")
        return {"profile": profile}
    return {}


def make_audio_scorer(
    name: str,
    *,
    classifier: RelevanceClassifier | None = None,
    profile: DescriptorProfile | None = None,
    **kwargs: Any,
) -> Any:
    """A scikit-learn scorer for one metric of ``METRICS``.

    Parameters
    ----------
    name : str
        A key of ``METRICS``.
    classifier : RelevanceClassifier, optional
        Fitted on real clips; needed by ``relevance_accuracy`` and
        ``paired_retrieval``.
    profile : DescriptorProfile, optional
        Fitted on real clips; needed by the descriptor metrics.
    **kwargs
        Passed to the metric (``tolerance=0.05`` for ``beat_hit``...).

    Returns
    -------
    sklearn scorer
        ``scorer(estimator, images, y)`` with ``y`` the reference audio or the
        categories, as ``METRICS[name].target`` says. Lower-is-better metrics
        come out negated, as scikit-learn's ``neg_*`` scorers do.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> class Echo(BaseEstimator):  # a "generator" that returns the audio it is given
    ...     def predict(self, X):
    ...         return np.asarray(X)
    >>> audio = np.random.default_rng(0).normal(size=(2, 16000))
    >>> make_audio_scorer("mrstft")(Echo(), audio, audio)
    -0.0
    """
    spec = _spec(name)
    bound = _bound(name, classifier, profile)
    return make_scorer(spec.function, greater_is_better=spec.greater_is_better, **bound, **kwargs)


def evaluate_audio(
    reference: object | None,
    generated: object,
    categories: object | None = None,
    *,
    classifier: RelevanceClassifier | None = None,
    profile: DescriptorProfile | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """Every metric that the given inputs allow, on already generated audio.

    Parameters
    ----------
    reference : array-like or torch.Tensor or None
        ``(n, samples)`` real audio paired with each image (None skips the
        paired metrics).
    generated : array-like or torch.Tensor
        ``(n, samples)`` generated audio.
    categories : array-like of shape (n,), optional
        Category of each image (None skips the category metrics).
    classifier : RelevanceClassifier, optional
        Enables ``relevance_accuracy`` and ``paired_retrieval``.
    profile : DescriptorProfile, optional
        Enables ``descriptor_agreement``, ``descriptor_distance`` and the
        per-descriptor ``abs_z_*`` columns.
    metrics : sequence of str, optional
        Restrict to these names of ``METRICS``; by default all that apply,
        except ``visqol`` (0.75 s per clip), which must be asked for.

    Returns
    -------
    dict
        Metric name -> float.
    """
    names = [n for n in METRICS if n != "visqol"] if metrics is None else list(metrics)
    for name in names:
        _spec(name)
    out: dict[str, float] = {}
    for name in names:
        spec = METRICS[name]
        y_true = reference if spec.target == "reference" else categories
        if y_true is None or (spec.needs == "classifier" and classifier is None):
            continue
        if spec.needs == "profile":
            if profile is None:
                continue
            if "abs_z_mean" not in out:  # one pass of descriptor estimation for all
                report = profile.report(generated, y_true)
                out.update({k: v for k, v in report.items() if k.startswith("abs_z_")})
                agreement = report["descriptor_agreement"]
            out[name] = agreement if name == "descriptor_agreement" else out["abs_z_mean"]
            continue
        out[name] = float(spec.function(y_true, generated, **_bound(name, classifier, profile)))
    return out
