"""Audio reading, preprocessing and atomic writing."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers_data import tone, write_tone
from hypothesis import given, settings
from hypothesis import strategies as st

from conchshell.data.audio import (
    PEAK,
    crop_or_pad,
    decode_audio,
    load_audio,
    prepare_waveform,
    read_audio,
    resample,
    save_audio,
)


def dominant_hz(wave: torch.Tensor | np.ndarray, sr: int = 16000) -> float:
    x = np.asarray(wave, dtype=np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize(
    ("fmt", "suffix", "sr", "channels"),
    [
        ("WAV", "wav", 44100, 2),
        ("WAV", "wav", 8000, 1),
        ("WAV", "wav", 48000, 6),
        ("FLAC", "flac", 22050, 2),
        ("OGG", "ogg", 16000, 1),
    ],
)
def test_load_audio_any_rate_and_channels(tmp_path, fmt, suffix, sr, channels):
    path = write_tone(
        tmp_path / f"a.{suffix}", freq=440, seconds=0.5, sr=sr, channels=channels, format=fmt
    )
    clip = load_audio(path)
    assert clip.dtype == torch.float32
    assert clip.shape == (128000,)
    # 0.5 s of content at 16 kHz, then zero padding to 8 s.
    assert clip[8000:].abs().max() == 0
    assert float(clip.abs().max()) == pytest.approx(PEAK, abs=1e-6)
    assert dominant_hz(clip[:8000]) == pytest.approx(440, abs=2.5)


def test_read_audio_keeps_channels_and_rate(tmp_path):
    path = write_tone(tmp_path / "s.wav", seconds=0.1, sr=44100, channels=2)
    wave, sr = read_audio(path)
    assert sr == 44100
    assert wave.shape == (2, 4410)
    # the helper writes channel 1 at half the level of channel 0
    np.testing.assert_allclose(wave[1], wave[0] / 2, atol=1e-4)


def test_downmix_is_channel_mean(tmp_path):
    stereo = np.zeros((2, 1600), dtype=np.float32)
    stereo[0] = np.sin(np.arange(1600) / 5)
    out = prepare_waveform(stereo, 16000, duration=None)
    np.testing.assert_allclose(out.numpy(), stereo[0] / np.abs(stereo[0]).max() * PEAK, atol=1e-6)


def test_layouts_agree_and_transposed_layout_is_caught():
    rng = np.random.default_rng(0)
    chans_first = rng.uniform(-1, 1, size=(3, 2000)).astype(np.float32)
    a = prepare_waveform(chans_first, 16000, duration=None)
    b = prepare_waveform(chans_first.T, 16000, duration=None, channels_first=False)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="channels_first=False"):
        prepare_waveform(chans_first.T, 16000)


def test_integer_pcm_is_scaled():
    pcm = (np.sin(np.arange(1000) / 7) * 16000).astype(np.int16)
    out = prepare_waveform(pcm, 16000, duration=None)
    np.testing.assert_allclose(out.numpy(), pcm / np.abs(pcm).max() * PEAK, atol=1e-6)


def test_deterministic_crop_takes_first_seconds(tmp_path):
    ramp = np.linspace(-0.9, 0.9, 10 * 16000).astype(np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, 16000, subtype="FLOAT")
    clip = load_audio(path)
    scaled = ramp * (PEAK / 0.9)
    np.testing.assert_allclose(clip.numpy(), scaled[:128000], atol=1e-6)
    full = load_audio(path, duration=None)
    assert full.shape == (160000,)
    torch.testing.assert_close(load_audio(path), clip)


def test_training_crop_and_gain_are_reproducible(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(330, seconds=10.0, sr=16000), 16000, subtype="FLOAT")
    full = load_audio(path, duration=None).numpy()
    a = load_audio(path, train=True, rng=np.random.default_rng(3))
    b = load_audio(path, train=True, rng=np.random.default_rng(3))
    c = load_audio(path, train=True, rng=np.random.default_rng(4))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    # The crop is a window of the normalised piece times a gain in [0.5, 1].
    rng = np.random.default_rng(3)
    start = int(rng.integers(0, full.shape[0] - 128000 + 1))
    gain = float(rng.uniform(0.5, 1.0))
    np.testing.assert_allclose(a.numpy(), full[start : start + 128000] * gain, atol=1e-6)
    assert 0.5 * PEAK - 1e-6 <= float(a.abs().max()) <= PEAK + 1e-6


def test_crop_or_pad_short_clip_pads_at_end():
    out = crop_or_pad(np.ones(10, dtype=np.float32), 16, train=True, rng=0)
    assert out.shape == (16,)
    assert torch.all(out[10:] == 0)
    assert 0.5 <= float(out[0]) <= 1.0
    with pytest.raises(ValueError, match="mono"):
        crop_or_pad(np.ones((2, 10)), 16)


def test_odd_rate_resamples_without_huge_kernel():
    # 44101/16000 has no common factor: torchaudio would need a 12 GB kernel.
    x = tone(1000, seconds=1.0, sr=44101)[:, 0]
    y = resample(x, 44101, 16000)
    assert y.shape == (16000,)
    assert dominant_hz(y) == pytest.approx(1000, abs=2)


def test_silent_audio_policy():
    with pytest.raises(ValueError, match="silent"):
        prepare_waveform(np.zeros(100), 16000)
    out = prepare_waveform(np.zeros(100), 16000, duration=None, allow_silent=True)
    assert out.shape == (100,) and torch.all(out == 0)


def test_decode_audio_is_full_length_normalised(tmp_path):
    path = write_tone(tmp_path / "x.wav", seconds=0.5, sr=32000, channels=2)
    wave = decode_audio(path)
    assert wave.dtype == np.float32 and wave.shape == (8000,)
    assert float(np.abs(wave).max()) == pytest.approx(PEAK, abs=1e-6)


def test_save_audio_round_trip_and_no_temp_files(tmp_path):
    wave = torch.linspace(-1.2, 1.2, 1000)  # beyond full scale: clipped
    out = save_audio(tmp_path / "o.wav", wave, 16000)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 1000)
    back, _ = sf.read(out, dtype="float32")
    np.testing.assert_allclose(back, np.clip(wave.numpy(), -1, 1), atol=1 / 32767 + 1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]
    stereo = save_audio(tmp_path / "s.wav", np.zeros((2, 50)), 8000)
    assert sf.info(stereo).channels == 2


def test_save_audio_failure_keeps_old_file(tmp_path):
    target = save_audio(tmp_path / "keep.wav", np.full(100, 0.5), 16000)
    before = target.read_bytes()
    bad = np.full(100, 0.5)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_audio(target, bad, 16000)
    with pytest.raises(ValueError, match="no samples"):
        save_audio(target, np.zeros(0), 16000)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_audio(tmp_path / "nope" / "x.wav", np.zeros(10), 16000)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3000),
    channels=st.integers(1, 3),
    sr=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    duration=st.sampled_from([None, 0.05, 0.2]),
    seed=st.integers(0, 2**32 - 1),
    train=st.booleans(),
)
def test_prepare_waveform_properties(n, channels, sr, duration, seed, train):
    rng = np.random.default_rng(seed)
    wave = rng.uniform(-1, 1, size=(channels, n)).astype(np.float32)
    wave[:, 0] = 0.5  # never silent
    out = prepare_waveform(wave, sr, duration=duration, train=train, rng=rng)
    expected = -(-n * 16000 // sr) if duration is None else round(duration * 16000)
    assert out.shape == (expected,)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert float(out.abs().max()) <= PEAK + 1e-5
