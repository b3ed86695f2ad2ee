"""Render note lists with a sampled piano (a General MIDI soundfont from Debian).

The stand-in dataset's music is real scores played by a sampled piano. The
soundfont comes from the Debian package ``fluidr3mono-gm-soundfont`` (MIT;
``apt-get install --no-install-recommends fluidr3mono-gm-soundfont``), and the
synthesiser is ``tinysoundfont`` (MIT, a Python binding of TinySoundFont), which
renders straight to 16 kHz without a sound server. The font is parsed once per
:class:`PianoRenderer`; rendering an 8 s clip then takes a few milliseconds and is
byte-identical from run to run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from conchshell.levels import SAMPLE_RATE

__all__ = [
    "SOUNDFONT_PACKAGE",
    "SOUNDFONT_PATHS",
    "PianoRenderer",
    "find_soundfont",
    "silent_fraction",
]

SOUNDFONT_PACKAGE = "fluidr3mono-gm-soundfont"
# Where Debian installs the font (the first is an alternatives link on some releases).
SOUNDFONT_PATHS: tuple[str, ...] = (
    "/usr/share/sounds/sf3/FluidR3Mono_GM.sf3",
    "/usr/share/fluidr3mono-gm-soundfont/FluidR3Mono_GM.sf3",
)
_ENV_VAR = "CONCHSHELL_SOUNDFONT"


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """Locate the piano soundfont.

    Parameters
    ----------
    path : str or path-like, optional
        An explicit .sf2/.sf3 file. Without it the environment variable
        ``CONCHSHELL_SOUNDFONT`` is tried, then the paths where Debian's
        ``fluidr3mono-gm-soundfont`` package installs its font.

    Returns
    -------
    pathlib.Path
        An existing soundfont file.

    Raises
    ------
    FileNotFoundError
        If no soundfont is found; the message names the package to install.
    """
    if path is not None:
        candidate = Path(path)
        if not candidate.is_file():
            raise FileNotFoundError(f"soundfont {str(candidate)!r} does not exist")
        return candidate
    env = os.environ.get(_ENV_VAR)
    if env:
        candidate = Path(env)
        if not candidate.is_file():
            raise FileNotFoundError(f"{_ENV_VAR}={env!r} does not name an existing soundfont file")
        return candidate
    for known in SOUNDFONT_PATHS:
        if Path(known).is_file():
            return Path(known)
    raise FileNotFoundError(
        "no piano soundfont found (looked in "
        + ", ".join(SOUNDFONT_PATHS)
        + f"); install the Debian package: apt-get install -y --no-install-recommends "
        f"{SOUNDFONT_PACKAGE} (or `make system-deps`), or point {_ENV_VAR} at a .sf2/.sf3 file"
    )


def silent_fraction(wave: np.ndarray, threshold_db: float = -50.0, frame: int = 320) -> float:
    """Fraction of 20 ms frames whose RMS is below ``threshold_db`` dBFS.

    Parameters
    ----------
    wave : numpy.ndarray
        Mono waveform in [-1, 1].
    threshold_db : float, default -50
        Level below which a frame counts as silent.
    frame : int, default 320
        Frame length in samples (20 ms at 16 kHz). A trailing partial frame is
        counted as a frame of its own.

    Returns
    -------
    float
        Silent frames over all frames (0 for an empty wave).
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    if wave.size == 0:
        return 0.0
    n_frames = -(-wave.size // frame)
    padded = np.zeros(n_frames * frame)
    padded[: wave.size] = wave
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))
    return float(np.mean(rms < 10.0 ** (threshold_db / 20.0)))


class PianoRenderer:
    """Play note lists on General MIDI program 0 (acoustic grand piano).

    Parameters
    ----------
    soundfont : str or path-like, optional
        Soundfont file; see :func:`find_soundfont` for the default search.
    sample_rate : int, default 16000
        Output rate in Hz.
    preset : int, default 0
        General MIDI program (0 = acoustic grand piano).

    Examples
    --------
    >>> renderer = PianoRenderer()  # doctest: +SKIP
    >>> wave = renderer.render([(0.0, 1.0, 60, 80)], n_samples=16000)  # doctest: +SKIP
    """

    def __init__(
        self,
        soundfont: str | os.PathLike | None = None,
        sample_rate: int = SAMPLE_RATE,
        preset: int = 0,
    ) -> None:
        try:
            import tinysoundfont
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "rendering piano audio needs tinysoundfont: "
                "pip install --no-deps 'tinysoundfont>=0.3'"
            ) from err
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate = int(sample_rate)
        self.preset = int(preset)
        self._synth = tinysoundfont.Synth(samplerate=self.sample_rate)
        sfid = self._synth.sfload(str(self.soundfont))
        self._synth.program_select(0, sfid, 0, self.preset)

    def _generate(self, out: np.ndarray, start: int, stop: int) -> None:
        if stop <= start:
            return
        buffer = self._synth.generate_simple(stop - start)
        stereo = np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2)
        out[start:stop] = stereo.mean(axis=1)

    def render(
        self, notes: Iterable[Sequence[float]], n_samples: int, gain: float = 1.0
    ) -> np.ndarray:
        """Render ``(onset_s, duration_s, midi_pitch, velocity)`` notes to a mono wave.

        Parameters
        ----------
        notes : iterable of (float, float, int, int)
            Onset and duration in seconds, MIDI pitch (0-127), MIDI velocity (1-127).
        n_samples : int
            Length of the output; notes and release tails past it are cut.
        gain : float, default 1.0
            Linear factor applied to the synthesiser output.

        Returns
        -------
        numpy.ndarray
            float32 array of ``n_samples`` samples.
        """
        events: list[tuple[int, int, int, int]] = []
        for onset, duration, pitch, velocity in notes:
            begin = round(float(onset) * self.sample_rate)
            end = max(begin + 1, round((float(onset) + float(duration)) * self.sample_rate))
            # Kind 0 (note off) sorts before kind 1 (note on) at the same sample,
            # so a repeated pitch is released before it is struck again.
            events.append((begin, 1, int(pitch), int(velocity)))
            events.append((end, 0, int(pitch), 0))
        events.sort()
        out = np.zeros(int(n_samples), dtype=np.float32)
        position = 0
        for sample, kind, pitch, velocity in events:
            if sample >= n_samples:
                break
            self._generate(out, position, sample)
            position = sample
            if kind:
                self._synth.noteon(0, pitch, velocity)
            else:
                self._synth.noteoff(0, pitch)
        self._generate(out, position, int(n_samples))
        # Silence every voice so the next clip starts from the same state.
        self._synth.sounds_off()
        self._synth.notes_off()
        return out * np.float32(gain)
