"""Transcription-based "is this piano music" measure.

A clip is transcribed to notes with Spotify's Basic Pitch (Apache-2.0; its
ONNX model ships inside the ``basic-pitch`` wheel and runs through
``onnxruntime``, no TensorFlow), and judged on three cues:

- **note coverage**: the fraction of 20 ms frames in which at least one
  transcribed note sounds (a frame counts when its centre lies in
  ``[onset, offset)`` of a note); music keeps notes sounding most of the time;
- **onsets per second**: transcribed notes per second of audio (each note has
  one onset, so a three-note chord is three onsets); a piano piece strikes a
  few to a dozen notes a second;
- **spectral flatness**: Wiener entropy of the power spectrum (geometric over
  arithmetic mean), averaged over frames; tonal sound is near 0, white noise
  near 0.56.

A clip is music when all three hold: coverage >= 0.5, 1 <= onsets/s <= 15
and flatness <= 0.04. On the stand-in dataset's real piano renders flatness
is at most 0.01 and white noise sits above 0.5.

Installing: ``pip install 'conchshell[transcription]'`` (onnxruntime and the
modules Basic Pitch's inference code imports), then
``pip install --no-deps 'basic-pitch==0.4.0'``: the wheel's own dependency
list asks for TensorFlow on Linux with Python 3.11, which the ONNX path never
imports. ``make setup`` does both.

Examples
--------
>>> import numpy as np
>>> from conchshell.evaluation import music_measure
>>> noise = np.random.default_rng(0).normal(scale=0.1, size=16000 * 2)
>>> music_measure(noise)[0]["is_music"]  # doctest: +SKIP
False
"""

from __future__ import annotations

import functools
import logging
import math
from importlib import resources
from types import ModuleType
from typing import Any

import librosa
import numpy as np

from conchshell.evaluation._audio import as_batch, check_sample_rate
from conchshell.levels import SAMPLE_RATE

__all__ = [
    "FLATNESS_HOP_LENGTH",
    "FLATNESS_N_FFT",
    "FRAME_SECONDS",
    "MAX_SPECTRAL_FLATNESS",
    "MIN_NOTE_COVERAGE",
    "NOTE_COLUMNS",
    "ONSET_RATE_RANGE",
    "music_fraction",
    "music_measure",
    "transcribe",
]

#: Columns of the arrays :func:`transcribe` returns.
NOTE_COLUMNS: tuple[str, ...] = ("onset", "offset", "pitch", "velocity")
#: Frame length, in seconds, of the note-coverage grid.
FRAME_SECONDS = 0.02
#: Smallest fraction of frames with a sounding note for a clip to be music.
MIN_NOTE_COVERAGE = 0.5
#: Inclusive range of note onsets per second for a clip to be music.
ONSET_RATE_RANGE: tuple[float, float] = (1.0, 15.0)
#: Largest mean spectral flatness for a clip to be music.
MAX_SPECTRAL_FLATNESS = 0.04
#: FFT size and hop, in samples at the clip's own rate, of the flatness frames
#: (librosa's defaults: 128 ms and 32 ms at 16 kHz, Hann window, power spectrum).
FLATNESS_N_FFT = 2048
FLATNESS_HOP_LENGTH = 512

_PACKAGE = "basic_pitch"
_MODEL_FILE = ("saved_models", "icassp_2022", "nmp.onnx")
# Basic Pitch's defaults in basic_pitch.inference.predict.
_ONSET_THRESHOLD = 0.5
_FRAME_THRESHOLD = 0.3
_MIN_NOTE_MS = 127.70
# Frames each model window shares with the next (basic_pitch.inference.run_inference).
_OVERLAP_FRAMES = 30
# The ONNX graph's tensor names (basic_pitch.inference.Model.predict).
_INPUT_NAME = "serving_default_input_2:0"
_OUTPUT_NAMES = {
    "note": "StatefulPartitionedCall:1",
    "onset": "StatefulPartitionedCall:2",
    "contour": "StatefulPartitionedCall:0",
}
_INSTALL_HINT = (
    "pip install 'conchshell[transcription]' && pip install --no-deps 'basic-pitch==0.4.0' "
    "(or `make setup`)"
)


def _missing(name: str, err: ImportError) -> ImportError:
    return ImportError(
        f"transcription needs the {name!r} module, which is not installed; install with: "
        f"{_INSTALL_HINT}"
    )


