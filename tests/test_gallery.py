"""The demo's HTML gallery."""

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conchshell.gallery import spectrogram_png, write_gallery


def test_spectrogram_png_is_an_image(tmp_path):
    t = np.arange(16000) / 16000
    path = spectrogram_png(tmp_path / "s.png", np.sin(2 * np.pi * 440 * t).astype(np.float32))
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (600, 240)


def test_gallery_lists_every_clip_and_escapes_names(tmp_path):
    names = ["calm", 'a"<b>']
    for name in names:
        sf.write(tmp_path / f"{name}.wav", np.zeros(1600, dtype=np.float32), 16000)
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    index = write_gallery(tmp_path, names, captions=["ocean", "<i>x</i>"])
    page = index.read_text()
    assert page.count("<figure>") == 2
    assert 'src="calm.wav"' in page
    assert "<b>" not in page and "&lt;b&gt;" in page
    assert "<i>x</i>" not in page
    assert (tmp_path / "calm.spec.png").is_file()


def _clip(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _folder(tmp_path, names, seconds: float = 2.0):
    for name in names:
        sf.write(tmp_path / f"{name}.wav", _clip(seconds), 16000)
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")


def test_plot_piano_roll_draws_each_note_coloured_by_velocity():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from conchshell.gallery import VELOCITY_CMAP, plot_piano_roll

    notes = np.array([[0.0, 0.5, 60, 0], [0.5, 1.5, 67, 127], [1.0, 2.0, 72, 63.5]])
    fig, ax = plt.subplots()
    scale = plot_piano_roll(ax, notes, seconds=8.0)
    bars = ax.patches
    assert len(bars) == 3
    assert [b.get_x() for b in bars] == [0.0, 0.5, 1.0]
    assert [b.get_width() for b in bars] == [0.5, 1.0, 1.0]
    assert [b.get_y() + b.get_height() / 2 for b in bars] == [60, 67, 72]
    cmap = matplotlib.colormaps[VELOCITY_CMAP]
    for bar, velocity in zip(bars, (0, 127, 63.5), strict=True):
        np.testing.assert_allclose(bar.get_facecolor(), cmap(velocity / 127))
    assert scale.norm.vmin == 0 and scale.norm.vmax == 127
    assert ax.get_xlim() == (0.0, 8.0)
    assert ax.get_ylim() == (57.5, 74.5)  # two semitones around the notes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C4", "C5"]
    plt.close(fig)

    fig, ax = plt.subplots()
    plot_piano_roll(ax, np.zeros((0, 4)))
    assert len(ax.patches) == 0 and [t.get_text() for t in ax.texts] == ["no notes"]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"notes\[0\]"):
        plot_piano_roll(ax, np.array([[1.0, 0.5, 60, 80]]))
    with pytest.raises(ValueError, match=r"seconds must be a positive number.*-1"):
        plot_piano_roll(ax, notes, seconds=-1)


def test_gallery_draws_piano_rolls_and_real_clips(tmp_path, monkeypatch):
    from conchshell.evaluation import transcription

    heard = np.array([[0.1, 0.9, 69, 90], [1.0, 1.8, 72, 70]])
    calls = []

    def fake_transcribe(clips, sample_rate=16000):
        calls.append((np.asarray(clips).shape, sample_rate))
        return [heard]

    monkeypatch.setattr(transcription, "transcribe", fake_transcribe)
    _folder(tmp_path, ["sea", "town"])
    real = (0.5 * _clip(3.0)).astype(np.float32)
    sf.write(tmp_path / "town-real-source.wav", _clip(1.0), 16000)
    index = write_gallery(
        tmp_path,
        ["sea", "town"],
        ["ocean", "city"],
        references=[real, tmp_path / "town-real-source.wav"],
    )
    page = index.read_text()
    assert calls == [((32000,), 16000), ((48000,), 16000), ((32000,), 16000), ((16000,), 16000)]
    for stem in ("sea", "sea.real", "town", "town.real"):
        with Image.open(tmp_path / f"{stem}.spec.png") as image:
            assert image.size == (600, 440), stem  # spectrogram and piano roll
        assert f'src="{stem}.wav"' in page and f'src="{stem}.spec.png"' in page
    written, rate = sf.read(tmp_path / "sea.real.wav", dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(written, real, atol=1 / 32768)  # 16-bit PCM
    assert page.count("<figure>") == 2 and page.count('<div class="label">real</div>') == 2
    assert "2 beside the real clip paired with their image" in page
    assert "piano roll of the notes Basic Pitch hears" in page


def test_gallery_piano_roll_off_and_without_the_transcriber(tmp_path, monkeypatch):
    import sys

    from conchshell.evaluation import transcription

    _folder(tmp_path, ["a"])

    def refuse(*args, **kwargs):
        raise AssertionError("transcribed although piano_roll=False")

    monkeypatch.setattr(transcription, "transcribe", refuse)
    page = write_gallery(tmp_path, ["a"], piano_roll=False).read_text()
    with Image.open(tmp_path / "a.spec.png") as image:
        assert image.size == (600, 240)  # the spectrogram alone, as before
    assert "piano roll" not in page and "real" not in page

    transcription._session.cache_clear()
    transcription._basic_pitch.cache_clear()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    try:
        page = write_gallery(tmp_path, ["a"]).read_text()
        assert "No piano rolls: transcription needs the &#x27;onnxruntime&#x27; module" in page
        with pytest.raises(ImportError, match="'onnxruntime'"):
            write_gallery(tmp_path, ["a"], piano_roll=True)
    finally:
        monkeypatch.undo()
        transcription._session.cache_clear()
        transcription._basic_pitch.cache_clear()
    with Image.open(tmp_path / "a.spec.png") as image:
        assert image.size == (600, 240)


def test_gallery_bad_arguments_are_named(tmp_path):
    _folder(tmp_path, ["a", "a.real"])
    with pytest.raises(ValueError, match="1 references for 2 clips"):
        write_gallery(tmp_path, ["a", "a.real"], references=[None])
    with pytest.raises(ValueError, match=r"real clip of 'a' would be written over.*a\.real"):
        write_gallery(tmp_path, ["a", "a.real"], references=[_clip(), None])
    with pytest.raises(TypeError, match="piano_roll must be True, False or None, got 'yes'"):
        write_gallery(tmp_path, ["a"], piano_roll="yes")
    with pytest.raises(ValueError, match=r"reference of 'a' must be one mono clip.*\(2, 16000\)"):
        write_gallery(tmp_path, ["a"], piano_roll=False, references=[np.zeros((2, 16000))])
    with pytest.raises(FileNotFoundError, match=r"nowhere\.wav"):
        write_gallery(tmp_path, ["a"], piano_roll=False, references=[tmp_path / "nowhere.wav"])
    with pytest.raises(TypeError, match="reference of 'a' must be a path or samples, got bytes"):
        write_gallery(tmp_path, ["a"], piano_roll=False, references=[b"x.wav"])
