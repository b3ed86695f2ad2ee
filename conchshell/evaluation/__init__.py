"""Music-aware evaluation of generated audio.

PESQ and STOI (in :mod:`conchshell.metrics`) are speech measures that barely
notice what matters in piano, so these sit beside them:

- :func:`multi_resolution_stft_distance`: spectral convergence + log-magnitude
  L1 over three STFT resolutions (lower is better);
- :func:`visqol_music`: ViSQOL v3 audio mode, MOS-LQO 1-5 (``visqol-python``);
- :func:`beat_coverage`, :func:`beat_hit`: onset-based rhythm agreement with the
  paired reference, as in dance-to-music work;
- :func:`describe` and :class:`DescriptorProfile`: tempo, register, loudness and
  mode, compared with the real clips of the image's category;
- :class:`RelevanceClassifier`, :func:`relevance_accuracy`,
  :func:`paired_retrieval`: does the clip sound like its image's category, and
  like its own reference more than the others?
- :func:`transcribe`, :func:`music_measure`, :func:`music_fraction`,
  :func:`band_flatness`: notes
  from Basic Pitch's ONNX model, and whether a clip is piano music at all
  (note coverage, onsets per second, spectral flatness);
- :func:`write_midi`, :func:`notes_to_midi`, :func:`note_summary`: those
  notes as a MIDI file, and their notes per second and pitch range per category.

Each metric is a plain function ``metric(y_true, y_pred, ...)`` on mono 16 kHz
numpy or torch audio, and a scikit-learn scorer through
:func:`make_audio_scorer`; :func:`evaluate_audio` computes them all at once.
:func:`real_clips` takes a dataset's real clips (each piece once) to fit the
classifier and the profile on.

Examples
--------
>>> import numpy as np
>>> from conchshell.evaluation import multi_resolution_stft_distance
>>> t = np.arange(16000) / 16000
>>> clip = np.sin(2 * np.pi * 440 * t)
>>> multi_resolution_stft_distance(clip, clip)
0.0
"""

from conchshell.evaluation.beats import beat_coverage, beat_hit, onset_times
from conchshell.evaluation.clips import real_clips
from conchshell.evaluation.descriptors import (
    DESCRIPTORS,
    DescriptorProfile,
    describe,
    descriptor_agreement,
    descriptor_distance,
    estimate_key,
    estimate_loudness,
    estimate_register,
    estimate_tempo,
)
from conchshell.evaluation.relevance import (
    RelevanceClassifier,
    paired_retrieval,
    relevance_accuracy,
)
from conchshell.evaluation.scorers import METRICS, evaluate_audio, make_audio_scorer
from conchshell.evaluation.stft import multi_resolution_stft_distance
from conchshell.evaluation.transcription import (
    band_flatness,
    check_notes,
    music_fraction,
    music_measure,
    note_summary,
    notes_to_midi,
    transcribe,
    write_midi,
)
from conchshell.evaluation.visqol import visqol_available, visqol_music

__all__ = [
    "DESCRIPTORS",
    "METRICS",
    "DescriptorProfile",
    "RelevanceClassifier",
    "band_flatness",
    "beat_coverage",
    "beat_hit",
    "check_notes",
    "describe",
    "descriptor_agreement",
    "descriptor_distance",
    "estimate_key",
    "estimate_loudness",
    "estimate_register",
    "estimate_tempo",
    "evaluate_audio",
    "make_audio_scorer",
    "multi_resolution_stft_distance",
    "music_fraction",
    "music_measure",
    "note_summary",
    "notes_to_midi",
    "onset_times",
    "paired_retrieval",
    "real_clips",
    "relevance_accuracy",
    "transcribe",
    "visqol_available",
    "visqol_music",
    "write_midi",
]
