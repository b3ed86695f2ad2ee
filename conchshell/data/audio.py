"""Reading, preparing and writing audio clips.

Every clip the library trains on or scores goes through one path: read with
:mod:`soundfile` (WAV, FLAC, OGG/Vorbis, MP3 and anything else libsndfile
reads), downmix to mono, resample to 16 kHz with
:func:`torchaudio.functional.resample`, peak-normalise the whole piece to
0.95, then crop or zero-pad to 8 s. Training draws a random crop and a random
gain in U(0.5, 1); everything else is deterministic (the first 8 s, no gain).

Problems with a file (missing, unreadable, truncated, empty, silent,
non-finite samples) raise an error that names the file and the problem rather
than a traceback from inside libsndfile or torch. Datasets of files run the
same checks on every distinct file when they are built
(:func:`check_audio_files`), so a bad clip is reported before training starts
rather than when an epoch first reads it.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taF

from conchshell._validation import check_path, check_positive_int
from conchshell.io import atomic_write
from conchshell.levels import CLIP_SECONDS, SAMPLE_RATE

__all__ = [
    "MAX_CHANNELS",
    "PEAK",
    "SILENCE_PEAK",
    "check_audio_file",
    "check_audio_files",
    "crop_or_pad",
    "decode_audio",
    "fit_length",
    "load_audio",
    "peak_normalize",
    "prepare_waveform",
    "read_audio",
    "resample",
    "save_audio",
]

#: Peak amplitude every clip is normalised to.
PEAK = 0.95
#: Peaks below this count as silence. One step of 16-bit PCM is 3.05e-5, so
#: any 16-bit file that is not all zeros lies above it.
SILENCE_PEAK = 1e-5
#: More channels than this in an in-memory array almost always means the
#: layout was transposed (samples taken for channels).
MAX_CHANNELS = 64
# Reduced rate ratios above this make torchaudio's sinc kernel huge (44101 ->
# 16000 Hz needs 12 GB); such odd rates go through scipy's polyphase filter.
_MAX_RATIO_TERM = 1000
# Frames decoded at a time by check_audio_file: 256 KiB per channel.
_CHECK_BLOCK = 65536

PathLike = str | os.PathLike


def _n_samples(sample_rate: int, duration: float | None) -> int | None:
    if duration is None:
        return None
    if not isinstance(duration, int | float) or not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds or None, got {duration!r}")
    return round(duration * sample_rate)


def _as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, int | np.integer) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _check_wav_complete(path: Path) -> None:
    """Raise if a RIFF/WAVE file holds less audio data than its header declares.

    libsndfile silently reads what is there, so a download cut short would
    otherwise pass as a shorter piece.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id = f.read(4)
            (chunk_len,) = struct.unpack("<I", f.read(4))
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mark streamed writes that never patched the header.
                if chunk_len in (0, 0xFFFFFFFF):
                    return
                available = size - (pos + 8)
                if available < chunk_len:
                    raise ValueError(
                        f"audio file {str(path)!r} is truncated: its header declares "
                        f"{chunk_len} bytes of audio data but only {available} are present"
                    )
                return
            pos += 8 + chunk_len + (chunk_len & 1)


def read_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as it is stored: all channels, original rate.

    Parameters
    ----------
    path : str or path-like
        Any file libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3, AIFF...).

    Returns
    -------
    wave : numpy.ndarray of shape (channels, samples), float32
        Samples in [-1, 1] for integer formats.
    sample_rate : int
        The file's sample rate in Hz.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file is not audio, is corrupt or truncated, holds no samples
        or holds NaN/Inf samples. The message names the file.
    """
    path = _check_audio_path(path)
    with _decode_errors(path):
        with sf.SoundFile(str(path)) as f:
            declared = f.frames
            rate = int(f.samplerate)
            data = f.read(dtype="float32", always_2d=True)
    _check_frames(path, declared, data.shape[0])
    _check_finite(path, data, 0, rate)
    return np.ascontiguousarray(data.T), rate


def _check_audio_path(path: PathLike) -> Path:
    """The checks that need no decoding: a non-empty file, not a cut-short WAV."""
    path = check_path(path, "audio path")
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"audio path {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"audio file {str(path)!r} is empty (0 bytes)")
    _check_wav_complete(path)
    return path


@contextlib.contextmanager
def _decode_errors(path: Path) -> Iterator[None]:
    """Turn libsndfile's errors into a ValueError naming the file."""
    try:
        yield
    except sf.LibsndfileError as exc:
        raise ValueError(
            f"cannot read audio file {str(path)!r}: {exc.error_string.strip()} "
            "(is it a complete WAV/FLAC/OGG/MP3 file?)"
        ) from exc
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise ValueError(f"cannot read audio file {str(path)!r}: {exc}") from exc


