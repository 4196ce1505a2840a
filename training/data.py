"""Ratings data: every supported layout into one `Interactions` type, with its splits.

Every model consumes `Interactions` (after spotlight): parallel arrays of user and item *indices* (1..n; 0 is
padding), star ratings and timestamps, the sizes of the index spaces and the rating scale. For ML-100K raw ids
become indices through the complete user and item lists in `u.user` / `u.item`; for the other layouts
(`training.loaders`) through the users and items that have ratings, in raw id order. Every split of one data set
shares its index space.

Splits: ML-100K's canonical folds (u1..u5, ua, ub) where the data set has them; for every data set ``random``
(a seeded 80/20 of all ratings), ``temporal`` (each user's last `TEMPORAL_LAST` ratings held out), ``cvI/K``
(fold I of a seeded K-fold partition) and ``full`` (everything, no test).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from training.loaders import Columns, DataError, RawDataset, detect_layout, read_layout

__all__ = ["DataError"]

log = logging.getLogger(__name__)

GENRES_FILE = "u.genre"
CANONICAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
GENERAL_SPLITS = ("random", "temporal", "full")
SPLITS = (*CANONICAL_SPLITS, *GENERAL_SPLITS)
RANDOM_TEST_FRACTION = 0.2
TEMPORAL_LAST = 10  # ratings per user held out by the temporal split (users with fewer + 1 stay in train)
_CV = re.compile(r"^cv(\d+)/(\d+)$")


def check_split_name(name: str) -> None:
    """Raise `DataError` unless `name` is a split some data set has (see the module docstring)."""
    match = _CV.match(name)
    if match:
        fold, k = int(match.group(1)), int(match.group(2))
        if not (k >= 2 and 1 <= fold <= k):
            raise DataError(f"split {name!r}: fold I of K needs K >= 2 and 1 <= I <= K")
        return
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)} or cvI/K (e.g. cv1/5)")


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
    ratings : float32 stars in [rating_min, rating_max]
    timestamps : int64 unix seconds (or any order: the file order of a ratings file without timestamps)
    num_users, num_items : sizes of the index spaces (embeddings need one more row, for padding)
    features : side features of the same users and items, where known
    rating_min, rating_max : the data set's rating scale; training maps it onto [0, 1]
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int
    features: SideFeatures | None = None
    rating_min: float = 1.0
    rating_max: float = 5.0

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
        if not self.rating_min < self.rating_max:
            raise ValueError(f"Interactions: empty rating scale {self.rating_min}..{self.rating_max}")
        lo, hi = self.rating_min, self.rating_max
        if not np.all(np.isfinite(self.ratings)) or self.ratings.min() < lo or self.ratings.max() > hi:
            raise ValueError(f"Interactions: ratings must be finite stars in [{lo:g}, {hi:g}]")

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def rating_scale(self) -> tuple[float, float]:
        return self.rating_min, self.rating_max

    def subset(self, index: np.ndarray) -> Interactions:
        """The interactions at `index` (a boolean mask or integer positions), same index space."""
        return replace(
            self,
            user_ids=self.user_ids[index],
            item_ids=self.item_ids[index],
            ratings=self.ratings[index],
            timestamps=self.timestamps[index],
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

    def to_histories(self, window: int = 10) -> Histories:
        """Every user's whole history in time order, CSR by user index (no users x longest-history array).

        `Histories.padded` lays out the rows of a batch of users the way the LSTM runs them: left-padded with 0
        so the first window is the short one and every window boundary falls on a multiple of `window`, then
        right-padded to the batch's longest.
        """
        indptr, order = self.user_histories()
        return Histories(indptr, self.item_ids[order], self.ratings[order], window)

    def user_histories(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR view of each user's interactions in time order: ``(indptr [num_users + 2], positions)``."""
        order = self.time_order()
        counts = np.bincount(self.user_ids, minlength=self.num_users + 1)
        return np.r_[0, np.cumsum(counts)], order


