"""Reading the BOP (Beach-Ocean-Piano) dataset in the authors' layout.

::

    ROOT/Img/train_set/<name>-<N>/*.jpg     images of the training split
    ROOT/Img/val_set/<name>-<N>/*.jpg       images of the validation split
    ROOT/Wav/<genre>/*.wav                  the music
    ROOT/Label/Label.xlsx                   sheet "Sheet1": img_type, img_npy_name,
    ROOT/Label/Label_small.xlsx               genre, muse_wav_name (one row per image)
    ROOT/Npy/i3d_npy_<split>/<name>-<N>/*.npy   optional precomputed features

A category folder ``<name>-<N>`` holds category ``N`` (1-based; its id is
``N - 1`` and its name is ``<name>``). The authors' six folders end in one
digit, so ``N`` is the folder's last character; any ``-<integer>`` suffix is
read the same way. A Label row ties image ``img_type/<img_npy_name with .npy
replaced by the image extension>`` to the audio file
``Wav/<genre>/<muse_wav_name>``.

Policies
--------
* Categories are gathered from the category folders of both splits and the
  Label's ``img_type`` column, so ids and names agree between the splits. Their
  numbers must run 1..K without gaps and each number must have one name.
* A category folder of the split with no row in the Label is an error.
* An image of the split with no Label row is skipped, with one warning giving
  the count. (``Label_small.xlsx`` lists only the originals, so with
  ``small=True`` the augmented copies ``*-1`` .. ``*-5`` are skipped silently.)
* A Label row whose image is in neither split, or whose audio file is missing,
  is an error (``FileNotFoundError`` listing the first few), or with
  ``missing="skip"`` is dropped with one warning giving the count.
* An empty split is an error.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from conchshell._validation import check_path

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_COLUMNS",
    "LABEL_SHEET",
    "SPLIT_FOLDERS",
    "BOPIndex",
    "LabelRow",
    "index_bop",
    "parse_category_folder",
    "read_label",
]

LABEL_SHEET = "Sheet1"
LABEL_COLUMNS = ("img_type", "img_npy_name", "genre", "muse_wav_name")
SPLIT_FOLDERS = {"train": "train_set", "val": "val_set"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FOLDER = re.compile(r"^(?P<name>.+)-(?P<number>[0-9]+)$")
_AUGMENTED_COPY = re.compile(r"-[1-5]$")


@dataclass(frozen=True)
class LabelRow:
    """One row of a BOP Label sheet.

    Attributes
    ----------
    row : int
        Spreadsheet row number (1-based, the header is row 1).
    img_type : str
        Category folder, e.g. ``"coral_reef-4"``.
    img_npy_name : str
        Image file name with ``.npy`` as extension, e.g. ``"coral012-3.npy"``.
    genre : str
        Sub-folder of ``Wav``.
    muse_wav_name : str
        Audio file name in ``Wav/<genre>``.
    """

    row: int
    img_type: str
    img_npy_name: str
    genre: str
    muse_wav_name: str

    @property
    def stem(self) -> str:
        """The image's file name without extension."""
        return Path(self.img_npy_name).stem


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_label(path: str | os.PathLike, *, sheet: str = LABEL_SHEET) -> list[LabelRow]:
    """Read a BOP ``Label.xlsx`` (or ``Label_small.xlsx``).

    Parameters
    ----------
    path : str or path-like
    sheet : str, default="Sheet1"

    Returns
    -------
    list of LabelRow
        One per non-empty row, in sheet order. Columns are found by their
        header (case and surrounding spaces ignored; extra columns such as a
        pandas index are ignored).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it is not a readable .xlsx workbook, has no sheet ``sheet``,
        lacks one of the four columns, or a row has an empty required cell.
    """
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    path = check_path(path, "path")
    if not path.is_file():
        raise FileNotFoundError(f"BOP label file not found: {str(path)!r}")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ValueError(
            f"cannot read label file {str(path)!r} as an .xlsx workbook: {exc}"
        ) from exc
    try:
        if sheet not in wb.sheetnames:
            raise ValueError(
                f"label file {str(path)!r} has no sheet named {sheet!r} (sheets: {wb.sheetnames})"
            )
        ws = wb[sheet]
        ws.reset_dimensions()  # some writers record wrong sheet dimensions
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"label file {str(path)!r}, sheet {sheet!r} is empty")
        names = [_cell_text(h).lower() for h in header]
        missing = [c for c in LABEL_COLUMNS if c not in names]
        if missing:
            found = [n for n in names if n]
            raise ValueError(
                f"label file {str(path)!r}, sheet {sheet!r}: missing column(s) {missing} in the "
                f"header row (found {found})"
            )
        cols = {c: names.index(c) for c in LABEL_COLUMNS}
        out = []
        for number, values in enumerate(rows, start=2):
            cells = [_cell_text(v) for v in values]
            if not any(cells):
                continue
            cells += [""] * (len(names) - len(cells))
            record = {c: cells[i] for c, i in cols.items()}
            empty = [c for c, v in record.items() if not v]
            if empty:
                raise ValueError(
                    f"label file {str(path)!r}, sheet {sheet!r}, row {number}: empty {empty}"
                )
            out.append(LabelRow(number, **record))
    finally:
        wb.close()
    return out


