"""Property-based tests (hypothesis) for the audio and image preprocessing.

They complement ``test_audio.py`` and ``test_images.py`` (uniform float clips at
common rates; uint8 arrays) with what those leave out: integer PCM and either
channel layout at any rate from 1 Hz to 192 kHz and any amplitude, the silent
case, reproducible training crops, the WAV round trip, every Pillow mode
decoded from PNG/TIFF bytes, 16-bit and float arrays, normalisation as an exact
inverse, and batches built from mixed sources. Example counts stay small so
the file runs in seconds.
"""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from conchshell.data.audio import prepare_waveform, read_audio, save_audio
from conchshell.data.images import denormalize, load_image, normalize, to_image_batch

PEAK = 0.95
FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ audio
@st.composite
def signals(draw):
    """(wave, sr, channels_first) of any dtype, layout, rate, length and loudness."""
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.int32]))
    channels = draw(st.integers(1, 4))
    n = draw(st.integers(1, 1500))
    sr = draw(st.one_of(st.integers(1, 192_000), st.sampled_from([8000, 22050, 44100, 48000])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["noise", "sine", "impulse", "silent"]))
    if kind == "noise":
        wave = rng.uniform(-1, 1, size=(channels, n))
    elif kind == "sine":
        t = np.arange(n) / sr
        wave = np.sin(2 * np.pi * draw(st.floats(1, 20_000)) * t)[None].repeat(channels, 0)
    elif kind == "impulse":
        wave = np.zeros((channels, n))
        wave[:, draw(st.integers(0, n - 1))] = 1.0
    else:
        wave = np.zeros((channels, n))
    if np.issubdtype(dtype, np.integer):
        wave = np.round(wave * (np.iinfo(dtype).max * draw(st.floats(0.001, 1.0)))).astype(dtype)
    else:
        wave = (wave * 10.0 ** draw(st.integers(-20, 20))).astype(dtype)
    layout_first = draw(st.booleans())
    if channels == 1 and draw(st.booleans()):
        wave = wave[0]  # 1-D mono
    elif not layout_first:
        wave = np.ascontiguousarray(wave.T)
    return wave, sr, layout_first


@FAST
@given(sig=signals(), duration=st.sampled_from([None, 0.01, 0.1]))
def test_prepare_waveform_gives_exact_length_and_peak_or_says_silent(sig, duration):
    wave, sr, channels_first = sig
    try:
        out = prepare_waveform(wave, sr, duration=duration, channels_first=channels_first)
    except ValueError as exc:
        # The only refusal for finite input: nothing audible survives downmix/resampling.
        assert "silent" in str(exc)
        return
    n_in = wave.shape[-1] if (wave.ndim == 1 or channels_first) else wave.shape[0]
    expected = -(-n_in * 16000 // sr) if duration is None else round(duration * 16000)
    assert out.shape == (expected,)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    peak = float(out.abs().max())
    assert peak <= PEAK + 1e-5
    if duration is None:
        assert peak == pytest.approx(PEAK, abs=1e-5)  # nothing cropped: the peak is kept


@FAST
@given(sig=signals(), seed=st.integers(0, 2**32 - 1))
def test_training_crop_and_gain_are_reproducible_and_bounded(sig, seed):
    wave, sr, channels_first = sig
    kwargs = dict(duration=0.05, train=True, channels_first=channels_first, allow_silent=True)
    a = prepare_waveform(wave, sr, rng=seed, **kwargs)
    b = prepare_waveform(wave, sr, rng=seed, **kwargs)
    assert torch.equal(a, b)
    assert a.shape == (800,)
    assert bool(torch.isfinite(a).all()) and float(a.abs().max()) <= PEAK + 1e-5


@settings(max_examples=15, deadline=None)
@given(
    channels=st.integers(1, 3),
    n=st.integers(1, 2000),
    sr=st.sampled_from([8000, 16000, 44100]),
    seed=st.integers(0, 2**32 - 1),
)
def test_save_audio_then_read_is_the_16_bit_quantised_signal(channels, n, sr, seed):
    wave = np.random.default_rng(seed).uniform(-1.2, 1.2, size=(channels, n)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_audio(os.path.join(tmp, "x.wav"), wave, sr)
        back, rate = read_audio(path)
        assert sorted(os.listdir(tmp)) == ["x.wav"]  # no temporary file left
    assert rate == sr and back.shape == (channels, n)
    # Clipped to [-1, 1], then 16-bit: within one quantisation step.
    np.testing.assert_allclose(back, np.clip(wave, -1, 1), atol=1.0 / 32767 + 1e-6)


# ------------------------------------------------------------------ images
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]


@st.composite
def pil_images(draw):
    """A Pillow image of any mode and size, decoded from PNG or TIFF bytes."""
    w, h = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rgba = Image.fromarray(rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8), "RGBA")
    mode = draw(st.sampled_from(MODES))
    if mode == "F":
        img = Image.fromarray(rng.uniform(0, 1, size=(h, w)).astype(np.float32), "F")
    elif mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, size=(h, w)).astype(np.uint16))
    elif mode in ("P", "PA"):
        img = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        if mode == "PA":
            img = img.convert("PA")
    else:
        img = rgba.convert(mode)
    fmt = "PNG" if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I") else "TIFF"
    buffer = io.BytesIO()
    try:
        img.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # a mode this Pillow cannot encode in that format
    buffer.seek(0)
    return Image.open(buffer), mode


