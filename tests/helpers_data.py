"""Small files for the data-layer tests: tones, images, Label sheets, a BOP-layout folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
import pytest
import soundfile as sf
from PIL import Image

LABEL_HEADER = ("img_type", "img_npy_name", "genre", "muse_wav_name")


def tone(
    freq: float = 440.0, seconds: float = 0.25, sr: int = 16000, channels: int = 1, amp=0.5
) -> np.ndarray:
    """A sine as (samples, channels), soundfile's layout; channel c is scaled by 1/(c+1)."""
    t = np.arange(round(seconds * sr)) / sr
    mono = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([mono / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def write_tone(path: Path, freq=440.0, seconds=0.25, sr=16000, channels=1, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(freq, seconds, sr, channels), sr, **kw)
    return path


def write_image(path: Path, colour=(200, 30, 30), size=(24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_label(path: Path, rows, header=LABEL_HEADER, sheet="Sheet1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


# A small BOP: three categories; per category two originals and one augmented copy in
# train, one original in val. Music: two genres, three pieces.
BOP_FOLDERS = ("coast-1", "island-2", "sand_beach-3")
BOP_WAVS = {"beach": ("b0.wav", "b1.wav"), "ocean": ("o0.wav",)}


def bop_plan():
    """(split, folder, image stem, genre, wav) for every image of the small BOP."""
    plan = []
    pieces = [(g, w) for g, ws in BOP_WAVS.items() for w in ws]
    for c, folder in enumerate(BOP_FOLDERS):
        base = folder.split("-")[0]
        for j, stem in enumerate((f"{base}000", f"{base}001", f"{base}000-1")):
            genre, wav = pieces[(c + j) % len(pieces)]
            plan.append(("train", folder, stem, genre, wav))
        genre, wav = pieces[c % len(pieces)]
        plan.append(("val", folder, f"{base}100", genre, wav))
    return plan


def make_bop(root: Path, *, npy: bool = True) -> Path:
    """Write the small BOP under ``root``: images, wavs, Label.xlsx, Label_small.xlsx, Npy."""
    colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220)]
    rates = {"b0.wav": (44100, 2), "b1.wav": (8000, 1), "o0.wav": (48000, 6)}
    for genre, wavs in BOP_WAVS.items():
        for k, w in enumerate(wavs):
            sr, ch = rates[w]
            write_tone(
                root / "Wav" / genre / w, freq=300 + 100 * k, seconds=0.3, sr=sr, channels=ch
            )
    rows, small = [], []
    for split, folder, stem, genre, wav in bop_plan():
        c = BOP_FOLDERS.index(folder)
        sub = "train_set" if split == "train" else "val_set"
        write_image(root / "Img" / sub / folder / f"{stem}.jpg", colours[c])
        row = (folder, f"{stem}.npy", genre, wav)
        rows.append(row)
        if not stem.endswith("-1"):
            small.append(row)
        if npy and split == "train" and stem.endswith("000"):
            p = root / "Npy" / "i3d_npy_train" / folder / f"{stem}.npy"
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, np.full(2048, c, dtype=np.float32))
    write_label(root / "Label" / "Label.xlsx", rows)
    write_label(root / "Label" / "Label_small.xlsx", small)
    return root


def _have_soundfont() -> bool:
    from conchshell.data import piano

    try:
        piano.find_soundfont()
    except FileNotFoundError:
        return False
    return True


HAVE_FONT = _have_soundfont()
#: Skips a test that renders piano when Debian's soundfont is not installed.
needs_font = pytest.mark.skipif(
    not HAVE_FONT, reason="piano soundfont missing (apt-get install fluidr3mono-gm-soundfont)"
)