def parse_category_folder(folder: str) -> tuple[str, int]:
    """Split a category folder name ``<name>-<N>`` into ``(name, N)``.

    Parameters
    ----------
    folder : str
        The folder name, e.g. ``"coast-1"``; ``N`` counts from 1.

    Returns
    -------
    (str, int)
        The category name and number.

    Raises
    ------
    ValueError
        When the name does not have that form or ``N`` is below 1.

    Examples
    --------
    >>> parse_category_folder("coral_reef-4")
    ('coral_reef', 4)
    """
    match = _FOLDER.match(folder)
    if match is None:
        raise ValueError(
            f"category folder {folder!r} is not named <name>-<N> (N the category number, "
            "from 1), e.g. 'coast-1'"
        )
    number = int(match["number"])
    if number < 1:
        raise ValueError(f"category folder {folder!r}: category number {number} is out of range")
    return match["name"], number


@dataclass
class BOPIndex:
    """What :func:`index_bop` found for one split.

    Attributes
    ----------
    categories : list of str
        Names ordered by category number (index = id).
    image_paths, audio_paths : list of pathlib.Path
    category_ids : list of int
    feature_paths : list of (pathlib.Path or None)
    label_path : pathlib.Path
    rows : list of int
        The Label row of each item (1-based, the header is row 1).
    """

    categories: list[str]
    image_paths: list[Path]
    audio_paths: list[Path]
    category_ids: list[int]
    feature_paths: list[Path | None]
    label_path: Path
    rows: list[int] = field(default_factory=list)


def _list_images(split_dir: Path) -> dict[str, dict[str, Path]]:
    """``{folder: {stem: path}}`` of the images under one split folder."""
    out: dict[str, dict[str, Path]] = {}
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue
        files = {}
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                files[f.stem] = f
        out[folder.name] = files
    return out


def _gather_categories(folders: set[str], where: str) -> list[str]:
    by_number: dict[int, set[str]] = {}
    for folder in folders:
        try:
            name, number = parse_category_folder(folder)
        except ValueError as exc:
            raise ValueError(f"{exc} (in {where})") from None
        by_number.setdefault(number, set()).add(name)
    clashes = {n: sorted(names) for n, names in by_number.items() if len(names) > 1}
    if clashes:
        raise ValueError(f"category numbers with more than one name in {where}: {clashes}")
    k = max(by_number)
    gaps = [n for n in range(1, k + 1) if n not in by_number]
    if gaps:
        raise ValueError(
            f"category numbers must run 1..{k} without gaps, but no folder has number(s) {gaps} "
            f"(in {where}); a folder number is out of range"
        )
    return [next(iter(by_number[n])) for n in range(1, k + 1)]


def _report(missing: list[str], what: str, policy: str) -> None:
    if not missing:
        return
    shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
    if policy == "skip":
        warnings.warn(
            f"skipped {len(missing)} Label row(s) that reference a missing {what}: {shown}",
            stacklevel=4,
        )
    else:
        raise FileNotFoundError(
            f"{len(missing)} Label row(s) reference a missing {what}: {shown} "
            "(pass missing='skip' to drop them with a warning)"
        )


