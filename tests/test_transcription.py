"""Basic Pitch transcription and the "is this piano music" measure (issue 19)."""

from __future__ import annotations

import json
import sys

import librosa
import numpy as np
import pytest
import torch
from helpers_data import needs_font

from conchshell.data import build as build_module
from conchshell.data import piano
from conchshell.data.build import STANDIN_DIR
from conchshell.data.scenes import category_by_name
from conchshell.evaluation import music_fraction, music_measure, transcribe
from conchshell.evaluation import transcription as tr
from conchshell.levels import CLIP_SAMPLES, SAMPLE_RATE

# A melody in the piano's middle register: one note every 0.6 s, 0.45 s long. Basic Pitch
# adds octave ghosts under loud low notes (C3 and below), which this test is not about.
MELODY = (55, 60, 64, 67, 72, 76, 79, 84, 62, 69, 57, 65)
MELODY_START, MELODY_STEP, MELODY_LENGTH = 0.25, 0.6, 0.45


@pytest.fixture(scope="module")
def renderer() -> piano.PianoRenderer:
    return piano.PianoRenderer()


def melody(renderer: piano.PianoRenderer, velocity: int = 80) -> tuple[np.ndarray, list]:
    notes = [
        (MELODY_START + MELODY_STEP * i, MELODY_LENGTH, p, velocity) for i, p in enumerate(MELODY)
    ]
    return renderer.render(notes, CLIP_SAMPLES, gain=2.5), notes


@pytest.fixture(scope="module")
def real_clips(renderer) -> np.ndarray:
    """One committed score excerpt per category, rendered as the stand-in build renders it."""
    scores = json.loads((STANDIN_DIR / "scores.json").read_text())
    first: dict[str, dict] = {}
    for clip in scores["clips"]:
        first.setdefault(clip["category"], clip)
    assert len(first) == 6
    return np.stack(
        [
            build_module._render_clip(renderer, clip, category_by_name(name))
            for name, clip in first.items()
        ]
    )


@needs_font
def test_real_piano_clips_are_music(real_clips):
    measures = music_measure(real_clips)
    assert len(measures) == 6
    for m in measures:
        assert set(m) == {
            "note_coverage",
            "onsets_per_second",
            "spectral_flatness",
            "band_flatness",
            "n_notes",
            "is_music",
            "is_clean_music",
        }
        assert m["is_music"] is True and m["is_clean_music"] is True
        # measured 0.001-0.029 on the 120 real training clips
        assert m["band_flatness"] <= 0.03
        # measured 0.97-0.99 coverage, 2.9-10 notes/s, flatness 0.002-0.007 on the val clips
        assert m["note_coverage"] >= 0.9
        assert 2.0 <= m["onsets_per_second"] <= 12.0
        assert m["n_notes"] == round(m["onsets_per_second"] * 8)
        assert m["spectral_flatness"] <= 0.01
    assert music_fraction(real_clips[:2]) == 1.0
    assert music_fraction(real_clips[:2], clean=True) == 1.0
    # Notes the caller already has give the same figures without transcribing again.
    assert music_measure(real_clips, notes=transcribe(real_clips)) == measures
    with pytest.raises(ValueError, match="notes has 1 entries for 6 clips"):
        music_measure(real_clips, notes=transcribe(real_clips[:1]))


def test_white_noise_is_not_music():
    noise = np.random.default_rng(0).normal(scale=0.1, size=(2, CLIP_SAMPLES))
    measures = music_measure(noise)
    for m in measures:
        assert m["spectral_flatness"] > 0.5
        assert m["note_coverage"] < 0.1
        assert m["is_music"] is False
    assert music_fraction(noise) == 0.0


def test_silence_has_no_notes_and_is_not_music():
    silence = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    notes = transcribe(silence)
    assert len(notes) == 1
    assert notes[0].shape == (0, 4)
    (m,) = music_measure(silence)
    assert m["n_notes"] == 0
    assert m["note_coverage"] == 0.0
    assert m["onsets_per_second"] == 0.0
    # librosa floors the power spectrum, so an all-zero frame is perfectly flat
    assert m["spectral_flatness"] == pytest.approx(1.0, abs=1e-4)
    assert m["is_music"] is False


@needs_font
def test_known_notes_are_transcribed(renderer):
    wave, played = melody(renderer)
    (notes,) = transcribe(wave)
    assert notes.shape == (len(MELODY), 4)
    assert notes[:, 2].astype(int).tolist() == list(MELODY)
    onsets = np.array([n[0] for n in played])
    # measured within 16 ms (the model's frames are 11.6 ms)
    assert np.max(np.abs(notes[:, 0] - onsets)) <= 0.05
    assert np.all(notes[:, 1] > notes[:, 0] + 0.3)
    assert np.all((notes[:, 3] >= 0) & (notes[:, 3] <= 127))
    assert np.all(np.diff(notes[:, 0]) >= 0)


