"""The transcription-based "is this piano music" measure on real clips and on white noise.

Runs :func:`conchshell.evaluation.music_measure` (Basic Pitch's ONNX model,
note coverage, onsets per second, spectral flatness) over the distinct real
clips of a BOP-layout split, or over every WAV under a folder, and prints per
category and overall: the music fraction, the mean note coverage, onsets per
second and spectral flatness (with their ranges). A row of white noise at each
clip's RMS shows the floor.

Usage::

    python bench/music_measure.py                      # data/standin, val split
    python bench/music_measure.py --data data/standin --split train
    python bench/music_measure.py --wavs out/demo/audio --json music.json

The stand-in dataset is built with ``conchshell data build --out data/standin``
(``make data``; a few minutes). With ``--wavs`` a clip's category is its
folder relative to the given one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from conchshell.evaluation import music_measure, real_clips
from conchshell.levels import SAMPLE_RATE

_KEYS = ("note_coverage", "onsets_per_second", "spectral_flatness")


def dataset_clips(root: Path, split: str) -> list[tuple[str, str, np.ndarray, int]]:
    """``(category, key, wave, rate)`` for each distinct real clip of a BOP split."""
    from conchshell.datasets import load_bop

    dataset = load_bop(root, split, augment=False)
    waves, cats, keys = real_clips(dataset)
    names = list(dataset.categories)
    return [
        (names[int(c)], str(k), w, SAMPLE_RATE) for w, c, k in zip(waves, cats, keys, strict=True)
    ]


def wav_clips(folder: Path) -> list[tuple[str, str, np.ndarray, int]]:
    """``(category, path, wave, rate)`` for every WAV under ``folder`` (mono mix-down)."""
    out = []
    for path in sorted(folder.rglob("*.wav")):
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
        parent = path.parent.relative_to(folder).as_posix()
        out.append((parent if parent != "." else "all", str(path), wave.mean(axis=1), rate))
    return out


def summarise(rows: list[dict]) -> dict:
    """Music fraction, and mean/min/max of each cue, over rows of music_measure."""
    out: dict = {"n": len(rows), "music_fraction": float(np.mean([r["is_music"] for r in rows]))}
    for key in _KEYS:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        out[key] = {"mean": values.mean(), "min": values.min(), "max": values.max()}
    return out


def table(summaries: dict[str, dict]) -> str:
    lines = [
        f"{'category':<12}{'n':>4}{'music':>7}{'coverage (min-max)':>24}"
        f"{'onsets/s (min-max)':>24}{'flatness (min-max)':>28}"
    ]
    for name, s in summaries.items():
        c, o, f = (s[k] for k in _KEYS)
        lines.append(
            f"{name:<12}{s['n']:>4}{s['music_fraction']:>7.3f}"
            f"{c['mean']:>10.3f} ({c['min']:.3f}-{c['max']:.3f})"
            f"{o['mean']:>11.2f} ({o['min']:5.2f}-{o['max']:5.2f})"
            f"{f['mean']:>12.4f} ({f['min']:.4f}-{f['max']:.4f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/standin"), help="BOP-layout root")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--wavs", type=Path, help="measure every WAV under this folder instead")
    parser.add_argument("--no-noise", action="store_true", help="skip the white-noise row")
    parser.add_argument("--seed", type=int, default=0, help="seed of the white noise")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    if args.wavs is not None:
        clips = wav_clips(args.wavs)
        source = str(args.wavs)
    else:
        if not (args.data / "Label").is_dir():
            sys.exit(
                f"{args.data} is not a built dataset; build it with "
                f"`conchshell data build --out {args.data}` (make data), or pass --wavs"
            )
        clips = dataset_clips(args.data, args.split)
        source = f"{args.data} ({args.split} split, distinct real clips)"
    if not clips:
        sys.exit(f"no clips found in {source}")

    start = time.perf_counter()
    rows = []
    for category, key, wave, rate in clips:
        (measure,) = music_measure(wave, sample_rate=rate)
        rows.append({"category": category, "key": key, **measure})
    seconds = time.perf_counter() - start

    summaries: dict[str, dict] = {}
    for category in dict.fromkeys(r["category"] for r in rows):
        summaries[category] = summarise([r for r in rows if r["category"] == category])
    summaries["overall"] = summarise(rows)

    if not args.no_noise:
        rng = np.random.default_rng(args.seed)
        noise_rows = []
        for _, _, wave, rate in clips:
            rms = float(np.sqrt(np.mean(np.square(wave)))) or 0.1
            noise = rng.normal(scale=rms, size=wave.shape).astype(np.float32)
            noise_rows.extend(music_measure(noise, sample_rate=rate))
        summaries["white noise"] = summarise(noise_rows)

    print(f"music measure on {source}: {len(rows)} clips in {seconds:.1f} s")
    print(table(summaries))
    failing = [r for r in rows if not r["is_music"]]
    for r in failing:
        print(
            f"not music: {r['key']} coverage {r['note_coverage']:.3f}, "
            f"{r['onsets_per_second']:.2f} onsets/s, flatness {r['spectral_flatness']:.4f}"
        )
    result = {"source": source, "seconds": seconds, "summaries": summaries, "clips": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
