"""Ratings in SQLite, and the summary table computed from them.

One row per (rater, item, pass) holds the three 1-5 scores and a UTC
timestamp. ``UNIQUE (rater, item, pass)`` makes a repeated submission a no-op:
the first rating stands (see :meth:`RatingStore.add`). ``CHECK`` constraints
repeat the web form's range checks, so a database written by other code
cannot hold an out-of-range score either.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_DB_NAME",
    "METRICS",
    "PASSES",
    "MOSRow",
    "MOSSummary",
    "RatingStore",
    "rating_sequence",
    "shuffled",
    "summarize",
]

#: Score columns, in the order the paper reports them, with display names.
METRICS: dict[str, str] = {"i2m": "I2M", "melody": "Melody", "noise": "Noise"}
#: Every item is rated twice by every rater, as in the paper.
PASSES: tuple[int, ...] = (1, 2)
#: Where ``serve``/``summary`` keep the ratings when given only a samples folder.
DEFAULT_DB_NAME = "mos.sqlite3"

_SCHEMA_VERSION = 1
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    rater TEXT NOT NULL CHECK (length(rater) > 0),
    item TEXT NOT NULL,
    model TEXT NOT NULL,
    stem TEXT NOT NULL,
    pass INTEGER NOT NULL CHECK (pass IN (1, 2)),
    i2m INTEGER NOT NULL CHECK (i2m BETWEEN 1 AND 5),
    melody INTEGER NOT NULL CHECK (melody BETWEEN 1 AND 5),
    noise INTEGER NOT NULL CHECK (noise BETWEEN 1 AND 5),
    created_at TEXT NOT NULL,
    UNIQUE (rater, item, pass)
);
CREATE TABLE IF NOT EXISTS assignments (
    rater TEXT NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (rater, item)
);
PRAGMA user_version = {_SCHEMA_VERSION};
"""

AddResult = Literal["added", "duplicate", "conflict"]


