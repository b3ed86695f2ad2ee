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

These three pass a hiss with a beat in it. Basic Pitch finds "notes" in the
strong low partials and onsets of such a clip, and the whole-band flatness
stays low because the low register carries most of the power. A fourth cue
tells them apart:

- **band flatness**: the median over frames of the flatness of the power
  spectrum between 1 and 4 kHz (:data:`TONAL_BAND`), where a piano's upper
  partials stand as lines above whatever noise floor the clip has.

Measured on the stand-in dataset (``bench/band_flatness.py``,
docs/evaluation.md): the 120 real training clips 0.001-0.029, their Deep
reconstructions by the small shipped codec 0.020-0.063 (it adds a floor of
hiss), the shipped generator's val clips 0.077-0.174, white noise 0.56.
A clip is **clean music** when it is music and its band flatness is at most
:data:`MAX_BAND_FLATNESS` (0.05).

The notes themselves are data: :func:`transcribe` gives one ``(n_notes, 4)``
array per clip (onset, offset, pitch, velocity), :func:`note_summary` their
notes per second and pitch range per category, and :func:`write_midi` a
standard MIDI file of them (:func:`notes_to_midi` the ``pretty_midi`` object),
which a sequencer or a DAW opens for editing. On the stand-in dataset's 24
real val clips, rendered from their scores, the MIDI file holds 85.7 % of the
score's notes (same pitch, onset within 50 ms; ``tests/test_midi.py``).

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
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import librosa
import numpy as np

from conchshell.evaluation._audio import as_batch, check_sample_rate
from conchshell.levels import CLIP_SECONDS, SAMPLE_RATE

if TYPE_CHECKING:
    import pretty_midi

__all__ = [
    "DEFAULT_TEMPO",
    "FLATNESS_HOP_LENGTH",
    "FLATNESS_N_FFT",
    "FRAME_SECONDS",
    "MAX_BAND_FLATNESS",
    "MAX_SPECTRAL_FLATNESS",
    "MIDI_RESOLUTION",
    "MIN_NOTE_COVERAGE",
    "NOTE_COLUMNS",
    "ONSET_RATE_RANGE",
    "TEMPO_RANGE",
    "TONAL_BAND",
    "band_flatness",
    "check_notes",
    "check_transcriber",
    "music_fraction",
    "music_measure",
    "note_summary",
    "notes_to_midi",
    "transcribe",
    "write_midi",
]

logger = logging.getLogger(__name__)

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
#: Frequency band, in Hz, of the band flatness (piano partials above any noise floor).
TONAL_BAND: tuple[float, float] = (1000.0, 4000.0)
#: Largest median band flatness for a music clip to be clean music.
MAX_BAND_FLATNESS = 0.05
#: FFT size and hop, in samples at the clip's own rate, of the flatness frames
#: (librosa's defaults: 128 ms and 32 ms at 16 kHz, Hann window, power spectrum).
FLATNESS_N_FFT = 2048
FLATNESS_HOP_LENGTH = 512
#: Ticks per quarter note in the MIDI files :func:`write_midi` writes (about 1 ms at 120 BPM).
MIDI_RESOLUTION = 480
#: Tempo, in BPM, written when none is given and there is no clip to estimate it from
#: (Basic Pitch's own ``midi_tempo``).
DEFAULT_TEMPO = 120.0
#: Range of tempi, in BPM, a MIDI file can be given here.
TEMPO_RANGE: tuple[float, float] = (4.0, 1000.0)

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


def _magnitude(clip: np.ndarray) -> np.ndarray:
    """The flatness frames' magnitude spectrogram (librosa's defaults: centred, Hann)."""
    return np.abs(librosa.stft(clip, n_fft=FLATNESS_N_FFT, hop_length=FLATNESS_HOP_LENGTH))


def _spectral_flatness(magnitude: np.ndarray) -> float:
    """Mean spectral flatness over the frames of ``magnitude`` (power spectrum)."""
    return float(np.mean(librosa.feature.spectral_flatness(S=magnitude)))


def _band_flatness(magnitude: np.ndarray, sample_rate: int) -> float:
    """Median over frames of the power spectrum's flatness within :data:`TONAL_BAND`."""
    low, high = TONAL_BAND
    if high > sample_rate / 2:
        raise ValueError(f"band flatness needs a rate above {2 * high:g} Hz, got {sample_rate}")
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=FLATNESS_N_FFT)
    power = (magnitude[(freqs >= low) & (freqs < high)] ** 2).astype(np.float64)
    band = np.maximum(power, 1e-10)
    return float(np.median(np.exp(np.log(band).mean(axis=0)) / band.mean(axis=0)))