def _check_frames(path: Path, declared: int, readable: int) -> None:
    if 0 < declared and readable < declared:
        raise ValueError(
            f"audio file {str(path)!r} is truncated: {declared} frames declared, "
            f"{readable} readable"
        )
    if readable == 0:
        raise ValueError(f"audio file {str(path)!r} holds no samples (zero-length audio)")


def _check_finite(path: Path, block: np.ndarray, offset: int, rate: int) -> None:
    """Raise, naming the first bad frame, if a (frames, channels) block holds NaN or Inf."""
    finite = np.isfinite(block)
    if not finite.all():
        first = offset + int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(
            f"audio file {str(path)!r} contains NaN or infinite samples (the first at frame "
            f"{first}, {first / rate:.3f} s)"
        )


def check_audio_file(path: PathLike, *, allow_silent: bool = False) -> None:
    """Check that an audio file can be trained on, without keeping its samples.

    The file is decoded block by block (64k frames at a time, so a long piece
    costs little memory) and must pass every check :func:`read_audio` and
    :func:`decode_audio` make: it exists, is not empty, decodes to the end,
    holds samples, all of them finite, and is not silent.

    Parameters
    ----------
    path : str or path-like
    allow_silent : bool, default=False
        Accept a file whose downmixed peak lies below :data:`SILENCE_PEAK`.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it fails a check; the message names the file and the problem.

    Examples
    --------
    >>> check_audio_file("music/calm.wav")  # doctest: +SKIP
    """
    path = _check_audio_path(path)
    readable, peak = 0, 0.0
    with _decode_errors(path):
        with sf.SoundFile(str(path)) as f:
            declared = f.frames
            for block in f.blocks(blocksize=_CHECK_BLOCK, dtype="float32", always_2d=True):
                _check_finite(path, block, readable, f.samplerate)
                mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
                if mono.size:
                    peak = max(peak, float(np.abs(mono).max()))
                readable += block.shape[0]
    _check_frames(path, declared, readable)
    if peak < SILENCE_PEAK and not allow_silent:
        raise ValueError(
            f"audio file {str(path)!r} is silent (peak amplitude {peak:.3g}) and cannot be "
            "peak-normalised"
        )


