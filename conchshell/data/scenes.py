"""Scene categories of the stand-in dataset and the musical character of each.

Each category pairs a kind of photograph with a way of playing real scores, so
that a model has something learnable to map: the score source and mode fix the
harmony, the tempo and articulation the motion, the register and velocity the
colour and loudness. :func:`perform` turns a score excerpt (quarter-length
offsets and MIDI pitches, as stored in ``conchshell/data/standin/scores.json``)
into timed notes for :class:`conchshell.data.piano.PianoRenderer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CATEGORIES", "SceneCategory", "category_by_name", "perform"]

_PIANO_LOW, _PIANO_HIGH = 21, 108


@dataclass(frozen=True)
class SceneCategory:
    """One scene category and its musical character.

    Attributes
    ----------
    name : str
        Folder-safe name (``ocean``); the BOP folder is ``<name>-<index>``.
    index : int
        BOP category number, 1-6 (the folder name's last character).
    scenes : str
        What the photographs show.
    music : str
        Score source in music21's corpus: ``chorale`` (Bach four-part chorales),
        ``quartet`` (string-quartet movements reduced to piano) or ``reel``
        (fiddle reels from Ryan's Mammoth Collection).
    mode : str or None
        ``major``/``minor`` for sources selected by mode, ``None`` otherwise.
    tempo : float
        Quarter notes per minute.
    register : int
        MIDI pitch the excerpt's median pitch is transposed to.
    velocity : int
        Base MIDI velocity (loudness and timbre).
    articulation : float
        Fraction of each written duration that sounds (1 legato, < 1 detached).
    """

    name: str
    index: int
    scenes: str
    music: str
    mode: str | None
    tempo: float
    register: int
    velocity: int
    articulation: float

    @property
    def folder(self) -> str:
        """BOP image folder name, e.g. ``ocean-1``."""
        return f"{self.name}-{self.index}"


CATEGORIES: tuple[SceneCategory, ...] = (
    SceneCategory("ocean", 1, "sea, waves, coast, reef", "chorale", "major", 76, 62, 70, 1.0),
    SceneCategory("forest", 2, "woods, trees, moss, leaves", "quartet", "major", 100, 64, 75, 0.85),
    SceneCategory(
        "mountain", 3, "peaks, cliffs, snowy ridges", "chorale", "major", 60, 76, 55, 1.0
    ),
    SceneCategory(
        "night_sky", 4, "galaxies, nebulae, star clusters", "chorale", "minor", 52, 72, 45, 1.0
    ),
    SceneCategory("sunset", 5, "dusk, sunset, golden hour", "chorale", "minor", 66, 55, 60, 1.0),
    SceneCategory("city", 6, "buildings, monuments, streets", "reel", None, 132, 67, 90, 0.6),
)


def category_by_name(name: str) -> SceneCategory:
    """Return the category called ``name``.

    Parameters
    ----------
    name : str
        The category's name, e.g. as stored in a label file.

    Returns
    -------
    SceneCategory

    Raises
    ------
    ValueError
        If no category has that name.
    """
    for category in CATEGORIES:
        if category.name == name:
            return category
    known = ", ".join(c.name for c in CATEGORIES)
    raise ValueError(f"unknown scene category {name!r}; known: {known}")


def perform(
    notes: Sequence[Sequence[float]], category: SceneCategory
) -> list[tuple[float, float, int, int]]:
    """Apply a category's character to a score excerpt.

    Parameters
    ----------
    notes : sequence of (onset_ql, duration_ql, midi_pitch)
        Excerpt in quarter lengths from its own start.
    category : SceneCategory
        Supplies tempo, register, velocity and articulation.

    Returns
    -------
    list of (onset_s, duration_s, pitch, velocity)
        Ready for :meth:`conchshell.data.piano.PianoRenderer.render`.
    """
    if len(notes) == 0:
        raise ValueError("cannot perform an empty excerpt")
    pitches = np.array([int(n[2]) for n in notes])
    shift = round(category.register - float(np.median(pitches)))
    seconds_per_ql = 60.0 / category.tempo
    played = []
    for onset, duration, pitch in notes:
        p = int(pitch) + shift
        # Fold notes that leave the piano's range back by octaves.
        while p < _PIANO_LOW:
            p += 12
        while p > _PIANO_HIGH:
            p -= 12
        on_beat = abs(onset - round(onset)) < 1e-6
        velocity = category.velocity + (6 if on_beat else -4)
        played.append(
            (
                float(onset) * seconds_per_ql,
                float(duration) * seconds_per_ql * category.articulation,
                p,
                int(min(127, max(1, velocity))),
            )
        )
    return played
