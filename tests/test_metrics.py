"""Audio metrics on known inputs: identical signals score best, damage scores worse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conchshell import metrics

SR = 16000


def _music(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A sequence of decaying harmonic notes with pitch glides (speech-like enough for PESQ)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for onset in np.arange(0, seconds, 0.25):
        f0 = rng.uniform(120, 400)
        local = np.clip(t - onset, 0, None)
        env = np.where(t >= onset, np.exp(-6 * local), 0.0) * (t < onset + 0.25)
        for h in range(1, 6):
            out += env * np.sin(2 * np.pi * f0 * h * local * (1 + 0.2 * local)) / h
    return (0.5 * out / np.abs(out).max()).astype(np.float64)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    ref = _music()
    noisy = ref + 0.05 * np.random.default_rng(1).standard_normal(ref.shape)
    return ref, noisy


def test_si_sdr_known_values() -> None:
    t = np.arange(SR) / SR
    ref = np.sin(2 * np.pi * 440 * t)
    noise = np.sin(2 * np.pi * 1234 * t)  # orthogonal to ref over a whole second
    # Noise at 1/10 of the amplitude: 20 dB; scaling the estimate changes nothing.
    np.testing.assert_allclose(metrics.si_sdr(ref, ref + 0.1 * noise), [20.0], atol=1e-6)
    np.testing.assert_allclose(metrics.si_sdr(ref, 3 * (ref + 0.1 * noise)), [20.0], atol=1e-6)
    assert metrics.si_sdr(ref, ref)[0] > 100
    batch = metrics.si_sdr(np.stack([ref, np.zeros_like(ref)]), np.stack([ref, ref]))
    assert batch.shape == (2,) and math.isnan(batch[1])


def test_mel_l1_zero_for_identical_and_grows_with_damage(pair) -> None:
    ref, noisy = pair
    assert metrics.mel_l1(ref, ref) == 0.0
    worse = ref + 0.2 * np.random.default_rng(2).standard_normal(ref.shape)
    assert 0 < metrics.mel_l1(ref, noisy) < metrics.mel_l1(ref, worse)
    torch_value = metrics.mel_l1(torch.from_numpy(ref), torch.from_numpy(noisy))
    assert torch_value == pytest.approx(metrics.mel_l1(ref, noisy))


def test_mel_l1_is_the_generator_mel_loss(pair) -> None:
    from conchshell.gan.losses import mel_l1_loss

    ref, noisy = pair
    loss = mel_l1_loss(torch.from_numpy(ref).float()[None], torch.from_numpy(noisy).float()[None])
    assert metrics.mel_l1(ref, noisy) == float(loss)
    # log10 on Slaney mels (the natural-log HTK metric it replaced gave 6.537 and 0.544 here).
    assert metrics.mel_l1(ref, noisy) == pytest.approx(2.22757, abs=1e-5)
    assert metrics.mel_l1(ref, 0.5 * ref) == pytest.approx(0.192036, abs=1e-6)


def test_pesq_identical_is_best_and_noise_is_worse(pair) -> None:
    ref, noisy = pair
    scores = metrics.pesq_wb(np.stack([ref, ref]), np.stack([ref, noisy]))
    assert scores[0] == pytest.approx(4.64, abs=0.01)
    assert 1.0 <= scores[1] < scores[0] - 1.0


def test_pesq_returns_nan_without_utterance_and_counts_it(pair) -> None:
    ref, _ = pair
    silent = np.zeros_like(ref)
    scores = metrics.pesq_wb(np.stack([ref, silent]), np.stack([ref, silent]))
    assert not math.isnan(scores[0]) and math.isnan(scores[1])
    mean, n_nan = metrics.nanmean_count(scores)
    assert mean == pytest.approx(scores[0]) and n_nan == 1
    mean, n_nan = metrics.nanmean_count([math.nan])
    assert math.isnan(mean) and n_nan == 1
    with pytest.raises(ValueError, match="16 kHz"):
        metrics.pesq_wb(ref, ref, sample_rate=8000)


def test_stoi_identical_is_one_and_noise_is_lower(pair) -> None:
    ref, noisy = pair
    scores = metrics.stoi(np.stack([ref, ref]), np.stack([ref, noisy]))
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert scores[1] < scores[0]


def test_codebook_usage_exact_figures() -> None:
    usage = metrics.codebook_usage(torch.tensor([[0, 1], [2, 3]]), n_codes=8)
    assert usage == {"perplexity": 4.0, "used_fraction": 0.5, "n_used": 4}
    assert metrics.codebook_usage([5, 5, 5], n_codes=8)["perplexity"] == 1.0
    skewed = metrics.codebook_usage([0, 0, 0, 1], n_codes=2)["perplexity"]
    assert skewed == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: metrics.si_sdr(np.zeros(10), np.zeros(11)), ValueError, "differ in shape"),
        (lambda: metrics.si_sdr(np.zeros((1, 1, 4)), np.zeros((1, 1, 4))), ValueError, "shape"),
        (lambda: metrics.mel_l1(np.zeros(0), np.zeros(0)), ValueError, "empty"),
        (lambda: metrics.stoi([np.nan] * 4, [0.0] * 4), ValueError, "NaN"),
        (lambda: metrics.codebook_usage([0, 9], n_codes=8), ValueError, r"\[0, 8\)"),
        (lambda: metrics.codebook_usage([0.5], n_codes=8), TypeError, "integers"),
        (lambda: metrics.codebook_usage([], n_codes=8), ValueError, "empty"),
        (lambda: metrics.codebook_usage([0], n_codes=0), ValueError, "n_codes"),
    ],
)
def test_bad_input_is_a_clear_error(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
