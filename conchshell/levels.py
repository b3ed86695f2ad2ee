"""Names of the Jukebox VQ-VAE levels and the sizes they imply.

The paper calls the three levels High, Low and Deep; Jukebox numbers them
2, 1 and 0. Every component accepts either spelling.
"""

from __future__ import annotations

__all__ = [
    "CLIP_SAMPLES",
    "CLIP_SECONDS",
    "LEVELS",
    "PAPER_HOPS",
    "SAMPLE_RATE",
    "level_index",
    "level_name",
]

LEVELS: dict[str, int] = {"deep": 0, "low": 1, "high": 2}
PAPER_HOPS: dict[int, int] = {0: 8, 1: 32, 2: 128}
SAMPLE_RATE = 16_000
CLIP_SECONDS = 8.0
CLIP_SAMPLES = 128_000


def level_index(level: str | int) -> int:
    """Map ``"deep"|"low"|"high"`` or ``0|1|2`` to the Jukebox level index.

    Parameters
    ----------
    level : {"deep", "low", "high"} or {0, 1, 2}
        A paper name (any case) or a Jukebox level index.

    Returns
    -------
    int
        0 (Deep, hop 8), 1 (Low, hop 32) or 2 (High, hop 128).

    Examples
    --------
    >>> level_index("deep"), level_index("High"), level_index(1)
    (0, 2, 1)
    """
    if isinstance(level, bool):
        raise ValueError(f"level must be one of {sorted(LEVELS)} or 0, 1, 2; got {level!r}")
    if isinstance(level, int) and level in PAPER_HOPS:
        return level
    if isinstance(level, str) and level.lower() in LEVELS:
        return LEVELS[level.lower()]
    raise ValueError(f"level must be one of {sorted(LEVELS)} or 0, 1, 2; got {level!r}")


def level_name(level: str | int) -> str:
    """Map a level index or name to its paper name (``"deep"``, ``"low"``, ``"high"``).

    Parameters
    ----------
    level : {"deep", "low", "high"} or {0, 1, 2}
        A paper name (any case) or a Jukebox level index.

    Returns
    -------
    str
    """
    index = level_index(level)
    return next(name for name, i in LEVELS.items() if i == index)