@FAST
@given(pil_images())
def test_any_pillow_mode_and_size_gives_a_valid_tensor(image_and_mode):
    image, mode = image_and_mode
    x = load_image(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert bool(torch.isfinite(x).all())
    d = denormalize(x)
    assert float(d.min()) >= 0.0 and float(d.max()) <= 1.0
    if mode in ("1", "L", "I;16", "I", "F"):
        # Grayscale stays gray: the three channels agree after denormalising.
        torch.testing.assert_close(d[0], d[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(d[1], d[2], atol=1e-5, rtol=0)


SIDE = st.one_of(st.integers(1, 50), st.just(224))  # 224: no resize, values must survive


@FAST
@given(
    arr=st.one_of(
        arrays(np.uint16, st.tuples(SIDE, SIDE)),
        arrays(
            np.float32,
            st.tuples(SIDE, SIDE, st.sampled_from([1, 3, 4])),
            elements=st.floats(0, 1, width=32),
        ),
        arrays(np.int32, st.tuples(SIDE, SIDE, st.just(3)), elements=st.integers(0, 255)),
    )
)
def test_uint16_float_and_int_arrays_give_valid_tensors(arr):
    x = load_image(arr)
    assert x.shape == (3, 224, 224) and bool(torch.isfinite(x).all())
    d = denormalize(x)
    assert float(d.min()) >= 0.0 and float(d.max()) <= 1.0
    if arr.shape[:2] == (224, 224) and arr.ndim == 3 and arr.shape[-1] == 3:
        expected = torch.from_numpy(
            arr.astype(np.float32) / (255 if arr.dtype != np.float32 else 1)
        )
        torch.testing.assert_close(d, expected.permute(2, 0, 1), atol=1e-5, rtol=0)


@FAST
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.just(3), st.integers(1, 16), st.integers(1, 16)),
        elements=st.floats(0, 1, width=32),
    )
)
def test_denormalize_inverts_normalize(x):
    t = torch.from_numpy(x)
    torch.testing.assert_close(denormalize(normalize(t)), t, atol=1e-6, rtol=0)
    torch.testing.assert_close(denormalize(normalize(t[0])), t[0], atol=1e-6, rtol=0)


@settings(max_examples=10, deadline=None)
@given(
    st.lists(
        arrays(
            np.uint8,
            st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
        ),
        min_size=1,
        max_size=4,
    ),
    st.data(),
)
def test_batches_from_mixed_sources_match_single_images(images, data):
    # Each image may come as an array, a PIL image or a file path.
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for i, arr in enumerate(images):
            kind = data.draw(st.sampled_from(["array", "pil", "path"]))
            pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
            if kind == "array":
                sources.append(arr)
            elif kind == "pil":
                sources.append(pil)
            else:
                path = os.path.join(tmp, f"{i}.png")
                pil.save(path)
                sources.append(path)
        batch = to_image_batch(sources)
        singles = torch.stack([load_image(s) for s in sources])
    assert batch.shape == (len(images), 3, 224, 224)
    assert torch.equal(batch, singles)
    # A preprocessed batch passes through unchanged (never normalised twice).
    assert torch.equal(to_image_batch(batch), batch)