@needs_font
def test_batches_rates_and_velocity(renderer):
    soft, _ = melody(renderer, velocity=40)
    loud, _ = melody(renderer, velocity=110)
    batch = transcribe(torch.from_numpy(np.stack([soft, loud])))
    assert len(batch) == 2
    for notes in batch:
        assert notes[:, 2].astype(int).tolist() == list(MELODY)
    # Basic Pitch's velocity is 127 x the mean frame activation, the model's confidence
    # rather than loudness: both melodies come out at about 98
    for notes in batch:
        assert np.all((notes[:, 3] >= 64) & (notes[:, 3] <= 127))
    # the same clip at 44.1 kHz gives the same notes, to within a model frame
    resampled = librosa.resample(loud, orig_sr=SAMPLE_RATE, target_sr=44100)
    (at_44k,) = transcribe(resampled, sample_rate=44100)
    assert at_44k[:, 2].tolist() == batch[1][:, 2].tolist()
    np.testing.assert_allclose(at_44k[:, 0], batch[1][:, 0], atol=0.012)


def _fake_transcribe(notes: np.ndarray):
    def fake(clips, sample_rate=SAMPLE_RATE):
        return [notes for _ in tr.as_batch(clips)]

    return fake


def _sine(seconds: float = 8.0) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _notes(onsets, length: float, pitch: int = 69) -> np.ndarray:
    return np.array([(o, o + length, pitch, 80) for o in onsets], dtype=np.float64)


def test_thresholds_are_inclusive(monkeypatch):
    clip = _sine()
    # coverage exactly 0.5: notes over the first 4 s of 8 s, 1 onset a second
    monkeypatch.setattr(tr, "transcribe", _fake_transcribe(_notes(np.arange(8) * 0.5, 0.5)))
    (m,) = music_measure(clip)
    assert m["note_coverage"] == 0.5
    assert m["onsets_per_second"] == 1.0
    assert m["spectral_flatness"] < 0.01
    assert m["is_music"] is True
    # one frame fewer: the last note ends at 3.98 s, before the centre of frame 199 (3.99 s)
    short = _notes(np.arange(8) * 0.5, 0.5)
    short[-1, 1] = 3.98
    monkeypatch.setattr(tr, "transcribe", _fake_transcribe(short))
    (m,) = music_measure(clip)
    assert m["note_coverage"] == 199 / 400
    assert m["is_music"] is False
    # 120 notes in 8 s = 15 a second is music; 121 is not; 7 (0.875 a second) is not
    dense = np.arange(120) * (8 / 120)
    monkeypatch.setattr(tr, "transcribe", _fake_transcribe(_notes(dense, 8 / 120)))
    assert music_measure(clip)[0]["onsets_per_second"] == 15.0
    assert music_measure(clip)[0]["is_music"] is True
    monkeypatch.setattr(tr, "transcribe", _fake_transcribe(_notes(np.append(dense, 7.9), 8 / 120)))
    assert music_measure(clip)[0]["is_music"] is False
    monkeypatch.setattr(tr, "transcribe", _fake_transcribe(_notes(np.arange(7), 1.0)))
    assert music_measure(clip)[0]["is_music"] is False


def test_flatness_threshold_decides_alone(monkeypatch):
    monkeypatch.setattr(tr, "transcribe", _fake_transcribe(_notes(np.arange(16) * 0.5, 0.5)))
    rng = np.random.default_rng(1)
    tone = _sine()
    noisy = tone + rng.normal(scale=0.3, size=tone.shape).astype(np.float32)
    measures = music_measure(np.stack([tone, noisy]))
    assert [m["note_coverage"] for m in measures] == [1.0, 1.0]
    assert measures[0]["spectral_flatness"] <= tr.MAX_SPECTRAL_FLATNESS
    assert measures[1]["spectral_flatness"] > tr.MAX_SPECTRAL_FLATNESS
    assert [m["is_music"] for m in measures] == [True, False]
    assert music_fraction(np.stack([tone, noisy])) == 0.5