@dataclass(frozen=True)
class Histories:
    """Users' histories in time order: user ``u``'s items are ``items[indptr[u]:indptr[u + 1]]`` (CSR).

    Memory is linear in ratings; padded rectangles exist only per batch of users (`padded`, `buckets`).
    """

    indptr: np.ndarray  # [num_users + 2] int64
    items: np.ndarray  # int64, users' items back to back
    ratings: np.ndarray  # float32, alongside
    window: int

    @property
    def lengths(self) -> np.ndarray:
        """Interactions of each user index ``[num_users + 1]``."""
        return np.diff(self.indptr)

    @property
    def offsets(self) -> np.ndarray:
        """Left pads of each user, so every window boundary falls on a multiple of `window`."""
        return (-self.lengths) % self.window

    @property
    def ends(self) -> np.ndarray:
        """Padded length of each user's row (pads plus interactions)."""
        return self.offsets + self.lengths

    def padded(self, users: np.ndarray, min_width: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(items [B, W], ratings [B, W], ends [B])`` of `users`, rows laid out as `to_histories` says.

        ``W`` is the batch's longest padded row (at least `min_width`), so memory is batch x its longest.
        """
        users = np.asarray(users, dtype=np.int64)
        lengths = self.lengths[users]
        offsets = (-lengths) % self.window
        ends = offsets + lengths
        width = max(int(ends.max(initial=0)), min_width)
        width += (-width) % self.window
        rows = np.repeat(np.arange(len(users)), lengths)
        starts = self.indptr[users]
        within = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        src = np.repeat(starts, lengths) + within
        items = np.zeros((len(users), width), dtype=np.int64)
        ratings = np.zeros((len(users), width), dtype=np.float32)
        cols = np.repeat(offsets, lengths) + within
        items[rows, cols] = self.items[src]
        ratings[rows, cols] = self.ratings[src]
        return items, ratings, ends

    def buckets(self, users: np.ndarray, max_cells: int = 1 << 20) -> Iterator[np.ndarray]:
        """`users` in batches of similar length, each at most `max_cells` padded cells (a longer history
        gets a batch of its own), so evaluation memory is bounded whatever the longest history."""
        users = np.asarray(users, dtype=np.int64)
        ends = np.maximum(self.ends[users], 1)
        order = np.argsort(ends, kind="stable")
        lo = 0
        while lo < len(order):
            # The batch's width is its last (longest) row's: grow while rows x width stays within budget.
            hi = lo + 1
            step = max(1, max_cells // int(ends[order[lo]]))
            hi = min(len(order), lo + step)
            while hi > lo + 1 and (hi - lo) * int(ends[order[hi - 1]]) > max_cells:
                hi = lo + max(1, max_cells // int(ends[order[hi - 1]]))
            yield users[order[lo:hi]]
            lo = hi


@dataclass(frozen=True)
class MovieLens:
    """The whole data set: all ratings plus the catalog needed to serve them."""

    ratings: Interactions
    user_raw_ids: np.ndarray  # raw id of user index k + 1
    item_raw_ids: np.ndarray  # raw id of item index k + 1
    items: pd.DataFrame  # item_id, title, year, genres (list of names), in index order
    genres: list[str]
    directory: Path
    sha256: str  # of the ratings file (u.data, ratings.dat, ratings.csv or the given file)
    name: str = "ml-100k"  # layout: ml-100k, ml-1m, ml-10m, ml-latest or file
    canonical_splits: tuple[str, ...] = CANONICAL_SPLITS  # the folds shipped as files (ML-100K's only)
    notes: list[str] = field(default_factory=list)  # what the loader assumed, for the CLI to print

    @property
    def rating_scale(self) -> tuple[float, float]:
        return self.ratings.rating_scale

    def split(self, name: str, seed: int = 0) -> tuple[Interactions, Interactions]:
        """``(train, test)`` for a split named as in the module docstring (``full``: test is empty).

        `seed` drives ``random`` and ``cvI/K`` only; the same seed gives the same split.
        """
        check_split_name(name)
        r = self.ratings
        if name == "full":
            return r, r.subset(np.zeros(len(r), dtype=bool))
        if name == "random":
            test = np.random.default_rng(seed).random(len(r)) < RANDOM_TEST_FRACTION
            return r.subset(~test), r.subset(test)
        if name == "temporal":
            return temporal_split(r, TEMPORAL_LAST)
        if match := _CV.match(name):
            fold, k = int(match.group(1)), int(match.group(2))
            # A seeded permutation dealt round-robin: K disjoint folds of equal size (+-1) covering every rating.
            which = np.empty(len(r), dtype=np.int64)
            which[np.random.default_rng(seed).permutation(len(r))] = np.arange(len(r)) % k
            test = which == fold - 1
            return r.subset(~test), r.subset(test)
        if name not in self.canonical_splits:
            raise DataError(
                f"{self.name} has no canonical split {name!r} (only ML-100K ships u1..u5, ua, ub); use one of "
                f"{', '.join(GENERAL_SPLITS)} or cvI/K"
            )
        return self._read_ratings(f"{name}.base"), self._read_ratings(f"{name}.test")

    def _read_ratings(self, filename: str) -> Interactions:
        ratings = _ratings(self.directory / filename, self.user_raw_ids, self.item_raw_ids)
        return replace(ratings, features=self.ratings.features)


def temporal_split(data: Interactions, last: int) -> tuple[Interactions, Interactions]:
    """Each user's `last` latest ratings (by time, then item) as test; users with at most `last` ratings
    stay wholly in train, so every test user is known."""
    indptr, order = data.user_histories()
    lengths = np.diff(indptr)
    users = np.repeat(np.arange(len(lengths)), lengths)
    rank_from_end = indptr[users + 1] - 1 - np.arange(len(order))  # 0 for each user's latest
    held = (rank_from_end < last) & (lengths[users] > last)
    test = np.zeros(len(data), dtype=bool)
    test[order[held]] = True
    return data.subset(~test), data.subset(test)


def validation_split(
    train: Interactions, fraction: float, generator: np.random.Generator
) -> tuple[Interactions, Interactions]:
    """Carve a random `fraction` of `train` out for early stopping; test data never enters here."""
    mask = generator.random(len(train)) < fraction
    return train.subset(~mask), train.subset(mask)


def load_dataset(path: Path, columns: Columns | None = None) -> MovieLens:
    """Read a data set in any supported layout (`training.loaders.LAYOUTS`): a folder or a ratings file.

    Parameters
    ----------
    path : a folder in a MovieLens layout, or a generic ratings file (CSV, TSV or Parquet)
    columns : column names and options of a generic ratings file (ignored for MovieLens layouts)

    Raises
    ------
    DataError
        An unknown layout (the message lists what was found and what is supported), a missing file, or a
        malformed line (named by file and line, or Parquet row). Nothing is written before all is read.
    """
    from training.loaders import describe_unknown

    path = Path(path)
    layout = detect_layout(path)
    if layout is None:
        raise DataError(describe_unknown(path, "--data"))
    if layout == "ml-100k":
        return load_movielens(path)
    raw = read_layout(path, layout, columns)
    return from_raw(raw)


def load_movielens(directory: Path) -> MovieLens:
    """Read u.user, u.item, u.genre and u.data from a GroupLens ML-100K directory (other layouts: `load_dataset`).

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


def from_raw(raw: RawDataset) -> MovieLens:
    """Index a `RawDataset`: users and items that have ratings, in raw id order, become indices 1..n.

    Items rated but missing from the items file are an error naming the first such line; items listed but
    never rated are left out (their embeddings would never be trained). Genres become item features wherever
    the data set has them; ML-1M's demographics become user features; both are skipped where absent.
    """
    r = raw.ratings
    lo, hi = raw.rating_scale
    rating = r["rating"].to_numpy(np.float32)
    bad = np.flatnonzero((rating < lo) | (rating > hi))
    if len(bad):
        raise DataError(f"{raw.where(int(bad[0]))}: rating {rating[bad[0]]:g} outside {lo:g}-{hi:g}")
    users = r["user"].to_numpy(np.int64)
    items = r["item"].to_numpy(np.int64)
    user_raw, user_idx = np.unique(users, return_inverse=True)
    item_raw, item_idx = np.unique(items, return_inverse=True)
    titles: list[str]
    genre_lists: list[list[str]]
    if raw.items is not None:
        known = raw.items.sort_values("item_id", kind="stable")
        known_ids = known["item_id"].to_numpy(np.int64)
        pos = np.minimum(np.searchsorted(known_ids, item_raw), len(known_ids) - 1)
        missing = np.flatnonzero(known_ids[pos] != item_raw) if len(known_ids) else np.arange(len(item_raw))
        if len(missing):
            row = int(np.flatnonzero(items == item_raw[missing[0]])[0])
            raise DataError(f"{raw.where(row)}: item id {item_raw[missing[0]]} is not in {raw.items_path}")
        picked = known.iloc[pos]
        titles = [str(t) for t in picked["title"]]
        genre_lists = list(picked["genres"])
    else:
        titles = [f"Item {i}" for i in item_raw]
        genre_lists = [[] for _ in item_raw]
    genres = sorted({g for gs in genre_lists for g in gs})
    item_frame = pd.DataFrame(
        {
            "item_id": item_raw,
            "title": titles,
            "year": pd.array([_year(t, "") for t in titles], dtype="Int64"),
            "genres": genre_lists,
        }
    )
    interactions = Interactions(
        (user_idx + 1).astype(np.int64),
        (item_idx + 1).astype(np.int64),
        rating,
        r["timestamp"].to_numpy(np.int64),
        len(user_raw),
        len(item_raw),
        rating_min=lo,
        rating_max=hi,
    )
    features = _raw_features(raw, user_raw, genre_lists, genres)
    if features is not None:
        interactions = replace(interactions, features=features)
    return MovieLens(
        ratings=interactions,
        user_raw_ids=user_raw,
        item_raw_ids=item_raw,
        items=item_frame,
        genres=genres,
        directory=raw.ratings_path.parent,
        sha256=_file_sha256(raw.ratings_path),
        name=raw.name,
        canonical_splits=(),
        notes=list(raw.notes),
    )


def _raw_features(
    raw: RawDataset, user_raw: np.ndarray, genre_lists: list[list[str]], genres: list[str]
) -> SideFeatures | None:
    """Genre features for items and ML-1M demographics for users; None when the data set has neither."""
    if not genres and raw.users is None:
        return None
    code = {g: k + 1 for k, g in enumerate(genres)}
    width = max(1, max((len(g) for g in genre_lists), default=0))
    item_features = np.zeros((len(genre_lists) + 1, width), np.int64)
    for row, names in enumerate(genre_lists, 1):
        item_features[row, : len(names)] = [code[g] for g in names]
    if raw.users is None:
        # No demographics: a user-feature table with no features (index 0 only), so the MF learns none.
        user_features, n_user_features = np.zeros((len(user_raw) + 1, 1), np.int64), 0
    else:
        table = raw.users.sort_values("user_id", kind="stable")
        ids = table["user_id"].to_numpy(np.int64)
        pos = np.minimum(np.searchsorted(ids, user_raw), len(ids) - 1)
        if len(ids) == 0 or (ids[pos] != user_raw).any():
            raise DataError(f"{raw.ratings_path.parent / 'users.dat'}: some rated users are missing")
        rows = table.iloc[pos]
        occupations = sorted(set(rows["occupation"]))
        band = np.digitize(rows["age"].to_numpy(), AGE_BANDS) + 1
        gender = len(AGE_BANDS) + 2 + (rows["gender"].to_numpy() == "M").astype(np.int64)
        occupation = len(AGE_BANDS) + 4 + np.searchsorted(occupations, rows["occupation"].to_numpy())
        user_features = np.vstack([np.zeros((1, 3), np.int64), np.stack([band, gender, occupation], axis=1)])
        n_user_features = len(AGE_BANDS) + 3 + len(occupations)
    return SideFeatures(user_features.astype(np.int64), item_features, n_user_features, len(genres))


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
