"""Signal-level music metrics: multi-resolution STFT distance, ViSQOL, beat coverage and hit."""

import numpy as np
import pytest
import torch

from conchshell.evaluation import (
    beat_coverage,
    beat_hit,
    multi_resolution_stft_distance,
    onset_times,
    visqol_available,
    visqol_music,
)
from conchshell.evaluation.beats import match_onsets

SR = 16000


def clicks(bpm: float, seconds: float = 4.0, phase: float = 0.25) -> np.ndarray:
    """Decaying 880 Hz blips every beat, the first at ``phase`` seconds."""
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    blip = np.sin(2 * np.pi * 880 * t[:800]) * np.exp(-40 * t[:800])
    for start in np.arange(phase, seconds - 0.06, 60 / bpm):
        i = round(start * SR)
        x[i : i + 800] += blip
    return 0.5 * x


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    notes = sum(
        np.sin(2 * np.pi * 220 * 2 ** (k / 12) * t) * np.exp(-4 * ((t - 0.5 * i) % 2))
        for i, k in enumerate((0, 4, 7, 12))
    )
    return (0.2 * notes + 0.001 * rng.normal(size=t.shape)).astype(np.float32)


# --- multi-resolution STFT distance ---------------------------------------------------


def test_mrstft_identical_is_zero_and_noise_grows(music):
    rng = np.random.default_rng(1)
    noise = rng.normal(size=music.shape)
    scores = [
        multi_resolution_stft_distance(music, music + level * noise) for level in (0.001, 0.01, 0.1)
    ]
    assert multi_resolution_stft_distance(music, music) == 0.0
    assert 0 < scores[0] < scores[1] < scores[2]
    assert multi_resolution_stft_distance(music, 0.1 * noise) > scores[1]


def test_mrstft_per_clip_numpy_and_torch_agree(music):
    batch = np.stack([music, 0.5 * music, np.flip(music)])
    ref = np.stack([music] * 3)
    per_clip = multi_resolution_stft_distance(ref, batch, reduction="none")
    assert per_clip.shape == (3,)
    assert per_clip[0] == 0.0 and per_clip[1] > 0 and per_clip[2] > per_clip[1]
    from_torch = multi_resolution_stft_distance(torch.from_numpy(ref), torch.from_numpy(batch))
    assert from_torch == pytest.approx(per_clip.mean())
    # (n, 1, samples) is read as mono
    assert multi_resolution_stft_distance(ref[:, None], batch[:, None]) == pytest.approx(from_torch)


def test_mrstft_rejects_bad_input(music):
    with pytest.raises(ValueError, match="same shape"):
        multi_resolution_stft_distance(music, music[:-1])
    with pytest.raises(ValueError, match="mono"):
        multi_resolution_stft_distance(np.stack([music] * 2)[None], np.stack([music] * 2)[None])
    with pytest.raises(ValueError, match="NaN"):
        multi_resolution_stft_distance(music, np.full_like(music, np.nan))
    with pytest.raises(ValueError, match="win_length <= n_fft"):
        multi_resolution_stft_distance(music, music, resolutions=[(256, 64, 512)])
    with pytest.raises(ValueError, match="at least"):
        multi_resolution_stft_distance(music[:500], music[:500])
    with pytest.raises(ValueError, match="reduction"):
        multi_resolution_stft_distance(music, music, reduction="sum")


# --- ViSQOL ---------------------------------------------------------------------------


@pytest.mark.skipif(not visqol_available(), reason="visqol-python is not installed")
def test_visqol_identical_best_noise_worse(music):
    rng = np.random.default_rng(2)
    noisy = music + 0.05 * rng.normal(size=music.shape)
    scores = visqol_music(np.stack([music, music]), np.stack([music, noisy]), reduction="none")
    assert scores[0] > 4.5
    assert 1.0 <= scores[1] < scores[0] - 1.0
    silent_ref = visqol_music(np.zeros_like(music), music, reduction="none")
    assert np.isnan(silent_ref[0])


# --- beats ----------------------------------------------------------------------------


def test_onsets_of_a_click_track():
    (times,) = onset_times(clicks(120))
    np.testing.assert_allclose(times, np.arange(0.25, 3.94, 0.5), atol=0.02)
    assert onset_times(np.zeros(SR))[0].size == 0


def test_beat_coverage_and_hit_on_click_tracks():
    ref = clicks(120)
    assert beat_coverage(ref, ref) == 1.0
    assert beat_hit(ref, ref) == 1.0
    # half a beat late: as many onsets, none within 70 ms
    assert beat_coverage(ref, clicks(120, phase=0.5)) == pytest.approx(7 / 8)
    assert beat_hit(ref, clicks(120, phase=0.5)) == 0.0
    # half the tempo, same phase: every other beat
    assert beat_coverage(ref, clicks(60)) == pytest.approx(4 / 8)
    assert beat_hit(ref, clicks(60)) == pytest.approx(4 / 8)
    # a wider window catches the late track
    assert beat_hit(ref, clicks(120, phase=0.3), tolerance=0.07) == 1.0
    assert beat_hit(ref, clicks(120, phase=0.35), tolerance=0.07) == 0.0


def test_beat_metrics_noise_and_silence():
    ref = clicks(120)
    rng = np.random.default_rng(3)
    assert beat_hit(ref, 0.3 * rng.normal(size=ref.shape)) < 0.5
    silent = np.zeros_like(ref)
    assert beat_coverage(ref, silent) == 0.0
    assert beat_hit(ref, silent) == 0.0
    per_clip = beat_hit(np.stack([silent, ref]), np.stack([ref, ref]), reduction="none")
    assert np.isnan(per_clip[0]) and per_clip[1] == 1.0
    assert beat_hit(np.stack([silent, ref]), np.stack([ref, ref])) == 1.0  # mean skips NaN
    assert np.isnan(beat_coverage(silent, ref))


def test_match_onsets_is_one_to_one():
    assert match_onsets(np.array([1.0]), np.array([0.99, 1.01]), 0.05) == 1
    assert match_onsets(np.array([1.0, 1.02]), np.array([1.01]), 0.05) == 1
    assert match_onsets(np.array([1.0, 2.0]), np.array([1.04, 1.96]), 0.05) == 2
    assert match_onsets(np.array([1.0]), np.array([1.06]), 0.05) == 0


def test_beat_hit_rejects_bad_tolerance():
    ref = clicks(120, seconds=1.0)
    with pytest.raises(ValueError, match="tolerance"):
        beat_hit(ref, ref, tolerance=0.0)
    with pytest.raises(TypeError, match="tolerance"):
        beat_hit(ref, ref, tolerance="70ms")
