"""The demo's HTML gallery."""

import numpy as np
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