@functools.cache
def _basic_pitch() -> tuple[ModuleType, ModuleType, ModuleType]:
    """Basic Pitch's constants, inference and note-creation modules.

    ``basic_pitch/__init__.py`` logs a root-logger warning for each backend it
    does not find (TensorFlow, CoreML, TFLite); only ONNX is used here, so
    those warnings are muted for the duration of the import.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise _missing("onnxruntime", err) from err
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        from basic_pitch import constants, inference, note_creation
    except ImportError as err:
        raise _missing(err.name or _PACKAGE, err) from err
    finally:
        logging.disable(previous)
    return constants, inference, note_creation


@functools.cache
def _session() -> Any:
    """The ONNX Runtime session of Basic Pitch's ICASSP 2022 model, loaded once."""
    _basic_pitch()
    import onnxruntime

    model = resources.files(_PACKAGE).joinpath(*_MODEL_FILE)
    with resources.as_file(model) as path:
        if not path.is_file():
            raise FileNotFoundError(
                f"the Basic Pitch ONNX model is missing from the installed package ({path}); "
                f"reinstall it: {_INSTALL_HINT}"
            )
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _model_output(wave: np.ndarray) -> dict[str, np.ndarray]:
    """Frame, onset and contour activations of one clip at the model's rate.

    Windows, pads and unwraps exactly as ``basic_pitch.inference.run_inference``
    does, so the frame times of ``note_creation.model_frames_to_time`` apply.
    """
    constants, inference, _ = _basic_pitch()
    overlap = _OVERLAP_FRAMES * constants.FFT_HOP
    hop = constants.AUDIO_N_SAMPLES - overlap
    padded = np.concatenate([np.zeros(overlap // 2, dtype=np.float32), wave])
    windows = np.stack([w for w, _ in inference.window_audio_file(padded, hop)])
    outputs = _session().run(list(_OUTPUT_NAMES.values()), {_INPUT_NAME: windows})
    return {
        key: inference.unwrap_output(out, wave.shape[0], _OVERLAP_FRAMES)
        for key, out in zip(_OUTPUT_NAMES, outputs, strict=True)
    }


def _notes_of(wave: np.ndarray, onset_threshold: float, frame_threshold: float) -> np.ndarray:
    """Notes ``(n, 4)`` of one clip already resampled to the model's rate."""
    constants, _, note_creation = _basic_pitch()
    empty = np.zeros((0, len(NOTE_COLUMNS)))
    if wave.shape[0] == 0 or not np.any(wave):
        return empty
    output = _model_output(wave)
    frames, onsets = output["note"], output["onset"]
    if frames.shape[0] < 2 or float(np.max(frames)) < frame_threshold:
        return empty  # nothing can pass the frame threshold (and 0/0 is avoided below)
    fps = constants.AUDIO_SAMPLE_RATE / constants.FFT_HOP
    min_note_len = round(_MIN_NOTE_MS / 1000 * fps)
    with np.errstate(invalid="ignore", divide="ignore"):
        # get_infered_onsets rescales by the largest frame rise, 0 for a flat activation
        events = note_creation.output_to_notes_polyphonic(
            frames,
            onsets,
            onset_thresh=onset_threshold,
            frame_thresh=frame_threshold,
            min_note_len=min_note_len,
            infer_onsets=True,
            max_freq=None,
            min_freq=None,
            melodia_trick=True,
        )
    if not events:
        return empty
    times = note_creation.model_frames_to_time(frames.shape[0])
    notes = np.array(
        [
            (
                times[start],
                times[end],
                pitch,
                min(127, max(0, round(127 * float(amplitude)))),
            )
            for start, end, pitch, amplitude in events
        ],
        dtype=np.float64,
    )
    notes[:, 0] = np.maximum(notes[:, 0], 0.0)
    order = np.lexsort((notes[:, 2], notes[:, 0]))
    return notes[order]


def transcribe(
    clips: object,
    sample_rate: int = SAMPLE_RATE,
    *,
    onset_threshold: float = _ONSET_THRESHOLD,
    frame_threshold: float = _FRAME_THRESHOLD,
) -> list[np.ndarray]:
    """Transcribe piano clips to notes with Basic Pitch's ONNX model.

    Each clip is resampled to the model's 22.05 kHz with soxr (``soxr_hq``,
    what Basic Pitch's own ``librosa.load`` uses), cut into the model's 2 s
    windows with 30 frames of overlap, and its frame and onset activations
    decoded by Basic Pitch's ``output_to_notes_polyphonic`` with the settings of
    ``basic_pitch.inference.predict`` (notes of at least 127.7 ms, inferred
    onsets, the melodia trick).

    Parameters
    ----------
    clips : array-like or torch.Tensor
        One mono clip ``(samples,)`` or a batch ``(n, samples)``
        (``(n, 1, samples)`` too), floats in [-1, 1].
    sample_rate : int, default=16000
        Rate of ``clips`` in Hz.
    onset_threshold : float, default=0.5
        Smallest onset activation that starts a note.
    frame_threshold : float, default=0.3
        Smallest frame activation that keeps a note sounding.

    Returns
    -------
    list of numpy.ndarray
        Per clip a float64 array ``(n_notes, 4)`` with the columns of
        :data:`NOTE_COLUMNS`: onset and offset in seconds, MIDI pitch (21-108)
        and velocity (0-127), sorted by onset then pitch. A clip without notes
        gives shape ``(0, 4)``. The velocity is what Basic Pitch writes to
        MIDI, ``round(127 * mean frame activation over the note)``: the
        model's confidence more than how hard the key was struck (a rendered
        melody at MIDI velocity 40 and at 110 both come out near 98).

    Raises
    ------
    ImportError
        If ``onnxruntime`` or ``basic-pitch`` (or a module its inference code
        imports) is missing; the message gives the install command.
    """
    sample_rate = check_sample_rate(sample_rate)
    for name, value in (("onset_threshold", onset_threshold), ("frame_threshold", frame_threshold)):
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    batch = as_batch(clips, name="clips").numpy().astype(np.float32)
    if not np.all(np.isfinite(batch)):
        raise ValueError("clips contain NaN or infinite samples")
    constants, _, _ = _basic_pitch()
    target = constants.AUDIO_SAMPLE_RATE
    out = []
    for clip in batch:
        wave = clip
        if sample_rate != target:
            wave = librosa.resample(clip, orig_sr=sample_rate, target_sr=target, res_type="soxr_hq")
        out.append(
            _notes_of(
                np.ascontiguousarray(wave, dtype=np.float32), onset_threshold, frame_threshold
            )
        )
    return out


def _note_coverage(notes: np.ndarray, seconds: float) -> float:
    """Fraction of 20 ms frames whose centre lies inside at least one note."""
    n_frames = max(1, math.ceil(seconds / FRAME_SECONDS - 1e-9))
    centres = (np.arange(n_frames) + 0.5) * FRAME_SECONDS
    if notes.shape[0] == 0:
        return 0.0
    inside = (centres[:, None] >= notes[None, :, 0]) & (centres[:, None] < notes[None, :, 1])
    return float(np.mean(inside.any(axis=1)))


def _spectral_flatness(clip: np.ndarray) -> float:
    """Mean spectral flatness over librosa's default frames (power spectrum)."""
    flatness = librosa.feature.spectral_flatness(
        y=clip, n_fft=FLATNESS_N_FFT, hop_length=FLATNESS_HOP_LENGTH
    )
    return float(np.mean(flatness))


def music_measure(clips: object, sample_rate: int = SAMPLE_RATE) -> list[dict[str, Any]]:
    """Per clip, the transcription cues and whether they say "piano music".

    Parameters
    ----------
    clips : array-like or torch.Tensor
        One mono clip ``(samples,)`` or a batch ``(n, samples)``.
    sample_rate : int, default=16000
        Rate of ``clips`` in Hz.

    Returns
    -------
    list of dict
        One dict per clip with

        - ``note_coverage`` (float): fraction of 20 ms frames (``ceil(seconds /
          0.02)`` of them) whose centre lies in ``[onset, offset)`` of a note;
        - ``onsets_per_second`` (float): transcribed notes over the clip's
          length in seconds;
        - ``spectral_flatness`` (float): mean of
          ``librosa.feature.spectral_flatness`` over frames of
          :data:`FLATNESS_N_FFT` samples every :data:`FLATNESS_HOP_LENGTH`
          (centred, zero-padded, power spectrum floored at 1e-10, so silence
          scores 1);
        - ``n_notes`` (int): transcribed notes;
        - ``is_music`` (bool): coverage >= :data:`MIN_NOTE_COVERAGE`, onsets
          per second within :data:`ONSET_RATE_RANGE` (inclusive) and flatness
          <= :data:`MAX_SPECTRAL_FLATNESS`.

    Examples
    --------
    >>> import numpy as np
    >>> music_measure(np.zeros(16000))[0]["n_notes"]  # doctest: +SKIP
    0
    """
    sample_rate = check_sample_rate(sample_rate)
    batch = as_batch(clips, name="clips").numpy().astype(np.float32)
    seconds = batch.shape[1] / sample_rate
    low, high = ONSET_RATE_RANGE
    results = []
    for clip, notes in zip(batch, transcribe(batch, sample_rate), strict=True):
        coverage = _note_coverage(notes, seconds)
        rate = notes.shape[0] / seconds
        flatness = _spectral_flatness(clip)
        results.append(
            {
                "note_coverage": coverage,
                "onsets_per_second": float(rate),
                "spectral_flatness": flatness,
                "n_notes": int(notes.shape[0]),
                "is_music": bool(
                    coverage >= MIN_NOTE_COVERAGE
                    and low <= rate <= high
                    and flatness <= MAX_SPECTRAL_FLATNESS
                ),
            }
        )
    return results


def music_fraction(clips: object, sample_rate: int = SAMPLE_RATE) -> float:
    """Fraction of clips that :func:`music_measure` judges to be piano music.

    Parameters
    ----------
    clips : array-like or torch.Tensor
        One mono clip ``(samples,)`` or a batch ``(n, samples)``.
    sample_rate : int, default=16000
        Rate of ``clips`` in Hz.

    Returns
    -------
    float
        In [0, 1].
    """
    measures = music_measure(clips, sample_rate)
    return float(np.mean([m["is_music"] for m in measures]))