def index_bop(
    root: str | os.PathLike, split: str = "train", *, small: bool = False, missing: str = "error"
) -> BOPIndex:
    """Find the items of one BOP split (see the module notes for the policies).

    Parameters
    ----------
    root : str or path-like
        The folder holding ``Img``, ``Wav`` and ``Label``.
    split : {"train", "val"}, default="train"
    small : bool, default=False
        Read ``Label_small.xlsx`` (originals only) instead of ``Label.xlsx``.
    missing : {"error", "skip"}, default="error"
        What to do with Label rows whose image or audio file is missing.

    Returns
    -------
    BOPIndex
    """
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"split must be one of {sorted(SPLIT_FOLDERS)}, got {split!r}")
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    root = check_path(root, "root")
    if not root.is_dir():
        raise FileNotFoundError(f"BOP dataset folder not found: {str(root)!r}")
    for sub in ("Img", "Wav", "Label"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(
                f"{str(root)!r} is not a BOP dataset folder: it has no {sub}/ sub-folder"
            )
    split_dir = root / "Img" / SPLIT_FOLDERS[split]
    if not split_dir.is_dir():
        raise FileNotFoundError(f"BOP split folder not found: {str(split_dir)!r}")
    label_path = root / "Label" / ("Label_small.xlsx" if small else "Label.xlsx")
    rows = read_label(label_path)

    listings = {}
    for name, sub in SPLIT_FOLDERS.items():
        d = root / "Img" / sub
        if d.is_dir():
            listings[name] = _list_images(d)
    here = listings[split]

    folders = {f for listing in listings.values() for f in listing} | {r.img_type for r in rows}
    if not folders:
        raise ValueError(f"no category folders under {str(root / 'Img')!r} and no Label rows")
    categories = _gather_categories(folders, f"{str(root / 'Img')!r} and {label_path.name}")

    labelled = {r.img_type for r in rows}
    unlisted_folders = sorted(f for f in here if f not in labelled)
    if unlisted_folders:
        raise ValueError(
            f"category folder(s) {unlisted_folders} in {str(split_dir)!r} have no rows in "
            f"{str(label_path)!r}"
        )

    # One Label row per image; the same image listed twice must agree.
    by_key: dict[tuple[str, str], LabelRow] = {}
    for r in rows:
        key = (r.img_type, r.stem)
        old = by_key.get(key)
        if old is not None and (old.genre, old.muse_wav_name) != (r.genre, r.muse_wav_name):
            raise ValueError(
                f"label file {str(label_path)!r}: rows {old.row} and {r.row} give image "
                f"{r.img_type}/{r.img_npy_name} different music"
            )
        by_key[key] = r

    # Rows whose image is in neither split (when both split folders exist).
    problems = []
    if len(listings) == len(SPLIT_FOLDERS):
        for (folder, stem), r in by_key.items():
            if not any(stem in listing.get(folder, {}) for listing in listings.values()):
                problems.append(f"row {r.row}: image {folder}/{stem}.* is in no split")
    _report(problems, "image file", missing)

    image_paths, audio_paths, ids, feats, label_rows = [], [], [], [], []
    unlisted, audio_missing = 0, []
    unlisted_originals = 0
    npy_dir = root / "Npy" / f"i3d_npy_{split}"
    wav_dir = root / "Wav"
    for folder, files in here.items():
        _, number = parse_category_folder(folder)
        for stem, path in files.items():
            r = by_key.get((folder, stem))
            if r is None:
                unlisted += 1
                unlisted_originals += _AUGMENTED_COPY.search(stem) is None
                continue
            audio = wav_dir / r.genre / r.muse_wav_name
            if not audio.is_file():
                audio_missing.append(f"row {r.row}: {str(audio)!r}")
                continue
            feature = npy_dir / folder / f"{stem}.npy"
            image_paths.append(path)
            audio_paths.append(audio)
            ids.append(number - 1)
            feats.append(feature if feature.is_file() else None)
            label_rows.append(r.row)
    _report(audio_missing, "audio file", missing)
    if unlisted and (not small or unlisted_originals):
        warnings.warn(
            f"skipped {unlisted} image(s) in {str(split_dir)!r} that have no row in "
            f"{label_path.name}",
            stacklevel=3,
        )
    if not image_paths:
        raise ValueError(
            f"the {split!r} split of {str(root)!r} is empty: no labelled images with audio in "
            f"{str(split_dir)!r}"
        )
    return BOPIndex(categories, image_paths, audio_paths, ids, feats, label_path, label_rows)
