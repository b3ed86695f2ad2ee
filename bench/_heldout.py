"""The held-out training clips shared by the generator benches (issue 19).

``bench/generator_heldout.py`` and ``bench/latent_averaging.py`` both hold
out ``per_category`` clips of each category of a BOP-layout train split and
judge decoded latents against the rest; this is that split, read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class HeldOut:
    """The train split's clips, their codec latents, and which are held out."""

    train: Any  # the BOPDataset (one row per photo)
    cats: torch.Tensor  # category of each photo
    clip_of: np.ndarray  # clip index of each photo
    clip_cat: np.ndarray  # category of each clip
    audio: torch.Tensor  # (clips, samples), never augmented
    latents: torch.Tensor  # the codec's latents of ``audio``
    held: np.ndarray  # held-out clip indices
    kept: np.ndarray  # the other clips


def decode(model: Any, latents: torch.Tensor, n: int) -> np.ndarray:
    """Snap latents to the codebook and decode them, 8 at a time: ``(len, n)`` audio."""
    with torch.no_grad():
        out = [
            model.codec_.decode(chunk, level=model.level_, quantize=True).cpu()
            for chunk in latents.split(8)
        ]
    return torch.cat(out)[:, :n].numpy()


def held_out(model: Any, data: str, per_category: int, rng: np.random.RandomState) -> HeldOut:
    """Read ``data``'s train split and hold out ``per_category`` clips per category."""
    from conchshell.data.audio import fit_length
    from conchshell.datasets import load_bop

    train = load_bop(data, "train", random_state=0)
    cats = torch.as_tensor(train.category_ids, dtype=torch.long)
    keys = [str(p) for p in train.audio_paths]
    clips = sorted(set(keys))
    clip_of = np.array([clips.index(k) for k in keys])
    first = [keys.index(k) for k in clips]
    with torch.no_grad():
        audio = fit_length(train.stack_audio(first), model._n_samples)
        latents = torch.cat(
            [model.codec_.transform(a, level=model.level_).cpu() for a in audio.split(8)]
        )
    clip_cat = np.asarray(cats)[first]
    held = np.concatenate(
        [
            rng.choice(np.flatnonzero(clip_cat == c), per_category, replace=False)
            for c in range(len(train.categories))
        ]
    )
    kept = np.setdiff1d(np.arange(len(clips)), held)
    return HeldOut(train, cats, clip_of, clip_cat, audio, latents, held, kept)
