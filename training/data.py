"""MovieLens 100K: parse the GroupLens files into one `Interactions` type with its splits.

Every model consumes `Interactions` (after spotlight): parallel arrays of user and item *indices* (1..n; 0 is
padding), star ratings and timestamps, plus the sizes of the index spaces. Raw MovieLens ids become indices through
the complete user and item lists in `u.user` / `u.item`, so every split shares one index space.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

GENRES_FILE = "u.genre"
CANONICAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
SPLITS = (*CANONICAL_SPLITS, "full")


class DataError(ValueError):
    """Bad input data; the message names the file and, where there is one, the line."""


# Age bands of the GroupLens demographics (u.user); each band is one user feature.
AGE_BANDS = (18, 25, 35, 45, 50, 56)


@dataclass(frozen=True)
class SideFeatures:
    """What is known of users and items beyond their ratings, as feature indices (0 is padding).

    Parameters
    ----------
    user_features : int64 ``[num_users + 1, 3]``: each user's age band, gender and occupation
    item_features : int64 ``[num_items + 1, max genres]``: each item's genres, right-padded with 0
    num_user_features, num_item_features : sizes of the feature index spaces (tables need one more row)
    """

    user_features: np.ndarray
    item_features: np.ndarray
    num_user_features: int
    num_item_features: int


@dataclass(frozen=True)
class Interactions:
    """Ratings as parallel arrays over one index space.

    Parameters
    ----------
    user_ids, item_ids : int64 arrays of indices in 1..num_users / 1..num_items (0 is padding)
    ratings : float32 stars in [1, 5]
    timestamps : int64 unix seconds
    num_users, num_items : sizes of the index spaces (embeddings need one more row, for padding)
    features : side features of the same users and items, where known
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int
    features: SideFeatures | None = None

    def __post_init__(self) -> None:
        f = self.features
        if f is not None and (len(f.user_features), len(f.item_features)) != (self.num_users + 1, self.num_items + 1):
            raise ValueError(
                f"Interactions: side features for {len(f.user_features) - 1} users and {len(f.item_features) - 1} "
                f"items, but the index spaces have {self.num_users} and {self.num_items}"
            )
        n = len(self.user_ids)
        for name in ("item_ids", "ratings", "timestamps"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions: {name} has {len(getattr(self, name))} entries, user_ids has {n}")
        if n == 0:
            return
        if self.user_ids.min() < 1 or self.user_ids.max() > self.num_users:
            raise ValueError(f"Interactions: user index outside 1..{self.num_users}")
        if self.item_ids.min() < 1 or self.item_ids.max() > self.num_items:
            raise ValueError(f"Interactions: item index outside 1..{self.num_items}")
        if not np.all(np.isfinite(self.ratings)) or self.ratings.min() < 1 or self.ratings.max() > 5:
            raise ValueError("Interactions: ratings must be finite stars in [1, 5]")

    def __len__(self) -> int:
        return len(self.user_ids)

    def subset(self, index: np.ndarray) -> Interactions:
        """The interactions at `index` (a boolean mask or integer positions), same index space."""
        return Interactions(
            self.user_ids[index],
            self.item_ids[index],
            self.ratings[index],
            self.timestamps[index],
            self.num_users,
            self.num_items,
            self.features,
        )

    def time_order(self) -> np.ndarray:
        """Positions sorted by user, then time, then item (the item breaks ties deterministically)."""
        return np.lexsort((self.item_ids, self.timestamps, self.user_ids))

    def to_sequence(self, length: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """One window per interaction: the user's `length` most recent items up to and including it.

        Returns ``(items, ratings)`` of shape ``[len(self), length]`` with rows in `time_order()`, each window
        oldest first and left-padded with item 0 and rating 0, so that the last column is the interaction itself.
        """
        order = self.time_order()
        users, items, ratings = self.user_ids[order], self.item_ids[order], self.ratings[order]
        n = len(order)
        # Position of each interaction within its user's sequence.
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        first = np.repeat(starts, np.diff(np.r_[starts, n]))
        offsets = np.arange(-length + 1, 1)
        idx = np.arange(n)[:, None] + offsets[None, :]
        valid = idx >= first[:, None]
        idx = np.where(valid, idx, 0)
        return np.where(valid, items[idx], 0), np.where(valid, ratings[idx], 0.0).astype(np.float32)

    def to_histories(self, window: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every user's whole history as one row, cut into windows of `window` steps.

        Row ``u`` (for user index ``u``; row 0 is empty) is the user's items in time order, left-padded with 0 so
        the first window is the short one and every window boundary falls on a multiple of `window`, then
        right-padded to a common width. Returns ``(items, ratings, offsets, lengths)``: ``offsets[u]`` is the
        number of left pads, ``lengths[u]`` the number of interactions.
        """
        indptr, order = self.user_histories()
        lengths = np.diff(indptr)
        offsets = (-lengths) % window
        width = int((offsets + lengths).max(initial=0))
        width += (-width) % window
        rows = np.repeat(np.arange(self.num_users + 1), lengths)
        cols = offsets[rows] + np.arange(len(order)) - indptr[rows]
        items = np.zeros((self.num_users + 1, width), dtype=np.int64)
        ratings = np.zeros((self.num_users + 1, width), dtype=np.float32)
        items[rows, cols] = self.item_ids[order]
        ratings[rows, cols] = self.ratings[order]
        return items, ratings, offsets, lengths

    def user_histories(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR view of each user's interactions in time order: ``(indptr [num_users + 2], positions)``."""
        order = self.time_order()
        counts = np.bincount(self.user_ids, minlength=self.num_users + 1)
        return np.r_[0, np.cumsum(counts)], order


@dataclass(frozen=True)
class MovieLens:
    """The whole data set: all ratings plus the catalog needed to serve them."""

    ratings: Interactions
    user_raw_ids: np.ndarray  # raw id of user index k + 1
    item_raw_ids: np.ndarray  # raw id of item index k + 1
    items: pd.DataFrame  # item_id, title, year, genres (list of names), in index order
    genres: list[str]
    directory: Path
    sha256: str  # of u.data

    def split(self, name: str) -> tuple[Interactions, Interactions]:
        """``(train, test)`` for a canonical split (u1..u5, ua, ub) or ``full`` (test is empty)."""
        if name == "full":
            return self.ratings, self.ratings.subset(np.zeros(len(self.ratings), dtype=bool))
        if name not in CANONICAL_SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return self._read_ratings(f"{name}.base"), self._read_ratings(f"{name}.test")

    def _read_ratings(self, filename: str) -> Interactions:
        ratings = _ratings(self.directory / filename, self.user_raw_ids, self.item_raw_ids)
        return replace(ratings, features=self.ratings.features)


def validation_split(
    train: Interactions, fraction: float, generator: np.random.Generator
) -> tuple[Interactions, Interactions]:
    """Carve a random `fraction` of `train` out for early stopping; test data never enters here."""
    mask = generator.random(len(train)) < fraction
    return train.subset(~mask), train.subset(mask)


def load_movielens(directory: Path) -> MovieLens:
    """Read u.user, u.item, u.genre and u.data from a GroupLens ML-100K directory.

    Raises
    ------
    DataError
        A missing file, undecodable text, or a malformed line; the message names the file and line.
    """
    directory = Path(directory)
    genres = [name for name, _ in _read_table(directory / GENRES_FILE, "|", 2, drop_blank=True)]
    users = _read_table(directory / "u.user", "|", 5)
    user_raw = np.array([_int(directory / "u.user", i, row[0]) for i, row in enumerate(users, 1)], dtype=np.int64)
    item_rows = _read_table(directory / "u.item", "|", 5 + len(genres), exact=True)
    items = []
    for i, row in enumerate(item_rows, 1):
        path = directory / "u.item"
        flags = [_int(path, i, v) for v in row[5:]]
        items.append(
            {
                "item_id": _int(path, i, row[0]),
                "title": row[1],
                "year": _year(row[1], row[2]),
                "genres": [g for g, f in zip(genres, flags, strict=True) if f == 1],
            }
        )
    item_frame = pd.DataFrame(items).astype({"year": "Int64"})
    item_raw = item_frame["item_id"].to_numpy(np.int64)
    for path, raw in ((directory / "u.user", user_raw), (directory / "u.item", item_raw)):
        if len(np.unique(raw)) != len(raw):
            raise DataError(f"{path}: duplicate ids")
    order = np.argsort(item_raw, kind="stable")
    item_frame = item_frame.iloc[order].reset_index(drop=True)
    data_path = directory / "u.data"
    ratings = _ratings(data_path, np.sort(user_raw), item_raw[order])
    users_in_order = [users[k] for k in np.argsort(user_raw, kind="stable")]
    features = side_features(directory / "u.user", users_in_order, [item_rows[k][5:] for k in order])
    ratings = replace(ratings, features=features)
    return MovieLens(
        ratings=ratings,
        user_raw_ids=np.sort(user_raw),
        item_raw_ids=item_raw[order],
        items=item_frame,
        genres=genres,
        directory=directory,
        sha256=hashlib.sha256(data_path.read_bytes()).hexdigest(),
    )


def side_features(path: Path, users: list[list[str]], genre_flags: list[list[str]]) -> SideFeatures:
    """User demographics (u.user rows: id|age|gender|occupation|zip) and item genre flags as feature indices.

    User features are numbered age bands first, then the two genders, then the occupations in sorted order.
    """
    ages = np.array([_int(path, i, row[1]) for i, row in enumerate(users, 1)])
    occupations = sorted({row[3] for row in users})
    genders = np.array([row[2] == "M" for row in users], dtype=np.int64)
    band = np.digitize(ages, AGE_BANDS) + 1  # 1..len(AGE_BANDS) + 1
    gender = len(AGE_BANDS) + 2 + genders
    occupation = len(AGE_BANDS) + 4 + np.array([occupations.index(row[3]) for row in users])
    user_features = np.vstack([np.zeros((1, 3), np.int64), np.stack([band, gender, occupation], axis=1)])
    genres = [[g + 1 for g, flag in enumerate(flags) if flag.strip() == "1"] for flags in genre_flags]
    width = max((len(g) for g in genres), default=0)
    item_features = np.zeros((len(genres) + 1, max(width, 1)), np.int64)
    for row, ids in enumerate(genres, 1):
        item_features[row, : len(ids)] = ids
    return SideFeatures(
        user_features.astype(np.int64),
        item_features,
        len(AGE_BANDS) + 3 + len(occupations),
        len(genre_flags[0]) if genre_flags else 0,
    )


def _read_table(
    path: Path, sep: str, min_fields: int, drop_blank: bool = False, exact: bool = False
) -> list[list[str]]:
    try:
        # latin-1 is what GroupLens wrote (u.item has accented titles).
        text = path.read_bytes().decode("latin-1")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if drop_blank:
                continue
            raise DataError(f"{path}:{number}: blank line")
        fields = line.split(sep)
        if len(fields) < min_fields or (exact and len(fields) != min_fields):
            raise DataError(f"{path}:{number}: expected {min_fields} '{sep}'-separated fields, got {len(fields)}")
        rows.append(fields)
    return rows


def _int(path: Path, line: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}:{line}: expected an integer, got {value!r}") from None


def _year(title: str, date: str) -> int | None:
    """The year in the title ("Fargo (1996)"), else the release date's (01-Jan-1995); one item has neither."""
    match = re.search(r"\((\d{4})\)\s*$", title)
    if match:
        return int(match.group(1))
    return int(date[-4:]) if len(date) >= 4 and date[-4:].isdigit() else None


def _ratings(path: Path, user_raw: np.ndarray, item_raw: np.ndarray) -> Interactions:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not ASCII text (byte {raw[e.start]:#x})") from None
    lines = text.splitlines()
    table = np.zeros((len(lines), 4), dtype=np.int64)
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) != 4:
            raise DataError(f"{path}:{number}: expected 4 tab-separated fields, got {len(fields)}")
        table[number - 1] = [_int(path, number, f) for f in fields]
    users, items, stars, times = table.T
    bad = np.flatnonzero((stars < 1) | (stars > 5))
    if len(bad):
        raise DataError(f"{path}:{bad[0] + 1}: rating {stars[bad[0]]} outside 1-5")
    user_idx = _index(path, "user", users, user_raw)
    item_idx = _index(path, "item", items, item_raw)
    return Interactions(user_idx, item_idx, stars.astype(np.float32), times, len(user_raw), len(item_raw))


def _index(path: Path, kind: str, raw: np.ndarray, known: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(known, raw)
    pos = np.minimum(pos, len(known) - 1)
    bad = np.flatnonzero(known[pos] != raw)
    if len(bad):
        raise DataError(f"{path}:{bad[0] + 1}: unknown {kind} id {raw[bad[0]]}")
    return (pos + 1).astype(np.int64)