@pytest.mark.parametrize("module", ["basic_pitch", "onnxruntime"])
def test_missing_package_names_it_and_the_install_command(monkeypatch, module):
    tr._basic_pitch.cache_clear()
    monkeypatch.setitem(sys.modules, module, None)
    try:
        with pytest.raises(ImportError, match=rf"'{module}'.*pip install --no-deps 'basic-pitch"):
            transcribe(_sine(1.0))
    finally:
        monkeypatch.undo()
        tr._basic_pitch.cache_clear()
    assert transcribe(np.zeros(SAMPLE_RATE))[0].shape == (0, 4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        transcribe(np.full(SAMPLE_RATE, np.nan))
    with pytest.raises(ValueError, match="onset_threshold"):
        transcribe(np.zeros(SAMPLE_RATE), onset_threshold=1.5)
    with pytest.raises(ValueError, match="sample_rate"):
        transcribe(np.zeros(SAMPLE_RATE), sample_rate=0)
    with pytest.raises(ValueError, match="mono"):
        music_measure(np.zeros((2, 2, SAMPLE_RATE)))


def test_note_summary_per_category():
    calm = np.array([[0.0, 1.0, 60, 80], [1.0, 2.0, 67, 80]])
    busy = np.array([[0.0, 0.5, 48, 90], [0.5, 1.0, 72, 90], [1.0, 1.5, 84, 90]])
    empty = np.zeros((0, 4))
    summary = tr.note_summary([calm, busy, calm, empty], ["ocean", "city", "ocean", "night"])
    assert list(summary) == ["ocean", "city", "night"]  # order of first appearance
    assert summary["ocean"] == {
        "n_clips": 2,
        "n_notes": 4,
        "notes_per_second": 0.25,  # 4 notes in two 8-s clips
        "pitch_low": 60,
        "pitch_high": 67,
        "pitch_range": 7,
    }
    assert summary["city"]["notes_per_second"] == 3 / 8
    assert (summary["city"]["pitch_low"], summary["city"]["pitch_range"]) == (48, 36)
    assert summary["night"] == {
        "n_clips": 1,
        "n_notes": 0,
        "notes_per_second": 0.0,
        "pitch_low": None,
        "pitch_high": None,
        "pitch_range": None,
    }
    assert json.loads(json.dumps(summary)) == summary
    # per-clip lengths, integer categories
    by_length = tr.note_summary([calm, busy], [0, 0], seconds=[2.0, 1.0])
    assert by_length == {
        "0": {
            "n_clips": 2,
            "n_notes": 5,
            "notes_per_second": 5 / 3,
            "pitch_low": 48,
            "pitch_high": 84,
            "pitch_range": 36,
        }
    }


def test_note_summary_bad_inputs():
    notes = [np.array([[0.0, 1.0, 60, 80]])]
    with pytest.raises(ValueError, match="2 categories given for 1 note arrays"):
        tr.note_summary(notes, ["a", "b"])
    with pytest.raises(ValueError, match="2 lengths given for 1 clips"):
        tr.note_summary(notes, ["a"], seconds=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"positive seconds, got 0"):
        tr.note_summary(notes, ["a"], seconds=0)
    with pytest.raises(ValueError, match=r"notes\[1\] must have shape \(n_notes, 4\).*\(3,\)"):
        tr.note_summary([*notes, np.zeros(3)], ["a", "b"])


def _partials(f0: float, top: float, seconds: float = 8.0) -> np.ndarray:
    """A tone with every harmonic of ``f0`` up to ``top`` Hz, each half as loud as the last."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    n = int(top // f0)
    wave = sum(0.5**k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(n))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def test_band_flatness_of_tones_noise_and_silence():
    rng = np.random.default_rng(0)
    assert tr.band_flatness(_partials(262, 4000)) < 0.01
    assert 0.5 < tr.band_flatness(rng.normal(scale=0.1, size=CLIP_SAMPLES)) < 0.6
    # librosa-style floor: silence is perfectly flat.
    assert tr.band_flatness(np.zeros(CLIP_SAMPLES)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"one mono clip \(samples,\), got shape \(2, 100\)"):
        tr.band_flatness(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="needs a rate above 8000 Hz, got 6000"):
        tr.band_flatness(np.zeros(6000), sample_rate=6000)


def test_band_flatness_tells_a_hiss_floor_from_partials(monkeypatch):
    # A strong low tone keeps the whole-band flatness under its threshold with a hiss floor
    # 40 dB down; only the 1-4 kHz band shows the hiss. The same floor under a tone with
    # partials in that band stays clean.
    monkeypatch.setattr(tr, "transcribe", _fake_transcribe(_notes(np.arange(16) * 0.5, 0.5)))
    hiss = np.random.default_rng(2).normal(scale=0.003, size=CLIP_SAMPLES).astype(np.float32)
    low, rich = _partials(110, 400) + hiss, _partials(262, 4000) + hiss
    measures = music_measure(np.stack([low, rich]))
    assert all(m["spectral_flatness"] <= tr.MAX_SPECTRAL_FLATNESS for m in measures)
    assert [m["is_music"] for m in measures] == [True, True]
    assert measures[0]["band_flatness"] > 0.3 > tr.MAX_BAND_FLATNESS
    assert measures[1]["band_flatness"] <= tr.MAX_BAND_FLATNESS
    assert [m["is_clean_music"] for m in measures] == [False, True]
    assert music_fraction(np.stack([low, rich]), clean=True) == 0.5
