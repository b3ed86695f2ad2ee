"""Find the clips and pictures of a listening test.

The layout is ``SAMPLES_DIR/<model>/<item>.wav`` with the picture beside the
clip as ``<item>.png``, ``<item>.jpg`` or ``<item>.jpeg``. A folder that holds
pairs directly counts as one model named after the folder. The index is built
once, at start-up; the web app serves files only from it, so nothing a request
says can reach a path outside it.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AUDIO_SUFFIXES", "IMAGE_SUFFIXES", "Sample", "SampleIndex", "scan_samples"]

AUDIO_SUFFIXES: dict[str, str] = {".wav": "audio/wav"}
IMAGE_SUFFIXES: dict[str, str] = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def item_id(model: str, stem: str) -> str:
    """The opaque, stable identifier of one sample.

    A hash keeps model and file names out of URLs (raters stay blind to which
    model made a clip) and stays the same across restarts, so ratings already
    in the database keep pointing at their sample.
    """
    digest = hashlib.sha256(f"{model}\0{stem}".encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Sample:
    """One clip and its picture.

    Attributes
    ----------
    id : str
        16 hexadecimal digits, see :func:`item_id`.
    model : str
        Name of the model folder.
    stem : str
        File name without suffix, shared by clip and picture.
    audio : pathlib.Path
        Resolved path of the ``.wav`` file.
    image : pathlib.Path
        Resolved path of the picture.
    """

    id: str
    model: str
    stem: str
    audio: Path
    image: Path

    @property
    def image_type(self) -> str:
        """MIME type of the picture."""
        return IMAGE_SUFFIXES[self.image.suffix.lower()]


@dataclass(frozen=True)
class SampleIndex(Mapping[str, Sample]):
    """Every servable sample, keyed by :attr:`Sample.id`.

    Attributes
    ----------
    root : pathlib.Path
        The resolved samples folder.
    samples : dict of str to Sample
        The samples by id, sorted by (model, stem).
    skipped : dict of str to list of str
        Files left out, by reason, as paths relative to ``root``.
    """

    root: Path
    samples: dict[str, Sample]
    skipped: dict[str, list[str]]

    def __getitem__(self, key: str) -> Sample:
        return self.samples[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def models(self) -> list[str]:
        """Model names, sorted."""
        return sorted({s.model for s in self.samples.values()})

    def describe(self) -> str:
        """One line: how many samples of how many models."""
        per_model = ", ".join(
            f"{m}: {sum(s.model == m for s in self.samples.values())}" for m in self.models
        )
        return f"{len(self)} samples from {len(self.models)} models ({per_model})"


def _encodable(name: str) -> bool:
    # File names that are not valid UTF-8 arrive as surrogate escapes; SQLite
    # and HTML cannot carry them.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _pairs_in(folder: Path, root: Path, model: str, skipped: dict[str, list[str]]) -> list[Sample]:
    audio: dict[str, Path] = {}
    images: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix not in AUDIO_SUFFIXES and suffix not in IMAGE_SUFFIXES:
            continue
        rel = str(path.relative_to(root))
        if not _encodable(path.name):
            skipped["file name is not valid UTF-8"].append(rel)
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            skipped["link points outside the samples folder"].append(rel)
            continue
        if suffix in AUDIO_SUFFIXES:
            audio[path.stem] = resolved
        else:
            images.setdefault(path.stem, []).append(resolved)
    samples = []
    for stem, wav in audio.items():
        pictures = images.pop(stem, [])
        if not pictures:
            skipped["clip without a picture"].append(str(wav.relative_to(root)))
        elif len(pictures) > 1:
            skipped["clip with more than one picture"].append(str(wav.relative_to(root)))
        else:
            samples.append(Sample(item_id(model, stem), model, stem, wav, pictures[0]))
    for pictures in images.values():
        skipped["picture without a clip"].extend(str(p.relative_to(root)) for p in pictures)
    return samples


def scan_samples(samples_dir: str | Path, *, warn: bool = True) -> SampleIndex:
    """Index the clip+picture pairs of a samples folder.

    Parameters
    ----------
    samples_dir : str or path-like
        ``SAMPLES_DIR/<model>/<item>.wav`` + ``<item>.png|.jpg|.jpeg``, or a
        folder holding the pairs directly (one model, named after the folder).
        Hidden files and folders, other file types and deeper folders are
        ignored.
    warn : bool, default=True
        Issue a :class:`UserWarning` that counts the files left out (a clip
        without a picture, a picture without a clip, a clip with two pictures,
        a link leading outside the folder, a name that is not UTF-8).

    Returns
    -------
    SampleIndex

    Raises
    ------
    FileNotFoundError
        When ``samples_dir`` is not a folder.
    ValueError
        When it holds no pair at all, or two models share a name.

    Examples
    --------
    >>> index = scan_samples("samples")  # doctest: +SKIP
    >>> index.describe()  # doctest: +SKIP
    '24 samples from 3 models (baseline_1: 8, baseline_2: 8, conchshell: 8)'
    """
    root = Path(samples_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"samples folder {str(root)!r} does not exist")
    root = root.resolve()
    skipped: dict[str, list[str]] = {
        "clip without a picture": [],
        "picture without a clip": [],
        "clip with more than one picture": [],
        "link points outside the samples folder": [],
        "file name is not valid UTF-8": [],
    }
    found = _pairs_in(root, root, root.name, skipped)
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        if not sub.resolve().is_relative_to(root):
            skipped["link points outside the samples folder"].append(sub.name)
            continue
        if not _encodable(sub.name):
            skipped["file name is not valid UTF-8"].append(
                sub.name.encode(errors="replace").decode()
            )
            continue
        if found and sub.name == root.name and any(s.model == root.name for s in found):
            raise ValueError(
                f"model name {sub.name!r} is used both by the pairs directly in "
                f"{str(root)!r} and by its subfolder; rename one"
            )
        found.extend(_pairs_in(sub, root, sub.name, skipped))
    if not found:
        raise ValueError(
            f"no clip+picture pairs (<item>.wav beside <item>.png/.jpg) in {str(root)!r} "
            "or its subfolders"
        )
    found.sort(key=lambda s: (s.model, s.stem))
    by_id = {s.id: s for s in found}
    if len(by_id) != len(found):  # 64-bit hashes: only a pathological folder gets here
        raise ValueError(f"two samples in {str(root)!r} hash to the same id; rename one")
    skipped = {reason: paths for reason, paths in skipped.items() if paths}
    if warn and skipped:
        parts = []
        for reason, paths in skipped.items():
            examples = ", ".join(repr(p) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            parts.append(f"{len(paths)} x {reason} ({examples}{more})")
        warnings.warn(
            f"{sum(map(len, skipped.values()))} files in {str(root)!r} are not served: "
            + "; ".join(parts),
            UserWarning,
            stacklevel=2,
        )
    return SampleIndex(root, by_id, skipped)
