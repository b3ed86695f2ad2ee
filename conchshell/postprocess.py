"""Post-processing of generated audio.

The paper finds every model's output noisy and recommends noise reduction
for all results. :class:`SpectralGate` wraps the ``noisereduce`` package's
spectral gating as a stateless scikit-learn transformer, so it can sit in
:class:`~conchshell.ImageToMusic`'s ``denoiser`` slot and be tuned with
``set_params(denoiser__prop_decrease=...)``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from conchshell._validation import check_tensor
from conchshell.levels import SAMPLE_RATE

__all__ = ["SpectralGate"]


class SpectralGate(TransformerMixin, BaseEstimator):
    """Spectral-gating noise reduction (``noisereduce``) for batches of clips.

    Parameters
    ----------
    prop_decrease : float, default=0.8
        How far noise bins are attenuated (1.0 removes them fully). Below 1
        keeps the piano's decays from sounding gated.
    stationary : bool, default=True
        Estimate one noise profile per clip (GAN hiss is stationary) rather
        than a running one.
    n_std_thresh : float, default=1.5
        How many standard deviations above the noise mean a bin must be to
        count as signal.
    sample_rate : int, default=16000
        Sample rate of the clips.

    Examples
    --------
    >>> import numpy as np
    >>> clips = np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype("float32")
    >>> SpectralGate().fit_transform(clips).shape
    (2, 16000)
    """

    # Stateless: every setting may change after fitting (ImageToMusic.set_fitted_params).
    _fitted_settable = ("prop_decrease", "stationary", "n_std_thresh", "sample_rate")

    def __init__(
        self,
        prop_decrease: float = 0.8,
        stationary: bool = True,
        n_std_thresh: float = 1.5,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.prop_decrease = prop_decrease
        self.stationary = stationary
        self.n_std_thresh = n_std_thresh
        self.sample_rate = sample_rate

    def fit(self, X: object = None, y: object = None) -> SpectralGate:
        """Check the parameters; the gate learns nothing.

        Parameters
        ----------
        X, y : ignored
            Present for the scikit-learn API.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            When ``prop_decrease`` is outside ``[0, 1]`` or ``n_std_thresh`` is not positive.
        """
        if not 0.0 <= float(self.prop_decrease) <= 1.0:
            raise ValueError(f"prop_decrease must lie in [0, 1], got {self.prop_decrease!r}")
        if float(self.n_std_thresh) <= 0:
            raise ValueError(f"n_std_thresh must be positive, got {self.n_std_thresh!r}")
        self.fitted_ = True
        return self

    def transform(self, X: object) -> np.ndarray:
        """Denoise clips ``X`` of shape (n_clips, n_samples); returns float32.

        Fits first (checking the parameters) when :meth:`fit` was not called; an
        all-zero clip is passed through unchanged.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Clips ``(n_clips, n_samples)`` at ``sample_rate``.

        Returns
        -------
        numpy.ndarray of shape (n_clips, n_samples), float32
        """
        import noisereduce

        if not hasattr(self, "fitted_"):
            self.fit()
        clips = check_tensor(X, name="audio", ndim=2).numpy()
        out = np.empty_like(clips)
        for i, clip in enumerate(clips):
            if not np.any(clip):
                out[i] = clip  # nothing to gate; noisereduce would divide by zero
                continue
            out[i] = noisereduce.reduce_noise(
                y=clip,
                sr=self.sample_rate,
                stationary=self.stationary,
                prop_decrease=self.prop_decrease,
                n_std_thresh_stationary=self.n_std_thresh,
            )
        return out.astype(np.float32, copy=False)

    def __sklearn_is_fitted__(self) -> bool:
        return True
