"""A static HTML gallery of generated music: image, spectrogram and player per clip.

``make demo`` ends by writing one, so a person can look at and listen to
what the model made for each validation image.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conchshell.io import atomic_write
from conchshell.levels import SAMPLE_RATE

__all__ = ["spectrogram_png", "write_gallery"]


def spectrogram_png(
    path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, title: str = ""
) -> Path:
    """Write a log-mel spectrogram of one clip as a PNG.

    Parameters
    ----------
    path : path-like
        Destination PNG.
    audio : numpy.ndarray of shape (n_samples,)
        Mono clip.
    sample_rate : int, default=16000
    title : str, optional
        Printed above the plot.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=1024, hop_length=256, n_mels=96
    )(torch.as_tensor(np.asarray(audio, dtype=np.float32)))
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    db = db.clamp_min(db.max() - 80).numpy()
    fig, ax = plt.subplots(figsize=(6, 2.4), dpi=100)
    seconds = len(audio) / sample_rate
    ax.imshow(db, origin="lower", aspect="auto", extent=(0, seconds, 0, db.shape[0]), cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return path


def write_gallery(
    out_dir: str | Path,
    names: Sequence[str],
    captions: Sequence[str] | None = None,
    title: str = "conchshell",
) -> Path:
    """Write ``index.html`` showing ``<name>.png``, its spectrogram and ``<name>.wav``.

    The WAV and image files must already be in ``out_dir`` (as
    :meth:`ImageToMusic.generate_files` writes them); the spectrograms are
    made here as ``<name>.spec.png``.

    Parameters
    ----------
    out_dir : str or Path
        Folder holding ``<name>.wav`` and ``<name>.png`` for each name.
    names : sequence of str
        The clips to show, in order.
    captions : sequence of str, optional
        One caption per clip (also the spectrogram's title); empty by default.
    title : str, default "conchshell"
        The page title.

    Returns
    -------
    Path
        The ``index.html`` written.
    """
    import soundfile as sf

    out = Path(out_dir)
    captions = list(captions) if captions is not None else [""] * len(names)
    if len(captions) != len(names):
        raise ValueError(f"{len(captions)} captions for {len(names)} clips")
    rows = []
    for name, caption in zip(names, captions, strict=True):
        wav = out / f"{name}.wav"
        audio, rate = sf.read(wav, dtype="float32")
        spectrogram_png(out / f"{name}.spec.png", audio, rate, title=caption)
        safe = html.escape(name, quote=True)
        rows.append(
            "<figure>"
            f'<img class="photo" src="{safe}.png" alt="{safe}">'
            f'<img class="spec" src="{safe}.spec.png" alt="spectrogram of {safe}">'
            f'<figcaption>{html.escape(caption)}<br><audio controls preload="none" '
            f'src="{safe}.wav"></audio></figcaption>'
            "</figure>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;background:#fafafa}"
        "figure{display:flex;gap:1em;align-items:center;background:#fff;padding:.8em;"
        "margin:0 0 1em;border-radius:6px;box-shadow:0 1px 3px #0002}"
        ".photo{width:160px;height:160px;object-fit:cover}.spec{height:160px}"
        f"</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(names)} clips, 8 s at 16 kHz.</p>{''.join(rows)}</body></html>"
    )
    index = out / "index.html"
    with atomic_write(index, "w") as handle:
        handle.write(page)
    return index
