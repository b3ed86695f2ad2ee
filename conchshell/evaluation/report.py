"""Is the generated music piano, does it fit the picture, and does it vary? (issue 19's figures)

:func:`music_report` gathers, for a fitted model and a dataset's train and val
splits, the figures the demo writes to ``summary.json`` and
``bench/music_report.py`` prints:

- **piano notes**: the fraction of clips :func:`~conchshell.evaluation.music_measure`
  hears as piano music, with the real val clips' fraction beside it;
- **fits the picture**: relevance accuracy of a scene classifier, for clips
  generated with the true category (``categories=``) and end to end (category
  predicted from the photo), and descriptor agreement;
- **variety, not retrieval**: the mean pairwise log-mel distance between clips
  of one category (:func:`within_category_distance`), over the same for the
  real clips, and the fraction of clips within 10 dB SI-SDR of a training clip
  (:func:`near_copies`).

Relevance is judged twice. The *codec-matched* judge is a
:class:`~conchshell.evaluation.RelevanceClassifier` fitted on the model's codec
reconstructions of the training clips: it hears the training music through the
codec every generated clip is decoded by, so it judges the music rather than
the codec's colouring. The *real-clip* judge is fitted on the clips as
recorded. Measured on the stand-in val split with the demo's codec: the
codec-matched judge scores the codec reconstructions of the real val clips
0.97, the real-clip judge only 0.32 (and 1.0 on the real clips themselves),
so a generator can only be held to the first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchaudio

from conchshell.evaluation._audio import as_batch
from conchshell.levels import SAMPLE_RATE

__all__ = ["codec_reconstructions", "music_report", "near_copies", "within_category_distance"]

_MEL = {"n_fft": 1024, "hop_length": 256, "n_mels": 64}
NEAR_COPY_DB = 10.0  # SI-SDR at or above which a clip counts as a copy of a training clip


def _log_mel(clips: torch.Tensor) -> torch.Tensor:
    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, **_MEL)
    return torch.log(mel(clips) + 1e-5)


def within_category_distance(clips: object, categories: object) -> float:
    """Mean log-mel L1 distance between every two clips of the same category.

    Parameters
    ----------
    clips : array-like of shape (n, samples)
        16 kHz mono clips.
    categories : array-like of shape (n,)
        Category of each clip.

    Returns
    -------
    float
        0 when all clips of each category are the same; ``nan`` when no
        category has two clips.
    """
    batch = as_batch(clips, name="clips")
    cats = np.asarray(categories)
    if cats.shape != (batch.shape[0],):
        raise ValueError(f"categories must have shape ({batch.shape[0]},), got {cats.shape}")
    mels = _log_mel(batch).flatten(1)
    distances = []
    for c in np.unique(cats):
        group = mels[torch.as_tensor(np.flatnonzero(cats == c))]
        if len(group) < 2:
            continue
        pair = torch.cdist(group, group, p=1) / group.shape[1]
        distances.append(pair[torch.triu_indices(len(group), len(group), 1).unbind()])
    return float(torch.cat(distances).mean()) if distances else float("nan")


def near_copies(clips: object, references: object, threshold_db: float = NEAR_COPY_DB) -> float:
    """Fraction of clips within ``threshold_db`` SI-SDR of any reference clip.

    SI-SDR of a clip against a reference is ``10 log10(r^2 / (1 - r^2))`` with
    ``r`` their correlation (both mean-removed), so the best reference is found
    with one matrix product.

    Parameters
    ----------
    clips : array-like of shape (n, samples)
    references : array-like of shape (m, samples)
        The training clips (at least as long as ``clips``; cut to their length).
    threshold_db : float, default=10.0

    Returns
    -------
    float
        In [0, 1].
    """
    x = as_batch(clips, name="clips").double()
    ref = as_batch(references, name="references").double()
    if ref.shape[1] < x.shape[1]:
        raise ValueError(
            f"references are {ref.shape[1]} samples long, shorter than the clips' {x.shape[1]}"
        )
    ref = ref[:, : x.shape[1]]

    def unit(a: torch.Tensor) -> torch.Tensor:
        a = a - a.mean(1, keepdim=True)
        return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)

    r2 = ((unit(x) @ unit(ref).T) ** 2).max(1).values.clamp(max=1 - 1e-12)
    si_sdr = 10 * torch.log10(r2.clamp_min(1e-20) / (1 - r2))
    return float((si_sdr >= threshold_db).double().mean())


def codec_reconstructions(model: Any, clips: object, batch_size: int = 8) -> np.ndarray:
    """``clips`` encoded, snapped to the codebook and decoded at ``model``'s level.

    Parameters
    ----------
    model : ImageToMusic
        A fitted model (its ``codec_`` and ``level_`` are used).
    clips : array-like of shape (n, samples)
    batch_size : int, default=8

    Returns
    -------
    numpy.ndarray of shape (n, samples), float32
    """
    batch = as_batch(clips, name="clips").float()
    codec, level, out = model.codec_, model.level_, []
    with torch.inference_mode():
        for chunk in batch.split(batch_size):
            codes = codec.quantize(codec.transform(chunk.to(codec.device_), level=level), level)[0]
            out.append(codec.decode(codes, level=level)[..., : batch.shape[1]].float().cpu())
    return torch.cat(out).numpy()


def _music(clips: np.ndarray, notes: list | None = None) -> dict[str, float]:
    from conchshell.evaluation.transcription import music_measure

    rows = music_measure(clips, notes=notes)
    return {
        "music_fraction": float(np.mean([r["is_music"] for r in rows])),
        "clean_music_fraction": float(np.mean([r["is_clean_music"] for r in rows])),
        "onsets_per_second": float(np.mean([r["onsets_per_second"] for r in rows])),
        "note_coverage": float(np.mean([r["note_coverage"] for r in rows])),
        "spectral_flatness": float(np.mean([r["spectral_flatness"] for r in rows])),
        "band_flatness": float(np.mean([r["band_flatness"] for r in rows])),
    }


def music_report(
    model: Any,
    train: Any,
    val: Any,
    generated: np.ndarray | None = None,
    generated_true: np.ndarray | None = None,
    *,
    music: bool = True,
    notes: dict[str, list] | None = None,
) -> dict[str, float]:
    """Issue 19's figures for ``model`` on ``val`` (see the module docs).

    Parameters
    ----------
    model : ImageToMusic
        A fitted model.
    train, val : PairDataset
        The training split (the judges and the near-copy references come from
        its distinct clips) and the split to generate for.
    generated : numpy.ndarray of shape (len(val), samples), optional
        Clips already generated for ``val``'s images end to end; generated here otherwise.
    generated_true : numpy.ndarray, optional
        The same with the true categories; generated here otherwise.
    music : bool, default=True
        Run the transcriber (the slowest part: about 1 s per clip on two cores).
    notes : dict, optional
        ``{"generated": ..., "real": ...}``: the notes of ``generated_true`` and
        of ``val``'s clips as :func:`~conchshell.evaluation.transcription.transcribe`
        returns them, when the caller has them already; transcribed here otherwise.

    Returns
    -------
    dict of str to float
        ``music_fraction``, ``real_music_fraction``, ``relevance_accuracy``
        (codec-matched judge, true categories), ``relevance_accuracy_end_to_end``,
        ``relevance_accuracy_real_judge``, ``codec_ceiling_relevance`` (the
        judge on the codec's reconstructions of the real val clips),
        ``real_val_relevance_accuracy``, ``descriptor_agreement``,
        ``variety`` and ``real_variety`` (within-category log-mel distance),
        ``variety_ratio``, ``near_copy_fraction``, ``real_near_copy_fraction``,
        ``image_accuracy``, ``codec_band_flatness`` (of the codec's
        reconstructions of the real val clips), and the music fraction, clean
        music fraction, onsets per second, note coverage, flatness and band
        flatness of generated and real clips.
    """
    from conchshell.evaluation import (
        DescriptorProfile,
        RelevanceClassifier,
        band_flatness,
        real_clips,
    )

    waves, cats, _ = real_clips(train)
    truth = np.asarray(val.category_ids)
    paths = [str(p) for p in val.image_paths]
    n = model._n_samples
    if generated is None:
        generated = model.predict(paths)
    if generated_true is None:
        generated_true = model.predict(paths, categories=truth)
    reference = val.stack_audio().numpy()[:, :n]
    reconstructed = codec_reconstructions(model, reference)
    codec_judge = RelevanceClassifier().fit(codec_reconstructions(model, waves[:, :n]), cats)
    real_judge = RelevanceClassifier().fit(waves, cats)
    profile = DescriptorProfile().fit(waves, cats)
    predicted = np.asarray(model.predict_categories(paths))
    variety = within_category_distance(generated_true, truth)
    real_variety = within_category_distance(reference, truth)
    out = {
        "relevance_accuracy": float(codec_judge.score(generated_true, truth)),
        "relevance_accuracy_end_to_end": float(codec_judge.score(generated, truth)),
        "relevance_accuracy_real_judge": float(real_judge.score(generated_true, truth)),
        "codec_ceiling_relevance": float(codec_judge.score(reconstructed, truth)),
        # What any generator's clips can reach through this codec (no transcription needed).
        "codec_band_flatness": float(np.mean([band_flatness(c) for c in reconstructed])),
        "real_val_relevance_accuracy": float(real_judge.score(reference, truth)),
        "relevance_chance": 1.0 / len(train.categories),
        "descriptor_agreement": float(profile.score(generated_true, truth)),
        "real_descriptor_agreement": float(profile.score(reference, truth)),
        "variety": variety,
        "real_variety": real_variety,
        "variety_ratio": variety / real_variety,
        "near_copy_fraction": near_copies(generated_true, waves),
        "real_near_copy_fraction": near_copies(reference, waves),
        "image_accuracy": float(np.mean(predicted == truth)),
    }
    if music:
        notes = notes or {}
        out.update(_music(generated_true, notes.get("generated")))
        out.update({f"real_{k}": v for k, v in _music(reference, notes.get("real")).items()})
    return out
