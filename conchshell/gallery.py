"""A static HTML gallery of generated music: image, spectrogram, piano roll and player per clip.

``make demo`` ends by writing one, so a person can look at and listen to
what the model made for each validation image. Under each spectrogram a piano
roll shows the notes that :func:`conchshell.evaluation.transcribe` hears in
the clip (time across, pitch up, colour for velocity); where a real clip is
given for an image, it is shown the same way beside the generated one.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conchshell.io import atomic_write
from conchshell.levels import SAMPLE_RATE

__all__ = ["plot_piano_roll", "spectrogram_png", "write_gallery"]

#: Matplotlib colour map of the piano roll's velocities (0 to 127).
VELOCITY_CMAP = "viridis"
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Semitones shown above and below the highest and lowest note of a roll.
_ROLL_MARGIN = 2


def _note_name(pitch: int) -> str:
    """Scientific pitch notation of a MIDI number: 60 is C4."""
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def plot_piano_roll(ax: Any, notes: object, seconds: float | None = None) -> Any:
    """Draw a note array as a piano roll on a matplotlib axes.

    Each note is a bar from its onset to its offset at its pitch, coloured
    by its velocity on :data:`VELOCITY_CMAP` (0 to 127); the pitch axis is
    labelled with note names at each C.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    notes : array-like of shape (n_notes, 4)
        Onset and offset in seconds, MIDI pitch and velocity per note, as
        :func:`conchshell.evaluation.transcribe` returns them.
    seconds : float, optional
        The time axis runs from 0 to ``seconds``; by default to the last offset.

    Returns
    -------
    matplotlib.cm.ScalarMappable
        The velocity colour scale, for ``fig.colorbar``.

    Raises
    ------
    TypeError, ValueError
        On an invalid note array (see :func:`conchshell.evaluation.check_notes`)
        or a ``seconds`` that is not a positive number.
    """
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from conchshell.evaluation.transcription import check_notes

    arr = check_notes(notes)
    if seconds is not None and not (
        isinstance(seconds, int | float | np.integer | np.floating)
        and np.isfinite(seconds)
        and seconds > 0
    ):
        raise ValueError(f"seconds must be a positive number of seconds, got {seconds!r}")
    norm = Normalize(vmin=0, vmax=127)
    cmap = matplotlib.colormaps[VELOCITY_CMAP]
    if arr.shape[0]:
        ax.barh(
            arr[:, 2],
            arr[:, 1] - arr[:, 0],
            left=arr[:, 0],
            height=0.8,
            color=cmap(norm(arr[:, 3])),
            edgecolor="#00000055",
            linewidth=0.4,
        )
        low, high = int(arr[:, 2].min()), int(arr[:, 2].max())
        end = float(arr[:, 1].max())
    else:
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center")
        low, high, end = 60, 72, 1.0
    low, high = low - _ROLL_MARGIN, high + _ROLL_MARGIN
    ax.set_ylim(low - 0.5, high + 0.5)
    ax.set_xlim(0, float(seconds) if seconds is not None else end)
    ticks = [p for p in range(low, high + 1) if p % 12 == 0] or [low + _ROLL_MARGIN]
    ax.set_yticks(ticks, [_note_name(p) for p in ticks])
    ax.set_ylabel("pitch")
    ax.set_xlabel("time (s)")
    ax.grid(axis="y", color="#0000001a", linewidth=0.5)
    return ScalarMappable(norm=norm, cmap=cmap)


def spectrogram_png(
    path: str | Path,
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    title: str = "",
    notes: object = None,
) -> Path:
    """Write a log-mel spectrogram of one clip as a PNG, with its piano roll under it.

    Parameters
    ----------
    path : path-like
        Destination PNG, written atomically.
    audio : numpy.ndarray of shape (n_samples,)
        Mono clip.
    sample_rate : int, default=16000
    title : str, optional
        Printed above the plot.
    notes : array-like of shape (n_notes, 4), optional
        The clip's notes (:func:`conchshell.evaluation.transcribe`): drawn as a
        piano roll under the spectrogram on the same time axis, with a
        velocity colour bar (see :func:`plot_piano_roll`). Without them the
        image is the spectrogram alone, 600 x 240 pixels; with them it is 600
        x 440.

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
    seconds = len(audio) / sample_rate
    if notes is None:
        fig, ax = plt.subplots(figsize=(6, 2.4), dpi=100)
    else:
        fig = plt.figure(figsize=(6, 4.4), dpi=100)
        grid = fig.add_gridspec(2, 2, width_ratios=(40, 1), height_ratios=(1, 1))
        ax = fig.add_subplot(grid[0, 0])
        roll = fig.add_subplot(grid[1, 0], sharex=ax)
        scale = plot_piano_roll(roll, notes, seconds)
        bar = fig.colorbar(scale, cax=fig.add_subplot(grid[1, 1]))
        bar.set_label("velocity", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    ax.imshow(db, origin="lower", aspect="auto", extent=(0, seconds, 0, db.shape[0]), cmap="magma")
    if notes is None:
        ax.set_xlabel("time (s)")
    else:
        ax.tick_params(labelbottom=False)  # the piano roll under it shares the time axis
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return path


def _transcriber_missing() -> str | None:
    """Why the piano rolls cannot be drawn, or None when they can."""
    from conchshell.evaluation.transcription import check_transcriber

    try:
        check_transcriber()
    except (ImportError, FileNotFoundError) as exc:
        return str(exc)
    return None


def _reference_audio(reference: object, name: str, out: Path) -> tuple[np.ndarray, int]:
    """The real clip of ``name`` as mono samples and rate, copied to ``<name>.real.wav``."""
    from conchshell.data.audio import read_audio, save_audio

    target = out / f"{name}.real.wav"
    if isinstance(reference, bytes):
        raise TypeError(f"the reference of {name!r} must be a path or samples, got bytes")
    if isinstance(reference, str | os.PathLike):
        wave, rate = read_audio(reference)
        audio = wave.mean(axis=0)
        if Path(reference).resolve() == target.resolve():
            return audio, rate
    else:
        if hasattr(reference, "detach"):
            reference = reference.detach().cpu().numpy()
        audio, rate = np.asarray(reference, dtype=np.float32), SAMPLE_RATE
        if audio.ndim != 1:
            raise ValueError(
                f"the reference of {name!r} must be one mono clip (samples,), "
                f"got shape {audio.shape}"
            )
    save_audio(target, audio, rate)
    return audio, rate


def _clip_block(name: str, stem: str, label: str) -> str:
    safe, stem_safe = html.escape(name, quote=True), html.escape(stem, quote=True)
    return (
        f'<div class="clip"><img class="spec" src="{stem_safe}.spec.png" '
        f'alt="{html.escape(label)} clip of {safe}"><div class="label">{html.escape(label)}'
        f'</div><audio controls preload="none" src="{stem_safe}.wav"></audio></div>'
    )


def write_gallery(
    out_dir: str | Path,
    names: Sequence[str],
    captions: Sequence[str] | None = None,
    title: str = "conchshell",
    *,
    piano_roll: bool | None = None,
    references: Sequence[object] | None = None,
) -> Path:
    """Write ``index.html``: per clip ``<name>.png``, a spectrogram, a piano roll and a player.

    The WAV and image files must already be in ``out_dir`` (as
    :meth:`ImageToMusic.generate_files` writes them); the spectrograms are
    made here as ``<name>.spec.png``, each with the piano roll of the clip's
    transcription under it (:func:`spectrogram_png`).

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
    piano_roll : bool or None, default=None
        Draw a piano roll under each spectrogram, of the notes
        :func:`conchshell.evaluation.transcribe` hears (coloured by velocity).
        ``None`` draws them when the transcriber (the ``transcription`` extra)
        is installed, and says on the page why not otherwise; ``True``
        requires it; ``False`` leaves them out.
    references : sequence, optional
        Per clip, the real clip paired with its image, shown beside the
        generated one with its own spectrogram, piano roll and player: a path
        to an audio file, one mono clip ``(samples,)`` at 16 kHz (rows of an
        ``(n, samples)`` array will do), or None for a clip without one. Each
        is written as ``<name>.real.wav`` and ``<name>.real.spec.png``.

    Returns
    -------
    Path
        The ``index.html`` written.

    Raises
    ------
    ImportError
        With ``piano_roll=True``, when the transcriber's packages are missing.
    TypeError
        When ``piano_roll`` is not a bool or None.
    ValueError
        When the number of captions or references differs from the number of
        names, a reference is not one mono clip, or a name plus ``.real``
        is another name (their files would collide).
    """
    import soundfile as sf

    out = Path(out_dir)
    captions = list(captions) if captions is not None else [""] * len(names)
    if len(captions) != len(names):
        raise ValueError(f"{len(captions)} captions for {len(names)} clips")
    if piano_roll is not None and not isinstance(piano_roll, bool | np.bool_):
        raise TypeError(f"piano_roll must be True, False or None, got {piano_roll!r}")
    refs: list[object] = [None] * len(names) if references is None else list(references)
    if len(refs) != len(names):
        raise ValueError(f"{len(refs)} references for {len(names)} clips")
    taken = set(names)
    for name, ref in zip(names, refs, strict=True):
        if ref is not None and f"{name}.real" in taken:
            raise ValueError(
                f"the real clip of {name!r} would be written over the clip named {name}.real"
            )
    missing = None
    if piano_roll is None:
        missing = _transcriber_missing()
        piano_roll = missing is None
    elif piano_roll:
        from conchshell.evaluation.transcription import check_transcriber

        check_transcriber()

    def figure(stem: str, audio: np.ndarray, rate: int, caption: str) -> None:
        notes = None
        if piano_roll:
            from conchshell.evaluation.transcription import transcribe

            (notes,) = transcribe(audio, rate)
        spectrogram_png(out / f"{stem}.spec.png", audio, rate, title=caption, notes=notes)

    rows = []
    for name, caption, ref in zip(names, captions, refs, strict=True):
        audio, rate = sf.read(out / f"{name}.wav", dtype="float32")
        figure(name, audio, rate, caption)
        blocks = [_clip_block(name, name, "generated")]
        if ref is not None:
            real, real_rate = _reference_audio(ref, name, out)
            figure(f"{name}.real", real, real_rate, "real clip")
            blocks.append(_clip_block(name, f"{name}.real", "real"))
        safe = html.escape(name, quote=True)
        rows.append(
            "<figure>"
            f'<img class="photo" src="{safe}.png" alt="{safe}">{"".join(blocks)}'
            f"<figcaption>{html.escape(caption)}</figcaption>"
            "</figure>"
        )
    if piano_roll:
        legend = (
            "Under each spectrogram, the piano roll of the notes Basic Pitch hears in the clip: "
            "time across, pitch up, colour for velocity (the model's confidence in the note)."
        )
    elif missing is not None:
        legend = f"No piano rolls: {missing}"
    else:
        legend = ""
    n_real = sum(ref is not None for ref in refs)
    real_note = f" {n_real} beside the real clip paired with their image." if n_real else ""
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;background:#fafafa}"
        "figure{display:flex;flex-wrap:wrap;gap:1em;align-items:center;background:#fff;"
        "padding:.8em;margin:0 0 1em;border-radius:6px;box-shadow:0 1px 3px #0002}"
        "figcaption{flex-basis:100%}.clip{display:flex;flex-direction:column;gap:.3em}"
        ".label{font-size:.85em;color:#555}"
        ".photo{width:160px;height:160px;object-fit:cover}.spec{width:420px}"
        f"</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(names)} clips, 8 s at 16 kHz.{html.escape(real_note)}</p>"
        f"<p>{html.escape(legend)}</p>{''.join(rows)}</body></html>"
    )
    index = out / "index.html"
    with atomic_write(index, "w") as handle:
        handle.write(page)
    return index