class RatingStore:
    """The SQLite file that holds the ratings.

    Each call opens its own short-lived connection, so one store can be used
    from the threads of a web server.

    Parameters
    ----------
    path : str or path-like
        The database file.
    create : bool, default=True
        Create the file and its tables when missing; with ``False`` a missing
        file raises :class:`FileNotFoundError`.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise FileNotFoundError(f"ratings database {str(self.path)!r} does not exist")
        with self._connect() as con:
            try:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                tables = {
                    r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
            except sqlite3.DatabaseError as exc:
                raise ValueError(f"{str(self.path)!r} is not an SQLite database: {exc}") from exc
            if tables and ("ratings" not in tables or version != _SCHEMA_VERSION):
                raise ValueError(
                    f"{str(self.path)!r} is an SQLite file but not a conchshell ratings "
                    f"database (schema version {version}, tables {sorted(tables)})"
                )
            if not tables:
                con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Autocommit mode; transactions are opened explicitly where needed.
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield con
        finally:
            con.close()

    def add(
        self,
        rater: str,
        item: str,
        model: str,
        stem: str,
        pass_: int,
        scores: Mapping[str, int],
    ) -> AddResult:
        """Record one rating; a repeat of the same (rater, item, pass) is a no-op.

        Parameters
        ----------
        rater, item, model, stem : str
            Who rated which sample (its id, model and file stem).
        pass_ : int
            1 or 2.
        scores : mapping
            ``{"i2m": int, "melody": int, "noise": int}``, each 1-5.

        Returns
        -------
        {"added", "duplicate", "conflict"}
            ``"duplicate"`` when the same scores were already stored (a
            resubmitted form), ``"conflict"`` when different scores were: the
            first rating is kept either way.
        """
        values = [int(scores[m]) for m in METRICS]
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO ratings (rater, item, model, stem, pass, i2m, melody, noise, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (rater, item, pass) DO NOTHING",
                (rater, item, model, stem, pass_, *values, now),
            )
            if cur.rowcount == 1:
                return "added"
            stored = con.execute(
                "SELECT i2m, melody, noise FROM ratings WHERE rater=? AND item=? AND pass=?",
                (rater, item, pass_),
            ).fetchone()
        return "duplicate" if list(stored) == values else "conflict"

    def done(self, rater: str) -> set[tuple[str, int]]:
        """The (item, pass) pairs this rater has rated.

        Parameters
        ----------
        rater : str
            The rater's name.

        Returns
        -------
        set of (str, int)
        """
        with self._connect() as con:
            rows = con.execute("SELECT item, pass FROM ratings WHERE rater=?", (rater,))
            return {(item, p) for item, p in rows}

    def assign(
        self,
        rater: str,
        items: Sequence[str],
        *,
        raters_per_item: int | None,
        items_per_rater: int | None,
    ) -> list[str]:
        """The items this rater is to rate, chosen once and then kept.

        With neither limit set every rater gets every item (the paper's
        design) and nothing is stored. Otherwise, on a rater's first visit,
        the items with the fewest raters so far that still have fewer than
        ``raters_per_item`` are picked, at most ``items_per_rater`` of them
        (ties broken in an order seeded by the rater's name), and stored, so a
        reload or a restart shows the same items.

        Parameters
        ----------
        rater : str
            The rater's name.
        items : sequence of str
            Ids of every servable item.
        raters_per_item : int or None
            Stop handing an item out once this many raters have it.
        items_per_rater : int or None
            Give each rater at most this many items.

        Returns
        -------
        list of str
            Item ids, sorted; empty when every item already has enough raters.
        """
        if raters_per_item is None and items_per_rater is None:
            return sorted(items)
        with self._connect() as con:
            # IMMEDIATE: two raters arriving at once must not both take the last slot.
            con.execute("BEGIN IMMEDIATE")
            try:
                known = set(items)
                mine = [
                    r[0]
                    for r in con.execute("SELECT item FROM assignments WHERE rater=?", (rater,))
                ]
                if mine:
                    con.execute("COMMIT")
                    return sorted(i for i in mine if i in known)
                counts = dict.fromkeys(items, 0)
                for item, n in con.execute("SELECT item, COUNT(*) FROM assignments GROUP BY item"):
                    if item in counts:
                        counts[item] = n
                order = {item: k for k, item in enumerate(shuffled(items, rater, 0))}
                open_items = [
                    i for i in items if raters_per_item is None or counts[i] < raters_per_item
                ]
                open_items.sort(key=lambda i: (counts[i], order[i]))
                chosen = open_items[:items_per_rater] if items_per_rater else open_items
                con.executemany(
                    "INSERT INTO assignments (rater, item) VALUES (?, ?)",
                    [(rater, i) for i in chosen],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return sorted(chosen)

    def rows(self) -> list[tuple[str, str, str, int, int, int, int]]:
        """Every rating as (model, item, rater, pass, i2m, melody, noise)."""
        with self._connect() as con:
            return con.execute(
                "SELECT model, item, rater, pass, i2m, melody, noise FROM ratings "
                "ORDER BY model, item, rater, pass"
            ).fetchall()


def shuffled(items: Sequence[str], rater: str, pass_: int) -> list[str]:
    """The items in an order seeded by rater and pass.

    The same rater sees the same order after a reload or a restart; each pass
    has its own order.

    Parameters
    ----------
    items : sequence of str
        The clip names (their given order does not matter).
    rater : str
        The rater's name.
    pass_ : int
        The pass number.

    Returns
    -------
    list of str
    """
    seed = int.from_bytes(hashlib.sha256(f"{rater}\0{pass_}".encode()).digest()[:8], "big")
    order = sorted(items)
    random.Random(seed).shuffle(order)
    return order


def rating_sequence(items: Sequence[str], rater: str) -> list[tuple[str, int]]:
    """Every (item, pass) a rater goes through, in order.

    Pass 1 shows every item in one seeded order, pass 2 in another. When pass
    2 would open with the clip that closed pass 1, it is rotated by one so no
    clip plays twice in a row.

    Parameters
    ----------
    items : sequence of str
        The clip names.
    rater : str
        The rater's name; seeds both orders.

    Returns
    -------
    list of (str, int)
        ``2 * len(items)`` pairs, pass 1 first.
    """
    first = shuffled(items, rater, 1)
    second = shuffled(items, rater, 2)
    if len(second) > 1 and second[0] == first[-1]:
        second = second[1:] + second[:1]
    return [(i, 1) for i in first] + [(i, 2) for i in second]


@dataclass(frozen=True)
class MOSRow:
    """One model's line of the summary.

    Attributes
    ----------
    model : str
    mean, std : dict of str to float
        Keyed by ``"i2m"``, ``"melody"``, ``"noise"``. ``std`` is the sample
        standard deviation (ddof=1), NaN with a single score.
    n_scores : int
        (rater, item) scores averaged over their passes: what mean and std are
        computed over.
    n_items, n_raters, n_ratings : int
        Distinct items, distinct raters, and rows (one per pass) behind them.
    n_single_pass : int
        Scores that rest on one pass only (the rater has not rated the item a
        second time yet).
    """

    model: str
    mean: dict[str, float]
    std: dict[str, float]
    n_scores: int
    n_items: int
    n_raters: int
    n_ratings: int
    n_single_pass: int


@dataclass(frozen=True)
class MOSSummary:
    """Mean opinion scores per model.

    How the numbers are made: each rater's passes over an item are averaged
    first (as the paper averages its two rating occasions), giving one score
    per (rater, item); mean and sample standard deviation (ddof=1) are then
    taken over all (rater, item) scores of a model, so every rater-item pair
    weighs the same. Printing the summary gives a markdown table.

    Attributes
    ----------
    rows : list of MOSRow
        One per model, sorted by name.
    source : pathlib.Path
        The database the ratings came from.
    """

    rows: list[MOSRow]
    source: Path

    def to_markdown(self, digits: int = 2) -> str:
        """A markdown table: ``mean ± std`` per metric, then the counts.

        Parameters
        ----------
        digits : int, default 2
            Decimals of the means and standard deviations.

        Returns
        -------
        str
        """
        head = ["model", *METRICS.values(), "items", "raters", "ratings", "single-pass"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r.model.replace("|", "\\|")]
            cells += [f"{r.mean[m]:.{digits}f} ± {r.std[m]:.{digits}f}" for m in METRICS]
            cells += [str(r.n_items), str(r.n_raters), str(r.n_ratings), str(r.n_single_pass)]
            lines.append("| " + " | ".join(cells) + " |")
        if not self.rows:
            lines.append(f"(no ratings yet in {str(self.source)!r})")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """CSV with one row per model: mean and std of each metric, then the counts."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["model"]
            + [f"{m}_{stat}" for m in METRICS for stat in ("mean", "std")]
            + ["n_items", "n_raters", "n_ratings", "n_scores", "n_single_pass"]
        )
        for r in self.rows:
            writer.writerow(
                [r.model]
                + [f"{getattr(r, stat)[m]:.6g}" for m in METRICS for stat in ("mean", "std")]
                + [r.n_items, r.n_raters, r.n_ratings, r.n_scores, r.n_single_pass]
            )
        return out.getvalue()

    def __str__(self) -> str:
        return self.to_markdown()


