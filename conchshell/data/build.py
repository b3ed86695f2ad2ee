"""Build the offline stand-in dataset: real photographs and piano renderings of real scores.

The BOP dataset of the paper cannot be fetched here, so ``conchshell data build
--out DIR`` (and ``make data``) writes a dataset of the same layout
(:mod:`conchshell.data.bop`) from material that ships with the package:

* **Images**: 144 real photographs in six scene categories (ocean, forest,
  mountain, night_sky, sunset, city), 12-35 distinct originals each, drawn from
  Debian data packages (Tux Paint templates, KDE Plasma, Lomiri, MATE and LXQt
  wallpapers, Scratch 1.4's backgrounds, the SDDM Maldives theme, GCompris's
  photos from Wikimedia Commons, scikit-image's Hubble Deep Field, Stellarium's
  astrophotographs and its Hurricane Ridge panorama, Enlightenment's
  backgrounds, a Scribus template's sunset photograph). They are committed as
  256x256 JPEGs in ``conchshell/data/standin/images`` with ``manifest.json``
  (package, version, path, sha256 of source and output, author, licence) and
  ``ATTRIBUTION.md``; ``scripts/derive_standin.py`` regenerates them from the
  packages and checks every checksum. Committing them keeps the build offline
  and immune to image packages moving between Debian releases.
* **Music**: 24 excerpts per category from music21's corpus (Bach chorales,
  Mozart/Haydn/Beethoven string-quartet movements reduced to piano, reels from
  Ryan's Mammoth Collection), committed as note lists in ``scores.json`` (so
  building needs no music21 and no score parsing), each played with its
  category's character (:mod:`conchshell.data.scenes`: mode, tempo, register,
  velocity, articulation) on the sampled grand piano of Debian's
  ``fluidr3mono-gm-soundfont`` through ``tinysoundfont``, loaded once. Clips are
  exactly 8 s, 16 kHz, mono, 16-bit; a clip more than 10 % silent (20 ms frames
  below -50 dBFS) stops the build with an error.

What the seed decides, and how the split stays honest:

* Per category, the originals are split 85/15 by *group*: the eight tiles of
  the Hurricane Ridge panorama form one group and stay on one side; the other
  photographs are their own group. Augmented copies (``-1``, ``-2``: mirror,
  crop of 80-95 %, brightness/contrast/saturation within +-15 %, drawn from the
  seed) follow their original. The 24 clips of a category are split 20/4 the
  same way, so validation images are paired with music the training set never
  heard. Within a split, images are paired with the split's clips in a seeded
  order, each clip used at least once where the split has enough images.
* Same seed, same bytes: originals are copied as committed, augmented JPEGs and
  WAVs are re-encoded deterministically (the .xlsx files hold the same rows but
  carry a write time).

The output is written to a temporary sibling folder and renamed into place, so
an interrupted build never leaves a half dataset. A stamp file records the seed
and a hash of the committed material; calling again with the same seed returns
the existing dataset's summary without rebuilding (``force=True`` rebuilds).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conchshell.data.piano import PianoRenderer, find_soundfont, silent_fraction
from conchshell.data.scenes import CATEGORIES, SceneCategory, perform
from conchshell.levels import CLIP_SAMPLES, SAMPLE_RATE

__all__ = ["MAX_SILENT_FRACTION", "STANDIN_DIR", "StandinSummary", "build_standin"]

#: Committed material (images, score excerpts, manifest, attribution).
STANDIN_DIR = Path(__file__).resolve().parent / "standin"
#: Largest allowed fraction of silent 20 ms frames in a clip.
MAX_SILENT_FRACTION = 0.10
VAL_FRACTION = 0.15
AUGMENTED_COPIES = 2
STAMP_NAME = ".conchshell-standin.json"
MANIFEST_NAME = "manifest.json"
# Output gain of the synthesiser: the loudest committed excerpt (a quartet) then
# peaks at 0.82 (-1.7 dBFS); a per-clip limiter catches anything louder.
_GAIN = 2.5
_PEAK = 0.95
_BUILDER_VERSION = "1"
_SPLITS = ("train", "val")


@dataclass(frozen=True)
class StandinSummary:
    """Counts of a built stand-in dataset.

    Attributes
    ----------
    root : pathlib.Path
        Dataset folder (BOP layout).
    seed : int
        Seed it was built with.
    categories : tuple of str
        Category folder names in BOP order (``ocean-1`` ... ``city-6``).
    images : dict
        ``images[split][folder]``: image files, augmented copies included.
    originals : dict
        ``originals[split][folder]``: distinct original photographs.
    clips : dict
        ``clips[split][genre]``: distinct audio clips paired with that split.
    seconds : float
        Build time; 0 when an existing dataset was reused.
    reused : bool
        True when the dataset already existed and was not rebuilt.
    """

    root: Path
    seed: int
    categories: tuple[str, ...]
    images: dict[str, dict[str, int]] = field(default_factory=dict)
    originals: dict[str, dict[str, int]] = field(default_factory=dict)
    clips: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False

    def describe(self) -> str:
        """A table of the counts per category and split, for humans."""
        lines = [
            f"stand-in dataset at {self.root} (seed {self.seed}, "
            + ("reused" if self.reused else f"built in {self.seconds:.1f} s")
            + ")",
            f"{'category':<14}{'train img':>10}{'(orig)':>8}{'val img':>9}{'(orig)':>8}"
            f"{'train wav':>11}{'val wav':>9}",
        ]
        for folder in self.categories:
            genre = folder.rsplit("-", 1)[0]
            lines.append(
                f"{folder:<14}"
                f"{self.images['train'].get(folder, 0):>10}"
                f"{self.originals['train'].get(folder, 0):>8}"
                f"{self.images['val'].get(folder, 0):>9}"
                f"{self.originals['val'].get(folder, 0):>8}"
                f"{self.clips['train'].get(genre, 0):>11}"
                f"{self.clips['val'].get(genre, 0):>9}"
            )
        totals = [sum(self.images[s].values()) for s in _SPLITS]
        clips = [sum(self.clips[s].values()) for s in _SPLITS]
        lines.append(
            f"{'total':<14}{totals[0]:>10}{sum(self.originals['train'].values()):>8}"
            f"{totals[1]:>9}{sum(self.originals['val'].values()):>8}{clips[0]:>11}{clips[1]:>9}"
        )
        lines.append("8 s piano clips at 16 kHz; provenance and licences in manifest.json")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_material() -> tuple[dict, dict, str]:
    """Committed manifest and scores, checked against their checksums."""
    manifest_path = STANDIN_DIR / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"stand-in material missing: {manifest_path} does not exist")
    manifest_bytes = manifest_path.read_bytes()
    manifest = json.loads(manifest_bytes)
    scores_info = manifest.get("scores")
    if not scores_info or "images" not in manifest:
        raise ValueError(f"{manifest_path} lacks its 'images' or 'scores' section")
    scores_bytes = (STANDIN_DIR / scores_info["file"]).read_bytes()
    if _sha256(scores_bytes) != scores_info["sha256"]:
        raise ValueError(
            f"{STANDIN_DIR / scores_info['file']} does not match the sha256 in {manifest_path}; "
            "regenerate it with scripts/derive_standin.py scores"
        )
    digest = hashlib.sha256(manifest_bytes + scores_bytes)
    digest.update(repr((_BUILDER_VERSION, CATEGORIES, AUGMENTED_COPIES, _GAIN)).encode())
    return manifest, json.loads(scores_bytes), digest.hexdigest()


def _split_groups(keys: list[str], groups: list[str], rng: np.random.Generator) -> dict[str, str]:
    """Assign keys to train/val so val holds round(15 %) of them, whole groups only."""
    sizes = Counter(groups)
    order = sorted(sizes)
    order = [order[i] for i in rng.permutation(len(order))]
    target = round(VAL_FRACTION * len(keys))
    val_groups: set[str] = set()
    taken = 0
    for group in order:
        if taken + sizes[group] <= target:
            val_groups.add(group)
            taken += sizes[group]
        if taken == target:
            break
    return {k: ("val" if g in val_groups else "train") for k, g in zip(keys, groups, strict=True)}


def _augment(jpeg: bytes, rng: np.random.Generator) -> tuple[bytes, dict]:
    """A mild photometric and geometric variant of a committed 256x256 original."""
    from PIL import Image, ImageEnhance, ImageOps

    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    size = image.width
    flip = bool(rng.random() < 0.5)
    scale = float(rng.uniform(0.80, 0.95))
    side = round(size * scale)
    left = int(rng.integers(0, size - side + 1))
    top = int(rng.integers(0, size - side + 1))
    brightness, contrast, saturation = (float(v) for v in rng.uniform(0.85, 1.15, size=3))
    if flip:
        image = ImageOps.mirror(image)
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    image = ImageEnhance.Brightness(image).enhance(brightness)
    image = ImageEnhance.Contrast(image).enhance(contrast)
    image = ImageEnhance.Color(image).enhance(saturation)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    params = {
        "mirror": flip,
        "crop": [left, top, side],
        "brightness": round(brightness, 4),
        "contrast": round(contrast, 4),
        "saturation": round(saturation, 4),
    }
    return buffer.getvalue(), params


def _render_clip(renderer: PianoRenderer, clip: dict, category: SceneCategory) -> np.ndarray:
    wave = renderer.render(perform(clip["notes"], category), CLIP_SAMPLES, gain=_GAIN)
    peak = float(np.max(np.abs(wave)))
    if peak > _PEAK:
        wave = wave * np.float32(_PEAK / peak)
    silent = silent_fraction(wave)
    if silent > MAX_SILENT_FRACTION:
        raise RuntimeError(
            f"clip {clip['id']} ({clip['corpus_path']}) is {silent:.0%} silent, more than the "
            f"{MAX_SILENT_FRACTION:.0%} allowed; choose another excerpt in "
            "scripts/derive_standin.py"
        )
    return wave


def _write_xlsx(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(["img_type", "img_npy_name", "genre", "muse_wav_name"])
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)


def _write_dataset(root: Path, seed: int, manifest: dict, scores: dict, content_hash: str) -> None:
    import soundfile as sf

    renderer = PianoRenderer()
    files: list[dict] = []
    label_rows: list[tuple[str, str, str, str]] = []
    small_rows: list[tuple[str, str, str, str]] = []
    clips_by_category: dict[str, list[dict]] = {c.name: [] for c in CATEGORIES}
    for clip in scores["clips"]:
        clips_by_category[clip["category"]].append(clip)
    images_by_category: dict[str, list[dict]] = {c.name: [] for c in CATEGORIES}
    for record in manifest["images"]:
        images_by_category[record["category"]].append(record)

    def add_file(relative: str, data: bytes, **meta: object) -> None:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append({"path": relative, "sha256": _sha256(data), **meta})

    for category in CATEGORIES:
        records = sorted(images_by_category[category.name], key=lambda r: r["id"])
        clips = sorted(clips_by_category[category.name], key=lambda c: c["id"])
        image_split = _split_groups(
            [r["id"] for r in records],
            [r["group"] for r in records],
            np.random.default_rng([seed, category.index, 0]),
        )
        clip_split = _split_groups(
            [c["id"] for c in clips],
            [c["id"] for c in clips],
            np.random.default_rng([seed, category.index, 1]),
        )
        # Music first: every clip of the category, rendered once.
        for clip in clips:
            wave = _render_clip(renderer, clip, category)
            buffer = io.BytesIO()
            sf.write(buffer, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            provenance = {k: v for k, v in clip.items() if k not in ("notes", "category")}
            add_file(
                f"Wav/{category.name}/{clip['id']}.wav",
                buffer.getvalue(),
                kind="audio",
                category=category.name,
                split=clip_split[clip["id"]],
                performance={
                    "tempo_qpm": category.tempo,
                    "median_pitch": category.register,
                    "velocity": category.velocity,
                    "articulation": category.articulation,
                    "soundfont": renderer.soundfont.name,
                },
                **provenance,
            )
        for split_code, split in enumerate(_SPLITS):
            split_records = [r for r in records if image_split[r["id"]] == split]
            images: list[tuple[str, dict]] = []
            for record in split_records:
                jpeg = (STANDIN_DIR / record["file"]).read_bytes()
                if _sha256(jpeg) != record["sha256"]:
                    raise ValueError(
                        f"committed image {record['file']} does not match its sha256 in the "
                        "manifest; regenerate it with scripts/derive_standin.py images"
                    )
                provenance = {k: v for k, v in record.items() if k not in ("file", "sha256", "id")}
                stem = record["id"]
                images.append((f"{stem}.jpg", {"data": jpeg, "original": stem, **provenance}))
                number = int(stem[len(category.name) :])
                for copy in range(1, AUGMENTED_COPIES + 1):
                    rng = np.random.default_rng([seed, category.index, number, copy])
                    data, params = _augment(jpeg, rng)
                    images.append(
                        (
                            f"{stem}-{copy}.jpg",
                            {"data": data, "original": stem, "augmentation": params, **provenance},
                        )
                    )
            split_clips = [c["id"] for c in clips if clip_split[c["id"]] == split]
            if not split_clips:
                raise RuntimeError(f"no {split} clips for {category.name}")
            order = np.random.default_rng([seed, category.index, 2, split_code]).permutation(
                len(split_clips)
            )
            for i, (name, meta) in enumerate(sorted(images, key=lambda item: item[0])):
                clip_id = split_clips[order[i % len(order)]]
                data = meta.pop("data")
                wav_name = f"{clip_id}.wav"
                add_file(
                    f"Img/{split}_set/{category.folder}/{name}",
                    data,
                    kind="image",
                    split=split,
                    folder=category.folder,
                    audio=f"Wav/{category.name}/{wav_name}",
                    **meta,
                )
                row = (category.folder, name[: -len(".jpg")] + ".npy", category.name, wav_name)
                label_rows.append(row)
                if "augmentation" not in meta:
                    small_rows.append(row)

    (root / "Label").mkdir(parents=True, exist_ok=True)
    _write_xlsx(root / "Label" / "Label.xlsx", label_rows)
    _write_xlsx(root / "Label" / "Label_small.xlsx", small_rows)
    for name in ("Label.xlsx", "Label_small.xlsx"):
        data = (root / "Label" / name).read_bytes()
        files.append({"path": f"Label/{name}", "sha256": _sha256(data), "kind": "label"})
    attribution = (STANDIN_DIR / "ATTRIBUTION.md").read_bytes()
    add_file("ATTRIBUTION.md", attribution, kind="attribution")

    out_manifest = {
        "name": "conchshell stand-in dataset",
        "seed": seed,
        "content_hash": content_hash,
        "layout": "BOP (Img/{train,val}_set/<name>-<N>, Wav/<genre>, Label/Label*.xlsx)",
        "sample_rate": SAMPLE_RATE,
        "clip_samples": CLIP_SAMPLES,
        "max_silent_fraction": MAX_SILENT_FRACTION,
        "categories": [
            {
                "folder": c.folder,
                "genre": c.name,
                "scenes": c.scenes,
                "music": c.music,
                "mode": c.mode,
                "tempo_qpm": c.tempo,
                "median_pitch": c.register,
                "velocity": c.velocity,
                "articulation": c.articulation,
            }
            for c in CATEGORIES
        ],
        "packages": manifest.get("packages", {}),
        "music21_version": scores.get("music21_version"),
        "files": files,
    }
    (root / MANIFEST_NAME).write_text(
        json.dumps(out_manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    stamp = {"seed": seed, "content_hash": content_hash, "files": len(files)}
    (root / STAMP_NAME).write_text(json.dumps(stamp) + "\n", encoding="utf-8")


def _summarise(root: Path, seconds: float, reused: bool) -> StandinSummary:
    manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    folders = tuple(c["folder"] for c in manifest["categories"])
    images = {s: dict.fromkeys(folders, 0) for s in _SPLITS}
    originals = {s: dict.fromkeys(folders, 0) for s in _SPLITS}
    used: dict[str, dict[str, set[str]]] = {s: {} for s in _SPLITS}
    for entry in manifest["files"]:
        if entry["kind"] != "image":
            continue
        split, folder = entry["split"], entry["folder"]
        images[split][folder] += 1
        if "augmentation" not in entry:
            originals[split][folder] += 1
        genre = folder.rsplit("-", 1)[0]
        used[split].setdefault(genre, set()).add(entry["audio"])
    clips = {s: {g: len(v) for g, v in used[s].items()} for s in _SPLITS}
    return StandinSummary(
        root=root,
        seed=int(manifest["seed"]),
        categories=folders,
        images=images,
        originals=originals,
        clips=clips,
        seconds=seconds,
        reused=reused,
    )


def _is_complete(root: Path, seed: int, content_hash: str) -> bool:
    try:
        stamp = json.loads((root / STAMP_NAME).read_text(encoding="utf-8"))
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stamp.get("seed") != seed or stamp.get("content_hash") != content_hash:
        return False
    return all((root / entry["path"]).is_file() for entry in manifest.get("files", []))


def build_standin(out: str | os.PathLike, seed: int = 0, force: bool = False) -> StandinSummary:
    """Write the stand-in dataset in the BOP layout.

    Parameters
    ----------
    out : str or path-like
        Dataset folder. Created if missing. A non-empty folder is only ever
        replaced when it holds a stand-in dataset written by this function (its
        stamp file says so); any other folder is left alone.
    seed : int, default 0
        Decides the train/val split, the augmented copies and the pairing of
        images with clips. The same seed gives byte-identical images and WAVs.
    force : bool, default False
        Rebuild even when ``out`` already holds a complete dataset for ``seed``,
        or one built with another seed.

    Returns
    -------
    StandinSummary
        Counts per split and category; ``describe()`` renders them as a table.

    Raises
    ------
    TypeError
        If ``seed`` is not an integer or ``force`` not a bool.
    ValueError
        If ``seed`` is negative, or the committed material fails its checksums.
    FileExistsError
        If ``out`` is a file or a non-empty folder that is not a stand-in
        dataset, or (unless ``force``) a stand-in dataset built with another seed.
    FileNotFoundError
        If the piano soundfont is missing (the message names the Debian package).
    RuntimeError
        If a rendered clip is more than 10 % silent.

    Examples
    --------
    >>> summary = build_standin("data/standin")  # doctest: +SKIP
    >>> print(summary.describe())  # doctest: +SKIP
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not isinstance(force, bool):
        raise TypeError(f"force must be a bool, got {type(force).__name__} {force!r}")
    seed = int(seed)
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    manifest, scores, content_hash = _load_material()

    if root.exists() and not root.is_dir():
        raise FileExistsError(f"output path {str(root)!r} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not force and _is_complete(root, seed, content_hash):
            return _summarise(root, 0.0, reused=True)
        try:
            previous = json.loads((root / STAMP_NAME).read_text(encoding="utf-8")).get("seed")
        except (OSError, ValueError, AttributeError):
            # Never delete a folder this function did not write.
            raise FileExistsError(
                f"{str(root)!r} is not empty and is not a stand-in dataset "
                f"(no readable {STAMP_NAME}); choose another folder or empty it"
            ) from None
        if previous != seed and not force:
            raise FileExistsError(
                f"{str(root)!r} holds a stand-in dataset built with seed {previous}; "
                f"pass force=True (--force) to rebuild it with seed {seed}"
            )
        # Otherwise: ours, and stale, incomplete or forced; rebuilt below.

    find_soundfont()  # fail before touching the disk when the soundfont package is missing
    start = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        _write_dataset(staging, seed, manifest, scores, content_hash)
        if root.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, trash / root.name)
            os.replace(staging, root)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, root)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # e.g. a full disk mid-write: say where.
            raise type(exc)(
                exc.errno, f"cannot write the stand-in dataset {str(root)!r}: {exc.strerror}"
            ) from exc
        raise
    return _summarise(root, time.perf_counter() - start, reused=False)
