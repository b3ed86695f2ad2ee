"""Reading a user's own image–music pairs from a CSV file.

The file is UTF-8 text (a byte-order mark is allowed), comma-separated, with a
header row naming at least the columns ``image``, ``audio`` and ``category``
(any order, case ignored, extra columns ignored). Blank lines are skipped.

* Paths are relative to the CSV file's folder (or to ``root`` when given)
  unless they are absolute; ``~`` is expanded.
* A category is a name or an integer id. A value made only of digits is an
  id. With ``categories`` given (a list of names, index = id), names must be
  in it and ids in range. Without it, all values must be of one kind: names
  give the categories in sorted order; ids ``0..K-1`` give names ``"0"`` ..
  ``"K-1"``.
* A missing image or audio file is an error naming the CSV line, or with
  ``missing="skip"`` the row is dropped with one warning giving the count.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conchshell._validation import check_path

__all__ = ["PAIR_COLUMNS", "PairsIndex", "read_pairs_csv"]

PAIR_COLUMNS = ("image", "audio", "category")
_ID = re.compile(r"^[+-]?[0-9]+$")


@dataclass
class PairsIndex:
    """What :func:`read_pairs_csv` found.

    Attributes
    ----------
    categories : list of str
    image_paths, audio_paths : list of pathlib.Path
    category_ids : list of int
    lines : list of int
        The CSV line of each item.
    """

    categories: list[str]
    image_paths: list[Path]
    audio_paths: list[Path]
    category_ids: list[int]
    lines: list[int] = field(default_factory=list)


def _resolve(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def read_pairs_csv(
    csv_path: str | os.PathLike,
    *,
    categories: Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
    missing: str = "error",
) -> PairsIndex:
    """Read and check a CSV of image, audio and category (see the module notes).

    Parameters
    ----------
    csv_path : str or path-like
    categories : sequence of str, optional
        The category names, index = id.
    root : str or path-like, optional
        Folder relative paths start from; default the CSV's folder.
    missing : {"error", "skip"}, default="error"

    Returns
    -------
    PairsIndex

    Raises
    ------
    FileNotFoundError
        When the CSV or (with ``missing="error"``) a file it names is missing.
    ValueError
        On a file that is not UTF-8 CSV, a missing column, an empty field, an
        unknown category, or no rows.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    csv_path = check_path(csv_path, "csv_path")
    base = check_path(root, "root") if root is not None else csv_path.parent
    if not csv_path.is_file():
        raise FileNotFoundError(f"pairs CSV file not found: {str(csv_path)!r}")
    where = f"pairs CSV {str(csv_path)!r}"
    records = []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            while header is not None and not any(h.strip() for h in header):
                header = next(reader, None)
            if header is None:
                raise ValueError(f"{where} is empty: expected a header row image,audio,category")
            names = [h.strip().lower() for h in header]
            absent = [c for c in PAIR_COLUMNS if c not in names]
            if absent:
                raise ValueError(
                    f"{where}: missing column(s) {absent} in the header row (found "
                    f"{[n for n in names if n]}); expected image,audio,category"
                )
            dupes = sorted({c for c in PAIR_COLUMNS if names.count(c) > 1})
            if dupes:
                raise ValueError(f"{where}: column(s) {dupes} appear more than once")
            cols = {c: names.index(c) for c in PAIR_COLUMNS}
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                line = reader.line_num
                cells = {c: (row[i].strip() if i < len(row) else "") for c, i in cols.items()}
                empty = [c for c, v in cells.items() if not v]
                if empty:
                    raise ValueError(f"{where}, line {line}: empty {empty}")
                records.append((line, cells))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text: {exc}") from exc
    except csv.Error as exc:
        raise ValueError(f"{where} is not valid CSV: {exc}") from exc
    if not records:
        raise ValueError(f"{where} has a header but no rows")

    names_list, ids = _categories(records, categories, where)

    image_paths, audio_paths, kept_ids, kept_lines, problems = [], [], [], [], []
    for (line, cells), cid in zip(records, ids, strict=True):
        image = _resolve(cells["image"], base)
        audio = _resolve(cells["audio"], base)
        absent = [
            f"{kind} {str(p)!r}"
            for kind, p in (("image", image), ("audio", audio))
            if not p.is_file()
        ]
        if absent:
            problems.append(f"line {line}: " + ", ".join(absent))
            continue
        image_paths.append(image)
        audio_paths.append(audio)
        kept_ids.append(cid)
        kept_lines.append(line)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        if missing == "error":
            raise FileNotFoundError(
                f"{where}: {len(problems)} row(s) name missing files: {shown} "
                "(pass missing='skip' to drop them with a warning)"
            )
        warnings.warn(
            f"{where}: skipped {len(problems)} row(s) naming missing files: {shown}", stacklevel=3
        )
        if not image_paths:
            raise ValueError(f"{where}: every row names a missing file; nothing is left")
    return PairsIndex(names_list, image_paths, audio_paths, kept_ids, kept_lines)


def _categories(
    records: list[tuple[int, dict[str, str]]], categories: Sequence[str] | None, where: str
) -> tuple[list[str], list[int]]:
    values = [(line, cells["category"]) for line, cells in records]
    if categories is not None:
        if isinstance(categories, str):
            raise TypeError("categories must be a sequence of names, not a single string")
        known = [str(c) for c in categories]
        lookup = {name: i for i, name in enumerate(known)}
        ids = []
        for line, v in values:
            if _ID.match(v):
                i = int(v)
                if not 0 <= i < len(known):
                    raise ValueError(
                        f"{where}, line {line}: category id {i} is out of range for "
                        f"{len(known)} categories"
                    )
            elif v in lookup:
                i = lookup[v]
            else:
                raise ValueError(f"{where}, line {line}: unknown category {v!r} (known: {known})")
            ids.append(i)
        return known, ids
    kinds = {bool(_ID.match(v)) for _, v in values}
    if kinds == {True}:
        ids = [int(v) for _, v in values]
        for (line, _), i in zip(values, ids, strict=True):
            if i < 0:
                raise ValueError(f"{where}, line {line}: category id {i} is negative")
        return [str(i) for i in range(max(ids) + 1)], ids
    if kinds == {False}:
        known = sorted({v for _, v in values})
        lookup = {name: i for i, name in enumerate(known)}
        return known, [lookup[v] for _, v in values]
    raise ValueError(
        f"{where}: the category column mixes names and integer ids; pass categories=[...] "
        "so ids and names can be matched"
    )