def summarize(store: RatingStore) -> MOSSummary:
    """Compute the per-model summary of every rating in ``store`` (see :class:`MOSSummary`).

    Parameters
    ----------
    store : RatingStore
        The ratings database.

    Returns
    -------
    MOSSummary
    """
    # (model, item, rater) -> list of per-pass score triples
    units: dict[tuple[str, str, str], list[tuple[int, int, int]]] = defaultdict(list)
    n_ratings: dict[str, int] = defaultdict(int)
    for model, item, rater, _pass, *scores in store.rows():
        units[model, item, rater].append(tuple(scores))
        n_ratings[model] += 1
    rows = []
    for model in sorted(n_ratings):
        mine = {key: passes for key, passes in units.items() if key[0] == model}
        per_metric = {
            m: [statistics.fmean(p[k] for p in passes) for passes in mine.values()]
            for k, m in enumerate(METRICS)
        }
        rows.append(
            MOSRow(
                model=model,
                mean={m: statistics.fmean(v) for m, v in per_metric.items()},
                std={
                    m: statistics.stdev(v) if len(v) > 1 else float("nan")
                    for m, v in per_metric.items()
                },
                n_scores=len(mine),
                n_items=len({key[1] for key in mine}),
                n_raters=len({key[2] for key in mine}),
                n_ratings=n_ratings[model],
                n_single_pass=sum(len(p) == 1 for p in mine.values()),
            )
        )
    return MOSSummary(rows, store.path)