def band_flatness(clip: object, sample_rate: int = SAMPLE_RATE) -> float:
    """Median over frames of the spectral flatness within :data:`TONAL_BAND`.

    The frames are the flatness frames (:data:`FLATNESS_N_FFT` samples every
    :data:`FLATNESS_HOP_LENGTH`, centred, Hann window); the power is floored
    at 1e-10, so a silent frame scores 1, and the median keeps the silences
    between phrases from deciding. Tonal sound is near 0, white noise near 0.56.

    Parameters
    ----------
    clip : array-like of shape (samples,)
        One mono clip.
    sample_rate : int, default=16000
        Its rate in Hz; the band must lie below half of it.

    Returns
    -------
    float
        In (0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> round(band_flatness(np.sin(2 * np.pi * 440 * 5 * t)), 3) < 0.01  # a pure partial
    True
    """
    sample_rate = check_sample_rate(sample_rate)
    wave = np.asarray(clip, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"clip must be one mono clip (samples,), got shape {wave.shape}")
    return _band_flatness(_magnitude(wave), sample_rate)


def music_measure(
    clips: object, sample_rate: int = SAMPLE_RATE, notes: Sequence[object] | None = None
) -> list[dict[str, Any]]:
    """Per clip, the transcription cues and whether they say "piano music".

    Parameters
    ----------
    clips : array-like or torch.Tensor
        One mono clip ``(samples,)`` or a batch ``(n, samples)``.
    sample_rate : int, default=16000
        Rate of ``clips`` in Hz.
    notes : sequence of array-like of shape (n_notes, 4), optional
        The clips' notes as :func:`transcribe` returns them, when the caller
        already has them (the transcriber is the slow part); transcribed here
        otherwise.

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
        - ``band_flatness`` (float): :func:`band_flatness`;
        - ``n_notes`` (int): transcribed notes;
        - ``is_music`` (bool): coverage >= :data:`MIN_NOTE_COVERAGE`, onsets
          per second within :data:`ONSET_RATE_RANGE` (inclusive) and flatness
          <= :data:`MAX_SPECTRAL_FLATNESS`;
        - ``is_clean_music`` (bool): ``is_music`` and band flatness <=
          :data:`MAX_BAND_FLATNESS`.

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
    if notes is None:
        notes = transcribe(batch, sample_rate)
    elif len(notes) != batch.shape[0]:
        raise ValueError(f"notes has {len(notes)} entries for {batch.shape[0]} clips")
    for clip, found in zip(batch, notes, strict=True):
        found = np.asarray(found)
        coverage = _note_coverage(found, seconds)
        rate = found.shape[0] / seconds
        # One spectrogram for both flatness figures.
        magnitude = _magnitude(clip)
        flatness = _spectral_flatness(magnitude)
        band = _band_flatness(magnitude, sample_rate)
        is_music = bool(
            coverage >= MIN_NOTE_COVERAGE
            and low <= rate <= high
            and flatness <= MAX_SPECTRAL_FLATNESS
        )
        results.append(
            {
                "note_coverage": coverage,
                "onsets_per_second": float(rate),
                "spectral_flatness": flatness,
                "band_flatness": band,
                "n_notes": int(found.shape[0]),
                "is_music": is_music,
                "is_clean_music": is_music and band <= MAX_BAND_FLATNESS,
            }
        )
    return results


def music_fraction(clips: object, sample_rate: int = SAMPLE_RATE, *, clean: bool = False) -> float:
    """Fraction of clips that :func:`music_measure` judges to be piano music.

    Parameters
    ----------
    clips : array-like or torch.Tensor
        One mono clip ``(samples,)`` or a batch ``(n, samples)``.
    sample_rate : int, default=16000
        Rate of ``clips`` in Hz.
    clean : bool, default=False
        Count clean music only (``is_clean_music``: also the band flatness).

    Returns
    -------
    float
        In [0, 1].
    """
    measures = music_measure(clips, sample_rate)
    key = "is_clean_music" if clean else "is_music"
    return float(np.mean([m[key] for m in measures]))


# ----------------------------------------------------------------------------- note arrays
def check_notes(notes: object, name: str = "notes") -> np.ndarray:
    """Check a note array as :func:`transcribe` returns it, and return it as float64.

    Parameters
    ----------
    notes : array-like of shape (n_notes, 4)
        Columns of :data:`NOTE_COLUMNS`: onset and offset in seconds, MIDI
        pitch, velocity. ``(0, 4)`` is a clip without notes.
    name : str, default="notes"
        How the array is called in error messages.

    Returns
    -------
    numpy.ndarray of shape (n_notes, 4), float64

    Raises
    ------
    TypeError
        When ``notes`` is not numeric.
    ValueError
        When the shape is not ``(n_notes, 4)``, or a row has a non-finite
        value, a negative onset, an offset not after its onset, a pitch that
        is not an integer in 0-127 or a velocity outside 0-127; the message
        gives the row.
    """
    if hasattr(notes, "detach"):  # a torch tensor, perhaps on a GPU or needing grad
        notes = notes.detach().cpu().numpy()
    try:
        arr = np.array(notes, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a numeric array of shape (n_notes, 4), got {type(notes).__name__}: "
            f"{notes!r:.80}"
        ) from err
    if arr.ndim != 2 or arr.shape[1] != len(NOTE_COLUMNS):
        raise ValueError(
            f"{name} must have shape (n_notes, 4) with columns {', '.join(NOTE_COLUMNS)}; "
            f"got shape {arr.shape}"
        )
    onset, offset, pitch, velocity = arr.T
    problems = (
        (~np.isfinite(arr).all(axis=1), "has a NaN or infinite value"),
        (onset < 0, "starts before 0 s"),
        (offset <= onset, "must end after it starts (offset > onset)"),
        (
            (pitch != np.round(pitch)) | (pitch < 0) | (pitch > 127),
            "pitch must be an integer 0-127",
        ),
        ((velocity < 0) | (velocity > 127), "velocity must lie in 0-127"),
    )
    with np.errstate(invalid="ignore"):
        for bad, what in problems:
            if np.any(bad):
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name}[{row}] = {arr[row].tolist()} {what}")
    return arr


def note_summary(
    notes: Sequence[object],
    categories: Sequence[object],
    seconds: float | Sequence[float] = CLIP_SECONDS,
) -> dict[str, dict[str, Any]]:
    """Notes per second and pitch range of the clips of each category.

    Parameters
    ----------
    notes : sequence of array-like of shape (n_notes, 4)
        One note array per clip, as :func:`transcribe` returns them.
    categories : sequence of str or int
        The category of each clip.
    seconds : float or sequence of float, default=8.0
        The length of every clip, or of each clip, in seconds.

    Returns
    -------
    dict of str to dict
        Keyed by category (as ``str``, in order of first appearance), each a
        dict of

        - ``n_clips`` (int) and ``n_notes`` (int): clips and notes in the category;
        - ``notes_per_second`` (float): its notes over its clips' total length;
        - ``pitch_low``, ``pitch_high`` (int or None): its lowest and highest
          MIDI pitch, None without notes;
        - ``pitch_range`` (int or None): ``pitch_high - pitch_low`` in semitones.

        Plain Python numbers, ready for ``json.dump``.

    Raises
    ------
    TypeError
        When ``seconds`` or a note array is not numeric.
    ValueError
        When the lengths of ``notes``, ``categories`` and ``seconds`` differ,
        a length is not a positive finite number, or a note array is invalid
        (see :func:`check_notes`).

    Examples
    --------
    >>> import numpy as np
    >>> calm = np.array([[0.0, 1.0, 60, 80], [1.0, 2.0, 67, 80]])
    >>> busy = np.array([[0.0, 0.5, 48, 90], [0.5, 1.0, 72, 90], [1.0, 1.5, 84, 90]])
    >>> summary = note_summary([calm, busy], ["ocean", "city"], seconds=2.0)
    >>> summary["city"]["notes_per_second"], summary["city"]["pitch_range"]
    (1.5, 36)
    >>> summary["ocean"]["pitch_low"], summary["ocean"]["pitch_high"]
    (60, 67)
    """
    arrays = [check_notes(n, name=f"notes[{i}]") for i, n in enumerate(notes)]
    labels = list(categories)
    if len(labels) != len(arrays):
        raise ValueError(f"{len(labels)} categories given for {len(arrays)} note arrays")
    try:
        lengths = np.asarray(seconds, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"seconds must be a number or one per clip, got {seconds!r}") from err
    if lengths.ndim > 1 or (lengths.ndim == 1 and lengths.shape[0] != len(arrays)):
        raise ValueError(f"{lengths.size} lengths given for {len(arrays)} clips")
    lengths = np.broadcast_to(lengths, (len(arrays),))
    if not np.all(np.isfinite(lengths) & (lengths > 0)):
        raise ValueError(f"clip lengths must be positive seconds, got {seconds!r}")
    grouped: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        grouped.setdefault(str(label), []).append(i)
    out: dict[str, dict[str, Any]] = {}
    for label, members in grouped.items():
        stacked = np.concatenate([arrays[i] for i in members])
        pitches = stacked[:, 2]
        low = int(pitches.min()) if pitches.size else None
        high = int(pitches.max()) if pitches.size else None
        out[label] = {
            "n_clips": len(members),
            "n_notes": int(stacked.shape[0]),
            "notes_per_second": float(stacked.shape[0] / lengths[members].sum()),
            "pitch_low": low,
            "pitch_high": high,
            "pitch_range": None if low is None else high - low,
        }
    return out


# ----------------------------------------------------------------------------- MIDI
@functools.cache
def _pretty_midi() -> ModuleType:
    try:
        import pretty_midi
    except ImportError as err:
        raise _missing("pretty_midi", err) from err
    return pretty_midi


def check_transcriber(*, midi: bool = False) -> None:
    """Check that :func:`transcribe` (and, with ``midi``, :func:`write_midi`) can run.

    Callers that transcribe after long work (generating clips, a gallery)
    call it first, so a missing package stops them before that work.

    Parameters
    ----------
    midi : bool, default=False
        Also check ``pretty_midi``, which writing MIDI files needs.

    Raises
    ------
    ImportError
        If ``onnxruntime``, ``basic-pitch`` (or a module its inference code
        imports) or, with ``midi``, ``pretty_midi`` is missing; the message
        gives the install command.
    FileNotFoundError
        If the installed ``basic-pitch`` lacks its ONNX model.
    """
    _session()
    if midi:
        _pretty_midi()


def _check_tempo(tempo: object) -> float:
    low, high = TEMPO_RANGE
    if isinstance(tempo, bool) or not isinstance(tempo, int | float | np.integer | np.floating):
        raise TypeError(f"tempo must be a number of beats per minute, got {tempo!r}")
    if not low <= float(tempo) <= high:
        raise ValueError(f"tempo must lie in [{low:g}, {high:g}] BPM, got {tempo!r}")
    return float(tempo)


def notes_to_midi(
    notes: object,
    *,
    tempo: float = DEFAULT_TEMPO,
    program: int = 0,
    name: str = "piano",
) -> pretty_midi.PrettyMIDI:
    """A one-track MIDI score of a note array.

    Parameters
    ----------
    notes : array-like of shape (n_notes, 4)
        Onset and offset in seconds, MIDI pitch and velocity per note (what
        :func:`transcribe` gives; :func:`check_notes` says what is accepted).
    tempo : float, default=120.0
        Tempo in BPM of the file's tempo event. Notes keep their times in
        seconds whatever the tempo; it only sets where the beats and bars fall
        in a sequencer.
    program : int, default=0
        General MIDI program of the track (0 is the acoustic grand piano).
    name : str, default="piano"
        The track's name.

    Returns
    -------
    pretty_midi.PrettyMIDI
        :data:`MIDI_RESOLUTION` ticks per beat, one instrument. A velocity
        below 1 is written as 1 (a note-on of velocity 0 means note-off), and a
        note shorter than one tick lasts one tick.

    Raises
    ------
    ImportError
        If ``pretty_midi`` is missing; the message gives the install command.
    TypeError, ValueError
        On an invalid note array, tempo or program, naming it.
    """
    arr = check_notes(notes)
    tempo = _check_tempo(tempo)
    if isinstance(program, bool) or not isinstance(program, int | np.integer):
        raise TypeError(f"program must be an int 0-127, got {program!r}")
    if not 0 <= program <= 127:
        raise ValueError(f"program must lie in 0-127, got {program!r}")
    pm = _pretty_midi()
    midi = pm.PrettyMIDI(resolution=MIDI_RESOLUTION, initial_tempo=tempo)
    track = pm.Instrument(program=int(program), is_drum=False, name=str(name))
    for onset, offset, pitch, velocity in arr:
        start_tick = midi.time_to_tick(onset)
        end = (
            offset if midi.time_to_tick(offset) > start_tick else midi.tick_to_time(start_tick + 1)
        )
        track.notes.append(
            pm.Note(velocity=max(1, round(velocity)), pitch=int(pitch), start=float(onset), end=end)
        )
    midi.instruments.append(track)
    return midi


def write_midi(
    source: object,
    path: str | os.PathLike[str],
    *,
    sample_rate: int = SAMPLE_RATE,
    tempo: float | None = None,
    program: int = 0,
) -> Path:
    """Write a standard MIDI file of a note array, or of a clip's transcription.

    Parameters
    ----------
    source : array-like or torch.Tensor
        A note array ``(n_notes, 4)`` as :func:`transcribe` returns, or one
        mono clip ``(samples,)``, which is transcribed first.
    path : str or os.PathLike
        The ``.mid`` file to write, atomically (a complete file or none); its
        folder must exist. An existing file is replaced.
    sample_rate : int, default=16000
        Rate of a clip in Hz (unused for notes).
    tempo : float, optional
        Tempo in BPM of the file's tempo event. By default it is estimated
        from the clip (:func:`~conchshell.evaluation.estimate_tempo`), or
        :data:`DEFAULT_TEMPO` for notes, a silent clip or one shorter than
        half a second.
    program : int, default=0
        General MIDI program (0 is the acoustic grand piano).

    Returns
    -------
    Path
        The file written: format 1, a tempo track and one piano track, with
        the onsets, offsets, pitches and velocities of the notes, to within a
        tick (:data:`MIDI_RESOLUTION` per beat). Without notes the piano track
        is empty and a warning goes to the ``"conchshell"`` logger.

    Raises
    ------
    ImportError
        If ``pretty_midi``, ``onnxruntime`` or ``basic-pitch`` is missing (the
        last two only for a clip); the message gives the install command.
    TypeError
        When ``path`` is bytes, or ``tempo`` or ``program`` is not a number.
    ValueError
        When ``source`` is neither a note array nor a mono clip (its shape is
        given), or holds invalid notes or samples.
    OSError
        When the file cannot be written, naming it.

    Examples
    --------
    >>> import numpy as np
    >>> notes = np.array([[0.0, 0.5, 60, 90], [0.5, 1.0, 64, 90]])
    >>> write_midi(notes, "two_notes.mid")  # doctest: +SKIP
    PosixPath('two_notes.mid')
    """
    from conchshell._validation import check_path
    from conchshell.io import atomic_write

    path = check_path(path, "path")
    if hasattr(source, "detach"):
        source = source.detach().cpu().numpy()
    shape = np.shape(source)
    if len(shape) == 2 and shape[1] == len(NOTE_COLUMNS):
        notes = check_notes(source)
        tempo = DEFAULT_TEMPO if tempo is None else tempo
    elif len(shape) == 1:
        sample_rate = check_sample_rate(sample_rate)
        (notes,) = transcribe(source, sample_rate)
        if tempo is None:
            tempo = _estimated_tempo(np.asarray(source, dtype=np.float32), sample_rate)
    else:
        raise ValueError(
            f"source must be a note array (n_notes, 4) or one mono clip (samples,), "
            f"got shape {shape}"
        )
    midi = notes_to_midi(notes, tempo=tempo, program=program)
    with atomic_write(path) as handle:
        midi.write(handle)
    if notes.shape[0] == 0:
        logger.warning(
            "no notes to write: %s is an empty MIDI file (a piano track, no notes)", path
        )
    return path


def _estimated_tempo(clip: np.ndarray, sample_rate: int) -> float:
    """The clip's tempo in BPM, rounded to 0.1, or :data:`DEFAULT_TEMPO` when it has none."""
    from conchshell.evaluation.descriptors import estimate_tempo

    if clip.shape[0] < sample_rate // 2 or not np.any(clip):
        return DEFAULT_TEMPO
    bpm = float(estimate_tempo(clip, sample_rate=sample_rate)[0])
    low, high = TEMPO_RANGE
    return round(bpm, 1) if np.isfinite(bpm) and low <= bpm <= high else DEFAULT_TEMPO
