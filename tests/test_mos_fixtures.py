"""Tiny listening-test folders for the MOS tests (helpers only: no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

#: A file stem that tries markup, quotes, an entity and non-ASCII text at once.
#: ("/" cannot occur in a file name, so a closing tag is written with a backslash.)
HOSTILE_STEM = "<img src=x onerror=alert(1)>\"'&amp;<script>alert(2)<\\script> é音"
#: A model folder name of the same kind.
HOSTILE_MODEL = "<script>alert('model')<\\script>"


def write_pair(folder: Path, stem: str, *, picture: str = ".png", seed: int = 0) -> None:
    """Write ``stem.wav`` (0.1 s of a 16 kHz tone) and ``stem<picture>`` (8x8) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(1600) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(folder / f"{stem}.wav", tone.astype(np.float32), 16000, subtype="PCM_16")
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    fmt = "JPEG" if picture in (".jpg", ".jpeg") else "PNG"
    Image.new("RGB", (8, 8), colour).save(folder / f"{stem}{picture}", format=fmt)


def make_samples(root: Path) -> Path:
    """Two models, five servable pairs, and four files that must not be served.

    ``alpha``: ``a1`` (png), ``a2`` (jpg). ``HOSTILE_MODEL``: ``b1``, ``b2``
    and ``HOSTILE_STEM``, plus a clip without a picture, a picture without a
    clip and a text file.
    """
    samples = root / "samples"
    write_pair(samples / "alpha", "a1", seed=1)
    write_pair(samples / "alpha", "a2", picture=".jpg", seed=2)
    hostile = samples / HOSTILE_MODEL
    write_pair(hostile, "b1", seed=3)
    write_pair(hostile, "b2", seed=4)
    write_pair(hostile, HOSTILE_STEM, seed=5)
    write_pair(hostile, "orphan", seed=6)
    (hostile / "orphan.png").unlink()
    write_pair(hostile, "lonely", seed=7)
    (hostile / "lonely.wav").unlink()
    (hostile / "notes.txt").write_text("not a sample")
    return samples
