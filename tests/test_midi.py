"""MIDI export of the transcription (issue 21): the file, its checks, generate_files, the CLI.

The recall tests render real clips of the stand-in dataset from their scores, exactly as
``conchshell data build`` plays them, write MIDI through :func:`write_midi`, read the file back
and count the score's notes found in it (same pitch, onset within 50 ms), matched one to one
by ``mir_eval.transcription.match_notes`` with offsets ignored.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch
from helpers_data import needs_font

from conchshell.cli import main
from conchshell.data import build as build_module
from conchshell.data import piano
from conchshell.data.build import STANDIN_DIR
from conchshell.data.scenes import CATEGORIES, perform
from conchshell.evaluation import check_notes, notes_to_midi, write_midi
from conchshell.evaluation import transcription as tr
from conchshell.generation import GenerationMixin
from conchshell.levels import CLIP_SAMPLES, SAMPLE_RATE

NOTES = np.array(
    [
        [0.0, 0.5, 60, 90],
        [0.25, 1.0, 64, 100],
        [1.0, 1.75, 67, 64],
    ]
)


def _read(path: Path) -> tuple[pretty_midi.PrettyMIDI, np.ndarray]:
    """The file and its notes ``(n, 4)`` (onset, offset, pitch, velocity), sorted by onset."""
    midi = pretty_midi.PrettyMIDI(str(path))
    rows = [(n.start, n.end, n.pitch, n.velocity) for i in midi.instruments for n in i.notes]
    notes = np.array(sorted(rows), dtype=np.float64).reshape(-1, 4)
    return midi, notes


# ------------------------------------------------------------------------------ the file
def test_notes_round_trip_through_the_file(tmp_path):
    path = write_midi(NOTES, tmp_path / "three.mid")
    assert path == tmp_path / "three.mid"
    assert [p.name for p in tmp_path.iterdir()] == ["three.mid"]  # no temporary left
    midi, back = _read(path)
    # on the 480-tick grid at 120 BPM these times are exact
    np.testing.assert_array_equal(back, NOTES)
    assert midi.resolution == tr.MIDI_RESOLUTION == 480
    times, tempi = midi.get_tempo_changes()
    assert times.tolist() == [0.0] and tempi.tolist() == [120.0]
    (track,) = midi.instruments
    assert (track.program, track.is_drum, track.name) == (0, False, "piano")
    raw = mido.MidiFile(path)
    assert raw.type == 1 and len(raw.tracks) == 2
    assert [m.tempo for m in raw.tracks[0] if m.type == "set_tempo"] == [500_000]


def test_tempo_program_and_off_grid_times(tmp_path):
    notes = np.array([[0.0123, 0.4567, 72, 80.4], [0.5, 0.6, 21, 127]])
    path = write_midi(torch.from_numpy(notes), tmp_path / "x.mid", tempo=90.0, program=4)
    midi, back = _read(path)
    # MIDI stores whole microseconds per beat: 60e6 / 90 = 666,666.7 is written 666,666
    assert [m.tempo for m in mido.MidiFile(path).tracks[0] if m.type == "set_tempo"] == [666_666]
    assert midi.get_tempo_changes()[1] == pytest.approx([90.0], abs=1e-4)
    assert midi.instruments[0].program == 4
    tick = 60 / (90 * 480)  # 1.39 ms
    np.testing.assert_allclose(back[:, :2], notes[:, :2], atol=tick / 2)
    assert back[:, 2].tolist() == [72, 21]
    assert back[:, 3].tolist() == [80, 127]  # velocities rounded to integers


def test_velocity_zero_and_a_note_shorter_than_a_tick_still_sound(tmp_path):
    notes = np.array([[0.5, 1.0, 60, 0.0], [1.0, 1.0002, 62, 50]])
    midi = notes_to_midi(notes)
    assert [n.velocity for n in midi.instruments[0].notes] == [1, 50]
    path = write_midi(notes, tmp_path / "x.mid")
    _, back = _read(path)
    assert back[:, 2].tolist() == [60, 62]
    assert back[1, 1] - back[1, 0] == pytest.approx(60 / (120 * 480))  # one tick


def test_an_empty_clip_writes_a_valid_empty_file_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="conchshell"):
        path = write_midi(np.zeros(2 * SAMPLE_RATE, dtype=np.float32), tmp_path / "quiet.mid")
    assert f"{path} is an empty MIDI file" in caplog.text
    raw = mido.MidiFile(path)
    assert len(raw.tracks) == 2
    piano_track = [m.type for m in raw.tracks[1]]
    assert piano_track == ["track_name", "program_change", "end_of_track"]
    assert [m.tempo for m in raw.tracks[0] if m.type == "set_tempo"] == [500_000]  # 120 BPM
    assert pretty_midi.PrettyMIDI(str(path)).get_end_time() == 0.0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="conchshell"):
        write_midi(np.zeros((0, 4)), tmp_path / "none.mid")
    assert "none.mid is an empty MIDI file" in caplog.text


@pytest.mark.parametrize(
    ("source", "error", "match"),
    [
        (np.zeros((2, 3)), ValueError, r"note array \(n_notes, 4\) or one mono clip.*\(2, 3\)"),
        (np.zeros((1, 2, 4)), ValueError, r"got shape \(1, 2, 4\)"),
        (np.array([[0.5, 0.4, 60, 80]]), ValueError, r"notes\[0\] = \[0.5, 0.4, 60.0, 80.0\].*"),
        (np.array([[0, 1, 60, 80], [0, 1, 128, 80]]), ValueError, r"notes\[1\].*pitch"),
        (np.array([[0, 1, 60.5, 80]]), ValueError, r"notes\[0\].*integer 0-127"),
        (np.array([[0, 1, 60, 130]]), ValueError, r"velocity must lie in 0-127"),
        (np.array([[-0.1, 1, 60, 80]]), ValueError, r"starts before 0 s"),
        (np.array([[0, np.nan, 60, 80]]), ValueError, r"NaN or infinite"),
        (np.full(SAMPLE_RATE, np.nan), ValueError, r"NaN"),
        ([["a", "b", "c", "d"]], TypeError, r"numeric array"),
    ],
)
def test_bad_sources_are_named(tmp_path, source, error, match):
    with pytest.raises(error, match=match):
        write_midi(source, tmp_path / "x.mid")
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_and_paths_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"tempo must lie in \[4, 1000\] BPM, got 0"):
        write_midi(NOTES, tmp_path / "x.mid", tempo=0)
    with pytest.raises(TypeError, match=r"tempo must be a number.*'fast'"):
        write_midi(NOTES, tmp_path / "x.mid", tempo="fast")
    with pytest.raises(ValueError, match="program must lie in 0-127, got 200"):
        write_midi(NOTES, tmp_path / "x.mid", program=200)
    with pytest.raises(TypeError, match="path"):
        write_midi(NOTES, b"x.mid")
    with pytest.raises(FileNotFoundError, match=r"missing.*does not exist"):
        write_midi(NOTES, tmp_path / "missing" / "x.mid")
    assert list(tmp_path.iterdir()) == []
    assert check_notes(np.zeros((0, 4))).shape == (0, 4)


def test_missing_pretty_midi_names_it_and_the_install_command(monkeypatch, tmp_path):
    tr._pretty_midi.cache_clear()
    monkeypatch.setitem(sys.modules, "pretty_midi", None)
    try:
        with pytest.raises(ImportError, match=r"'pretty_midi'.*pip install 'conchshell\["):
            write_midi(NOTES, tmp_path / "x.mid")
    finally:
        monkeypatch.undo()
        tr._pretty_midi.cache_clear()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- recall on real clips
def _val_clips() -> list[dict]:
    """The stand-in val split's clips: the build's own split with its default seed 0."""
    scores = json.loads((STANDIN_DIR / "scores.json").read_text())
    out = []
    for category in CATEGORIES:
        clips = sorted(
            (c for c in scores["clips"] if c["category"] == category.name), key=lambda c: c["id"]
        )
        ids = [c["id"] for c in clips]
        split = build_module._split_groups(ids, ids, np.random.default_rng([0, category.index, 1]))
        out += [(c, category) for c in clips if split[c["id"]] == "val"]
    return out


def _recall(renderer: piano.PianoRenderer, clip: dict, category, folder: Path) -> tuple[int, int]:
    """(score notes found in the MIDI file, score notes in the clip) for one rendered clip."""
    import mir_eval

    played = [n for n in perform(clip["notes"], category) if n[0] < CLIP_SAMPLES / SAMPLE_RATE]
    wave = build_module._render_clip(renderer, clip, category)
    path = write_midi(wave, folder / f"{clip['id']}.mid")
    _, found = _read(path)
    reference = np.array([(on, on + length) for on, length, _, _ in played])
    pitches = mir_eval.util.midi_to_hz(np.array([p for _, _, p, _ in played], dtype=float))
    matched = mir_eval.transcription.match_notes(
        reference,
        pitches,
        found[:, :2],
        mir_eval.util.midi_to_hz(found[:, 2]),
        onset_tolerance=0.05,
        pitch_tolerance=50.0,
        offset_ratio=None,
    )
    return len(matched), len(played)


@pytest.fixture(scope="module")
def renderer() -> piano.PianoRenderer:
    return piano.PianoRenderer()


@needs_font
def test_midi_of_a_real_clip_holds_80_percent_of_its_score(renderer, tmp_path):
    """ocean_004, the first val clip: measured 41 of its 50 score notes (82.0 %)."""
    clip, category = _val_clips()[0]
    assert clip["id"] == "ocean_004"
    found, total = _recall(renderer, clip, category, tmp_path)
    assert (found, total) == (41, 50)
    assert found / total >= 0.8


@pytest.mark.slow
@needs_font
def test_midi_of_every_real_val_clip_holds_80_percent_of_the_scores(renderer, tmp_path):
    """All 24 val clips: measured 883 of 1030 score notes (85.7 %), 70.3 % to 100 % per clip."""
    clips = _val_clips()
    assert len(clips) == 24
    counts = np.array([_recall(renderer, c, cat, tmp_path) for c, cat in clips])
    found, total = counts.sum(axis=0)
    assert (found, total) == (883, 1030)
    assert found / total >= 0.8
    per_clip = counts[:, 0] / counts[:, 1]
    assert round(per_clip.min(), 3) == 0.703 and per_clip.max() == 1.0


# --------------------------------------------------------------- generate_files and the CLI
class _Playback(GenerationMixin):
    """A stand-in for a fitted model whose clips are given: generate_files without training."""

    duration = 8.0

    def __init__(self, clips: np.ndarray) -> None:
        self.clips = clips
        self.calls = 0

    def predict(self, images, categories=None, batch_size=None):
        self.calls += 1
        return self.clips[: len(images)]


@pytest.fixture(scope="module")
def melody_clip(renderer) -> np.ndarray:
    notes = [(0.25 + 0.6 * i, 0.45, p, 80) for i, p in enumerate((60, 64, 67, 72, 67, 64))]
    return renderer.render(notes, 4 * SAMPLE_RATE, gain=2.5)


@needs_font
def test_generate_files_writes_midi_beside_each_wav(melody_clip, tmp_path):
    model = _Playback(np.stack([melody_clip, np.zeros_like(melody_clip)]))
    images = torch.zeros(2, 3, 224, 224)
    out = tmp_path / "out"
    written = model.generate_files(images, out, names=["tune", "rest"], midi=True)
    assert [p.name for p in written] == ["tune.wav", "rest.wav"]
    assert sorted(p.name for p in out.iterdir()) == [
        "rest.mid",
        "rest.png",
        "rest.wav",
        "tune.mid",
        "tune.png",
        "tune.wav",
    ]
    _, notes = _read(out / "tune.mid")
    assert notes[:, 2].astype(int).tolist() == [60, 64, 67, 72, 67, 64]
    np.testing.assert_allclose(notes[:, 0], 0.25 + 0.6 * np.arange(6), atol=0.05)
    # the transcription of the WAV on disk gives the same notes as the file
    wave, _ = sf.read(out / "tune.wav", dtype="float32")
    assert tr.transcribe(wave)[0][:, 2].tolist() == notes[:, 2].tolist()
    assert _read(out / "rest.mid")[1].shape == (0, 4)  # silence: a valid empty file

    # the same overwrite rules as the WAV: refused before generating, replaced with overwrite
    for name in ("tune.wav", "tune.png", "tune.mid", "rest.wav", "rest.png"):
        (out / name).unlink()
    with pytest.raises(FileExistsError, match=r"rest\.mid already exists"):
        model.generate_files(images, out, names=["tune", "rest"], midi=True)
    assert model.calls == 1 and [p.name for p in out.iterdir()] == ["rest.mid"]
    before = (out / "rest.mid").stat().st_mtime_ns
    model.generate_files(images, out, names=["tune", "rest"], midi=True, overwrite=True)
    assert (out / "rest.mid").stat().st_mtime_ns >= before and (out / "tune.wav").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_generate_files_without_midi_writes_none_and_ignores_old_ones(tmp_path):
    model = _Playback(np.zeros((1, SAMPLE_RATE), dtype=np.float32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mid").write_bytes(b"old")
    model.generate_files(torch.zeros(1, 3, 224, 224), out, names=["a"])
    assert sorted(p.name for p in out.iterdir()) == ["a.mid", "a.png", "a.wav"]
    assert (out / "a.mid").read_bytes() == b"old"
    with pytest.raises(TypeError, match="midi must be True or False, got 'yes'"):
        model.generate_files(torch.zeros(1, 3, 224, 224), out, names=["b"], midi="yes")


def test_generate_files_checks_the_transcriber_before_generating(monkeypatch, tmp_path):
    model = _Playback(np.zeros((1, SAMPLE_RATE), dtype=np.float32))
    tr._pretty_midi.cache_clear()
    monkeypatch.setitem(sys.modules, "pretty_midi", None)
    try:
        with pytest.raises(ImportError, match="'pretty_midi'"):
            model.generate_files(torch.zeros(1, 3, 224, 224), tmp_path / "o", midi=True)
    finally:
        monkeypatch.undo()
        tr._pretty_midi.cache_clear()
    assert model.calls == 0 and not (tmp_path / "o").exists()


@needs_font
def test_predict_midi_flag(melody_clip, monkeypatch, tmp_path, capsys):
    from PIL import Image

    from conchshell.estimator import ImageToMusic

    model = _Playback(melody_clip[None])
    monkeypatch.setattr(ImageToMusic, "load", classmethod(lambda cls, path: model))
    Image.new("RGB", (32, 32), (10, 80, 200)).save(tmp_path / "sea.png")
    out = tmp_path / "music"
    args = ["predict", str(tmp_path / "model"), str(tmp_path / "sea.png"), "-o", str(out)]
    assert main([*args, "--midi"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "sea.wav"), str(out / "sea.mid")]
    assert _read(out / "sea.mid")[1].shape == (6, 4)
    # a second run refuses to replace the files, naming the first one
    assert main([*args, "--midi"]) == 2
    assert "sea.wav already exists" in capsys.readouterr().err
    assert main([*args, "--midi", "--overwrite"]) == 0
    capsys.readouterr()

    tr._pretty_midi.cache_clear()
    monkeypatch.setitem(sys.modules, "pretty_midi", None)
    try:
        assert main([*args, "--midi", "--overwrite"]) == 2
    finally:
        tr._pretty_midi.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith("conchshell: error: --midi: transcription needs the 'pretty_midi'")