def check_audio_files(
    paths: Sequence[PathLike],
    *,
    rows: Sequence[int] | None = None,
    row_name: str = "item",
    where: str = "dataset",
    allow_silent: bool = False,
) -> None:
    """Check every distinct audio file of a dataset once (see :func:`check_audio_file`).

    Many items may share one piece of music; each file is decoded once
    however often it is listed. Every file is checked before anything is
    raised, so one error lists all the unusable files (the first five).

    Parameters
    ----------
    paths : sequence of str or path-like
        The audio file of each item.
    rows : sequence of int, optional
        How each item is numbered in the error (a CSV line, a spreadsheet
        row); default its position.
    row_name : str, default="item"
        What a row is called: ``"line"`` gives ``"line 3"`` and ``"lines 3, 9"``.
    where : str, default="dataset"
        The dataset, as the error should name it.
    allow_silent : bool, default=False

    Raises
    ------
    FileNotFoundError
        When a file does not exist.
    ValueError
        Naming ``where``, each unusable file, the rows that use it and the problem.
    """
    if rows is None:
        rows = range(len(paths))
    users: dict[Path, list[int]] = {}
    for path, row in zip(paths, rows, strict=True):
        users.setdefault(Path(path), []).append(int(row))
    problems = []
    for path, numbers in users.items():
        try:
            check_audio_file(path, allow_silent=allow_silent)
        except ValueError as exc:
            numbers = sorted(set(numbers))
            shown = ", ".join(map(str, numbers[:3]))
            more = f" and {len(numbers) - 3} more" if len(numbers) > 3 else ""
            label = f"{row_name}s" if len(numbers) > 1 else row_name
            problems.append(f"{label} {shown}{more}: {exc}")
    if len(problems) == 1:
        raise ValueError(f"{where}, {problems[0]}")
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ValueError(
            f"{where}: {len(problems)} audio files cannot be used: "
            + "; ".join(problems[:5])
            + more
        )


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample along the last axis.

    Uses :func:`torchaudio.functional.resample` (windowed sinc). For odd rates
    whose reduced ratio is large (44101 Hz, say), torchaudio's kernel would
    need gigabytes, so those go through :func:`scipy.signal.resample_poly`.

    Parameters
    ----------
    wave : numpy.ndarray of shape (..., samples)
    orig_rate, new_rate : int
        Rates in Hz.

    Returns
    -------
    numpy.ndarray of shape (..., ceil(samples * new_rate / orig_rate)), float32
    """
    orig_rate = check_positive_int(orig_rate, "orig_rate")
    new_rate = check_positive_int(new_rate, "new_rate")
    if orig_rate == new_rate:
        return np.asarray(wave, dtype=np.float32)
    g = math.gcd(orig_rate, new_rate)
    if max(orig_rate, new_rate) // g > _MAX_RATIO_TERM:
        from scipy.signal import resample_poly

        out = resample_poly(wave, new_rate // g, orig_rate // g, axis=-1)
        return np.asarray(out, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return taF.resample(tensor, orig_rate, new_rate).numpy()


def peak_normalize(
    wave: np.ndarray, peak: float = PEAK, *, name: str = "waveform", allow_silent: bool = False
) -> np.ndarray:
    """Scale ``wave`` so its largest absolute sample equals ``peak``.

    Parameters
    ----------
    wave : numpy.ndarray
    peak : float, default=0.95
    name : str, default="waveform"
        How the input is called in error messages (a file name, usually).
    allow_silent : bool, default=False
        A silent signal (peak below :data:`SILENCE_PEAK`) has no scale to
        normalise. By default that is an error, since a silent training clip
        teaches the model nothing and usually means a broken file; with
        ``allow_silent=True`` it is returned unscaled.

    Returns
    -------
    numpy.ndarray, float32
    """
    current = float(np.max(np.abs(wave))) if wave.size else 0.0
    if current < SILENCE_PEAK:
        if allow_silent:
            return np.asarray(wave, dtype=np.float32)
        raise ValueError(
            f"{name} is silent (peak amplitude {current:.3g}) and cannot be peak-normalised"
        )
    return np.asarray(wave * (peak / current), dtype=np.float32)


def fit_length(audio: np.ndarray | torch.Tensor, n_samples: int) -> np.ndarray | torch.Tensor:
    """Crop or zero-pad the last axis of ``audio`` to ``n_samples``.

    A longer clip keeps its first ``n_samples`` (a view, not a copy); a
    shorter one gets zeros at the end. Other axes are left as they are, so a
    batch ``(n, samples)`` is fitted clip by clip. numpy arrays go through
    :func:`librosa.util.fix_length`, tensors through
    :func:`torch.nn.functional.pad`; either way the result keeps the input's
    type, dtype and device.

    Parameters
    ----------
    audio : numpy.ndarray or torch.Tensor of shape (..., samples)
        One clip or a batch of clips.
    n_samples : int
        The length wanted.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (..., n_samples)

    Examples
    --------
    >>> import numpy as np
    >>> fit_length(np.ones((2, 3)), 5).tolist()
    [[1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0]]
    >>> fit_length(torch.arange(4.0), 2)
    tensor([0., 1.])
    """
    n_samples = check_positive_int(n_samples, "n_samples", allow_zero=True)
    if not isinstance(audio, np.ndarray | torch.Tensor):
        raise TypeError(
            f"audio must be a numpy array or a torch tensor, got {type(audio).__name__}"
        )
    if audio.ndim == 0:
        raise ValueError("audio must have a samples axis, got a scalar")
    if isinstance(audio, np.ndarray):
        # librosa pulls in numba: import it only when a numpy clip needs fitting.
        from librosa.util import fix_length as _fix_length

        return _fix_length(audio, size=n_samples, axis=-1)
    if audio.shape[-1] >= n_samples:
        return audio[..., :n_samples]
    return torch.nn.functional.pad(audio, (0, n_samples - audio.shape[-1]))


def crop_or_pad(
    wave: np.ndarray | torch.Tensor,
    n_samples: int,
    *,
    train: bool = False,
    rng: np.random.Generator | int | None = None,
    gain: tuple[float, float] = (0.5, 1.0),
) -> torch.Tensor:
    """Cut or zero-pad a mono clip to ``n_samples``; in training, add a random gain.

    Parameters
    ----------
    wave : array-like of shape (samples,)
    n_samples : int
        Output length.
    train : bool, default=False
        ``False``: keep the first ``n_samples`` (zero-pad at the end when
        shorter). ``True``: a crop start drawn uniformly from ``rng``, then a
        gain drawn from U(``gain``).
    rng : numpy.random.Generator or int or None
        Randomness for training (ignored otherwise). An int seeds a new
        generator; ``None`` draws fresh entropy.
    gain : (float, float), default=(0.5, 1.0)
        Range of the training gain.

    Returns
    -------
    torch.Tensor of shape (n_samples,), float32
    """
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    if wave.ndim != 1:
        raise ValueError(
            f"crop_or_pad expects a mono clip (samples,), got shape {tuple(wave.shape)}"
        )
    start = 0
    generator = _as_generator(rng) if train else None
    if generator is not None and wave.shape[0] > n_samples:
        start = int(generator.integers(0, wave.shape[0] - n_samples + 1))
    out = fit_length(wave[start:], n_samples)
    if generator is not None:
        out = out * float(generator.uniform(gain[0], gain[1]))
    return out.contiguous()


def _to_channels_first(wave: np.ndarray, channels_first: bool, name: str) -> np.ndarray:
    if wave.ndim == 1:
        return wave[None, :]
    if wave.ndim != 2:
        raise ValueError(
            f"{name} must have shape (samples,) or (channels, samples), got {wave.shape}"
        )
    wave = wave if channels_first else wave.T
    if wave.shape[0] > MAX_CHANNELS:
        hint = "channels_first=False" if channels_first else "channels_first=True"
        raise ValueError(
            f"{name} has shape {wave.shape}, read as {wave.shape[0]} channels of "
            f"{wave.shape[1]} samples; more than {MAX_CHANNELS} channels usually means a "
            f"transposed layout (pass {hint})"
        )
    return wave


def prepare_waveform(
    wave: np.ndarray | torch.Tensor,
    sr: int,
    *,
    sample_rate: int = SAMPLE_RATE,
    duration: float | None = CLIP_SECONDS,
    train: bool = False,
    rng: np.random.Generator | int | None = None,
    channels_first: bool = True,
    allow_silent: bool = False,
    name: str = "waveform",
) -> torch.Tensor:
    """Apply the library's audio preprocessing to an in-memory signal.

    Downmix to mono (mean of the channels), resample to ``sample_rate``,
    peak-normalise to 0.95, then crop or zero-pad to ``duration`` seconds
    (see :func:`crop_or_pad` for the training randomness).

    Parameters
    ----------
    wave : array-like or torch.Tensor
        Shape ``(samples,)`` for mono, else ``(channels, samples)`` when
        ``channels_first=True`` (torch/torchaudio layout, the default) or
        ``(samples, channels)`` when ``channels_first=False`` (soundfile's
        layout).
    sr : int
        The signal's sample rate in Hz.
    sample_rate : int, default=16000
        The output rate.
    duration : float or None, default=8.0
        Output length in seconds; ``None`` keeps the whole (resampled) signal.
    train : bool, default=False
        Random crop and gain U(0.5, 1) instead of the deterministic first
        ``duration`` seconds.
    rng : numpy.random.Generator or int or None
        Randomness when ``train=True``.
    channels_first : bool, default=True
        Layout of a 2-D ``wave``, as above.
    allow_silent : bool, default=False
        Return silent input unscaled instead of raising (see :func:`peak_normalize`).
    name : str, default="waveform"
        How the input is called in error messages.

    Returns
    -------
    torch.Tensor of shape (samples,), float32

    Examples
    --------
    >>> import numpy as np
    >>> stereo = np.random.default_rng(0).uniform(-0.1, 0.1, size=(2, 44100))
    >>> clip = prepare_waveform(stereo, 44100)
    >>> clip.shape, round(float(clip.abs().max()), 2)
    (torch.Size([128000]), 0.95)
    """
    sr = check_positive_int(sr, "sr")
    sample_rate = check_positive_int(sample_rate, "sample_rate")
    n_samples = _n_samples(sample_rate, duration)
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    try:
        arr = np.asarray(wave)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like, got {type(wave).__name__}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        raise TypeError(
            f"{name}: unsigned integer samples are ambiguous; pass float or int16/int32"
        )
    if np.issubdtype(arr.dtype, np.integer):
        # Signed integer PCM: scale by the type's range, as soundfile does.
        arr = arr.astype(np.float32) / float(-np.iinfo(arr.dtype).min)
    arr = _to_channels_first(np.asarray(arr, dtype=np.float32), channels_first, name)
    if arr.shape[1] == 0:
        raise ValueError(f"{name} holds no samples (zero-length audio)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite samples")
    mono = arr.mean(axis=0)
    mono = resample(mono, sr, sample_rate)
    mono = peak_normalize(mono, name=name, allow_silent=allow_silent)
    if n_samples is None:
        return torch.from_numpy(np.ascontiguousarray(mono))
    return crop_or_pad(mono, n_samples, train=train, rng=rng)


def decode_audio(
    path: PathLike, *, sample_rate: int = SAMPLE_RATE, allow_silent: bool = False
) -> np.ndarray:
    """Read a whole file as mono at ``sample_rate``, peak-normalised to 0.95.

    This is the part of :func:`load_audio` that does not depend on the crop,
    so datasets cache its result and crop afresh each time.

    Parameters
    ----------
    path : str or os.PathLike
        An audio file that soundfile (or the fallback reader) can read.
    sample_rate : int, default 16000
        Rate to resample to.
    allow_silent : bool, default False
        Accept an all-zero file instead of raising ``ValueError``.

    Returns
    -------
    numpy.ndarray of shape (samples,), float32
    """
    wave, rate = read_audio(path)
    return prepare_waveform(
        wave,
        rate,
        sample_rate=sample_rate,
        duration=None,
        allow_silent=allow_silent,
        name=f"audio file {str(path)!r}",
    ).numpy()


def load_audio(
    path: PathLike,
    *,
    sample_rate: int = SAMPLE_RATE,
    duration: float | None = CLIP_SECONDS,
    train: bool = False,
    rng: np.random.Generator | int | None = None,
) -> torch.Tensor:
    """Load an audio file as a fixed-length mono clip.

    Parameters
    ----------
    path : str or path-like
        WAV, FLAC, OGG, MP3 or any format libsndfile reads, at any rate and
        channel count.
    sample_rate : int, default=16000
    duration : float or None, default=8.0
        Seconds; ``None`` returns the whole piece.
    train : bool, default=False
        Random crop and gain U(0.5, 1) from ``rng`` instead of the first
        ``duration`` seconds at full scale.
    rng : numpy.random.Generator or int or None
        Randomness when ``train=True``.

    Returns
    -------
    torch.Tensor of shape (round(duration * sample_rate),), float32
        Peak 0.95 (times the training gain); zero-padded at the end when the
        piece is shorter than ``duration``.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it cannot be decoded, is truncated, empty or silent, or holds
        NaN/Inf samples.

    Examples
    --------
    >>> clip = load_audio("piece.wav")  # doctest: +SKIP
    >>> clip.shape  # doctest: +SKIP
    torch.Size([128000])
    """
    n_samples = _n_samples(sample_rate, duration)
    wave = decode_audio(path, sample_rate=sample_rate)
    if n_samples is None:
        return torch.from_numpy(wave)
    return crop_or_pad(wave, n_samples, train=train, rng=rng)


def save_audio(path: PathLike, wave: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write a 16-bit PCM WAV file atomically.

    The samples go to a temporary file in the target folder, which is flushed
    to disk and then renamed over ``path``; a crash or a full disk never
    leaves a half-written file under ``path``.

    Parameters
    ----------
    path : str or path-like
        Target file; its folder must exist.
    wave : array-like or torch.Tensor
        Shape ``(samples,)`` or ``(channels, samples)``. Samples outside
        [-1, 1] are clipped, as 16-bit PCM cannot hold them.
    sample_rate : int

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ValueError
        On NaN/Inf samples, an empty or badly shaped signal.
    OSError
        When the folder is missing or not writable, naming the target.
    """
    path = Path(path)
    sample_rate = check_positive_int(sample_rate, "sample_rate")
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().float().numpy()
    arr = np.asarray(wave, dtype=np.float32)
    arr = _to_channels_first(arr, True, f"audio for {str(path)!r}")
    if arr.shape[1] == 0:
        raise ValueError(f"audio for {str(path)!r} holds no samples")
    if not np.isfinite(arr).all():
        raise ValueError(f"audio for {str(path)!r} contains NaN or infinite samples")
    arr = np.clip(arr, -1.0, 1.0)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist"
        )
    # Encode in memory first: libsndfile writing through a Python file object
    # swallows write errors (a full disk) in its callbacks.
    encoded = io.BytesIO()
    sf.write(encoded, arr.T, sample_rate, format="WAV", subtype="PCM_16")
    try:
        with atomic_write(path) as handle:
            handle.write(encoded.getbuffer())
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write audio file {str(path)!r}: {exc.strerror}") from exc
    return path
