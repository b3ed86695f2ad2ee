"""The spectral-gate denoiser."""

import numpy as np
import pytest
from sklearn.base import clone

from conchshell.postprocess import SpectralGate


def test_gate_reduces_stationary_noise_and_keeps_shape():
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * (t > 1.0)).astype(np.float32)
    noise = rng.normal(0, 0.05, size=t.shape).astype(np.float32)
    clips = np.stack([tone + noise, np.zeros_like(tone)])
    out = SpectralGate(prop_decrease=1.0).fit_transform(clips)
    assert out.shape == clips.shape and out.dtype == np.float32
    # the first second is noise only: gating must make it much quieter
    assert np.std(out[0, :16000]) < 0.5 * np.std(clips[0, :16000])
    assert np.array_equal(out[1], clips[1])  # silence passes through


def test_gate_params_and_validation():
    gate = SpectralGate(prop_decrease=0.5)
    assert clone(gate).get_params()["prop_decrease"] == 0.5
    with pytest.raises(ValueError, match="prop_decrease must lie in"):
        SpectralGate(prop_decrease=2).fit()
    with pytest.raises(ValueError, match="audio must have 2 dimensions"):
        SpectralGate().transform(np.zeros(10))
