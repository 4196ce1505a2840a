"""Readers for every supported ratings layout, into one table form (`RawDataset`) that `training.data` indexes.

Layouts (`detect_layout` tells them apart by the files a folder holds):

- ``ml-100k``: ``u.data``, ``u.item``, ``u.user``, ``u.genre`` (read by `training.data.load_movielens`).
- ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat``, ``::``-separated, latin-1; whole stars.
- ``ml-10m``: ``ratings.dat``, ``movies.dat`` (no ``users.dat``), ``::``-separated; half stars.
- ``ml-latest``: ``ratings.csv`` (``userId,movieId,rating,timestamp``) and ``movies.csv``
  (``movieId,title,genres``, quoted titles, ``|`` genres): ML-20M, ML-25M, ML-32M, ml-latest, ml-latest-small.
- ``file``: one ratings file (CSV, TSV or Parquet) with user, item, rating and optionally timestamp columns
  (names in `Columns`), plus an optional items file (id, title, genres).

Big files are read by pandas' C parser or pyarrow with fixed dtypes, so a 25M-rating file costs a few seconds
and its arrays, not Python objects per row. When the fast read fails, the file is read again as text to name
the first bad line (or Parquet row), so an error never says only "could not convert".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "LAYOUTS",
    "Columns",
    "DataError",
    "RawDataset",
    "describe_unknown",
    "detect_layout",
    "read_layout",
]

# What each layout is recognised by, for the message a folder in no known layout gets.
LAYOUTS: dict[str, str] = {
    "ml-100k": "u.data, u.item, u.user, u.genre (MovieLens 100K)",
    "ml-1m": "ratings.dat, movies.dat, users.dat ('::'-separated; MovieLens 1M)",
    "ml-10m": "ratings.dat, movies.dat without users.dat ('::'-separated, half stars; MovieLens 10M)",
    "ml-latest": "ratings.csv and movies.csv (MovieLens 20M, 25M, 32M, ml-latest, ml-latest-small)",
    "file": "a single ratings file (.csv, .tsv or .parquet) with user, item, rating[, timestamp] columns",
}
# The scale each MovieLens release documents; a generic file's comes from its data (or the options).
SCALES: dict[str, tuple[float, float]] = {
    "ml-100k": (1.0, 5.0),
    "ml-1m": (1.0, 5.0),
    "ml-10m": (0.5, 5.0),
    "ml-latest": (0.5, 5.0),
}
NO_GENRES = "(no genres listed)"
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None, ".parquet": None, ".pq": None}


class DataError(ValueError):
    """Bad input data; the message names the file and, where there is one, the line (or Parquet row)."""


LoaderError = DataError


@dataclass(frozen=True)
class Columns:
    """Column names of a generic ratings file (and of its optional items file)."""

    user: str = "user"
    item: str = "item"
    rating: str = "rating"
    timestamp: str | None = "timestamp"  # None, or absent from the file: the file's row order is the time
    sep: str | None = None  # None: from the suffix (.csv comma, .tsv tab)
    items: Path | None = None  # optional items file: the item column, title and genres
    title: str = "title"
    genres: str = "genres"  # '|'-separated genre names; optional in the items file
    rating_min: float | None = None  # None: the smallest rating in the file
    rating_max: float | None = None  # None: the largest


@dataclass
class RawDataset:
    """Ratings and catalog as tables with raw ids, before indexing (see `training.data.from_raw`).

    ``ratings`` has int64 ``user``, ``item``, ``timestamp`` and float32 ``rating``, in file order; row k is
    line ``first_line + k`` of ``ratings_path`` (Parquet: row k), so later checks can still name a line.
    ``items``: ``item_id``, ``title``, ``genres`` (list of names), or None. ``users``: ``user_id``, ``age``,
    ``gender``, ``occupation`` (ML-1M's demographics), or None.
    """

    name: str
    ratings: pd.DataFrame
    ratings_path: Path
    first_line: int
    rating_scale: tuple[float, float]
    items: pd.DataFrame | None = None
    items_path: Path | None = None
    users: pd.DataFrame | None = None
    row_word: str = "line"  # "row" for Parquet
    notes: list[str] = field(default_factory=list)

    def where(self, row: int) -> str:
        """``path:line`` (or ``path row n``) of ratings row `row` (0-based)."""
        if self.row_word == "row":
            return f"{self.ratings_path} row {row + 1}"
        return f"{self.ratings_path}:{row + self.first_line}"


def detect_layout(path: Path) -> str | None:
    """The layout of `path` (a folder, or a single ratings file), or None if it is in no known layout."""
    if path.is_file():
        return "file" if path.suffix.lower() in TABLE_SUFFIXES else None
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    if "u.data" in names:
        return "ml-100k"
    if {"ratings.dat", "movies.dat"} <= names:
        return "ml-1m" if "users.dat" in names else "ml-10m"
    if {"ratings.csv", "movies.csv"} <= names:
        return "ml-latest"
    return None


def describe_unknown(path: Path, origin: str, shown: Path | None = None) -> str:
    """One message naming what `path` (shown as `shown`, e.g. the zip it came from) holds and the layouts
    supported."""
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir()) if path.is_dir() else []
    shown = ", ".join(found[:20]) + (f", ... ({len(found)} entries)" if len(found) > 20 else "")
    supported = "; ".join(f"{name}: {files}" for name, files in LAYOUTS.items())
    return (
        f"{shown or path} (from {origin}) is in no known layout: it holds {shown or 'nothing'}. Supported layouts: "
        f"{supported}. For your own ratings pass the file itself (--data ratings.csv, with --user-col etc. "
        f"if its columns are named otherwise)."
    )


def read_layout(path: Path, layout: str, columns: Columns | None = None) -> RawDataset:
    """Read `path` in `layout` (any but ``ml-100k``, which `training.data.load_movielens` reads)."""
    readers: dict[str, Callable[[], RawDataset]] = {
        "ml-1m": lambda: _read_dat(path, "ml-1m", with_users=True),
        "ml-10m": lambda: _read_dat(path, "ml-10m", with_users=False),
        "ml-latest": lambda: _read_latest(path),
        "file": lambda: read_ratings_file(path, columns or Columns()),
    }
    if layout not in readers:
        raise LoaderError(f"{path}: no reader for layout {layout!r}")
    return readers[layout]()


# --- MovieLens 1M / 10M ------------------------------------------------------------------------------------


def _read_dat(directory: Path, name: str, *, with_users: bool) -> RawDataset:
    path = directory / "ratings.dat"
    # '::' as a separator needs pandas' slow Python engine; ':' with every other field dropped is the same
    # table through the C parser (ids, stars and timestamps never contain ':').
    ratings = _read_numeric(
        path,
        sep=":",
        header=False,
        positions=[0, 2, 4, 6],
        names=["user", "item", "rating", "timestamp"],
        n_fields=7,
        shown_sep="::",
        encoding="latin-1",
    )
    raw = RawDataset(name, ratings, path, 1, SCALES[name])
    raw.items, raw.items_path = _read_movies_dat(directory / "movies.dat"), directory / "movies.dat"
    if with_users:
        raw.users = _read_users_dat(directory / "users.dat")
    return raw


def _dat_lines(path: Path, n_fields: int) -> list[list[str]]:
    """A small '::' file (movies.dat, users.dat) as fields; titles may hold ':' but never '::'."""
    try:
        text = path.read_bytes().decode("latin-1")
    except FileNotFoundError:
        raise LoaderError(f"{path}: file not found") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("::")
        if len(fields) != n_fields:
            raise LoaderError(f"{path}:{number}: expected {n_fields} '::'-separated fields, got {len(fields)}")
        rows.append(fields)
    return rows


def _int_field(path: Path, line: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise LoaderError(f"{path}:{line}: expected an integer, got {value!r}") from None


def _read_movies_dat(path: Path) -> pd.DataFrame:
    rows = _dat_lines(path, 3)
    return pd.DataFrame(
        {
            "item_id": np.array([_int_field(path, i, r[0]) for i, r in enumerate(rows, 1)], dtype=np.int64),
            "title": [r[1] for r in rows],
            "genres": [_genre_list(r[2]) for r in rows],
        }
    )


def _read_users_dat(path: Path) -> pd.DataFrame:
    rows = _dat_lines(path, 5)  # UserID::Gender::Age::Occupation::Zip-code
    return pd.DataFrame(
        {
            "user_id": np.array([_int_field(path, i, r[0]) for i, r in enumerate(rows, 1)], dtype=np.int64),
            "gender": [r[1] for r in rows],
            "age": np.array([_int_field(path, i, r[2]) for i, r in enumerate(rows, 1)], dtype=np.int64),
            "occupation": [r[3] for r in rows],
        }
    )


# --- MovieLens 20M / 25M / 32M / latest ---------------------------------------------------------------------


def _read_latest(directory: Path) -> RawDataset:
    path = directory / "ratings.csv"
    header = ["userId", "movieId", "rating", "timestamp"]
    ratings = _read_numeric(
        path,
        sep=",",
        header=True,
        positions=header,
        names=["user", "item", "rating", "timestamp"],
        n_fields=4,
        shown_sep=",",
        encoding="utf-8",
    )
    items_path = directory / "movies.csv"
    items = _read_items_csv(items_path, ",", "movieId", "title", "genres", required_genres=True)
    return RawDataset("ml-latest", ratings, path, 2, SCALES["ml-latest"], items, items_path)


# --- a generic ratings file ----------------------------------------------------------------------------------


def read_ratings_file(path: Path, columns: Columns) -> RawDataset:
    """A CSV/TSV (with a header row) or Parquet ratings file, columns named by `columns`."""
    suffix = path.suffix.lower()
    wanted = [columns.user, columns.item, columns.rating]
    names = ["user", "item", "rating"]
    if suffix in (".parquet", ".pq"):
        ratings, has_time = _read_parquet(path, wanted, names, columns.timestamp)
        raw = RawDataset("file", ratings, path, 0, (0.0, 0.0), row_word="row")
    else:
        sep = columns.sep or TABLE_SUFFIXES.get(suffix) or ","
        present = _header(path, sep)
        missing = [c for c in wanted if c not in present]
        if missing:
            raise LoaderError(
                f"{path}: no column {', '.join(map(repr, missing))} in its header ({', '.join(present)}); name "
                f"the columns with --user-col, --item-col, --rating-col and --timestamp-col"
            )
        has_time = columns.timestamp is not None and columns.timestamp in present
        if has_time:
            assert columns.timestamp is not None
            wanted, names = [*wanted, columns.timestamp], [*names, "timestamp"]
        ratings = _read_numeric(
            path,
            sep=sep,
            header=True,
            positions=wanted,
            names=names,
            n_fields=len(present),
            shown_sep={"\t": "tab", ",": "comma"}.get(sep, repr(sep)),
            encoding="utf-8",
        )
        raw = RawDataset("file", ratings, path, 2, (0.0, 0.0))
    if not has_time:
        # No timestamps: the file's order stands for time (temporal splits and the LSTM's order follow it).
        ratings["timestamp"] = np.arange(len(ratings), dtype=np.int64)
        raw.notes.append("no timestamp column: the file's row order is taken as time")
    if len(ratings) == 0:
        raise LoaderError(f"{path}: no ratings")
    lo = float(ratings["rating"].min()) if columns.rating_min is None else columns.rating_min
    hi = float(ratings["rating"].max()) if columns.rating_max is None else columns.rating_max
    if not lo < hi:
        raise LoaderError(
            f"{path}: the rating scale {lo:g}..{hi:g} is empty (every rating equal?); give --rating-min and "
            f"--rating-max"
        )
    raw.rating_scale = (lo, hi)
    if columns.items is not None:
        isep = columns.sep or TABLE_SUFFIXES.get(columns.items.suffix.lower()) or ","
        raw.items = _read_items_csv(columns.items, isep, columns.item, columns.title, columns.genres)
        raw.items_path = columns.items
    return raw


def _header(path: Path, sep: str) -> list[str]:
    try:
        frame = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8")
    except FileNotFoundError:
        raise LoaderError(f"{path}: file not found") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise LoaderError(f"{path}:1: unreadable header ({e})") from None
    return [str(c) for c in frame.columns]


def _read_parquet(path: Path, wanted: list[str], names: list[str], timestamp: str | None) -> tuple[pd.DataFrame, bool]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise LoaderError(f"{path}: file not found") from None
    except (OSError, pa.ArrowException) as e:
        raise LoaderError(f"{path}: not a readable Parquet file ({e})") from None
    present = list(schema.names)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise LoaderError(
            f"{path}: no column {', '.join(map(repr, missing))} (it has {', '.join(present)}); name the columns "
            f"with --user-col, --item-col, --rating-col and --timestamp-col"
        )
    has_time = timestamp is not None and timestamp in present
    if has_time:
        assert timestamp is not None
        wanted, names = [*wanted, timestamp], [*names, "timestamp"]
    table = pq.read_table(path, columns=wanted)
    out = {}
    for column, name in zip(wanted, names, strict=True):
        values = table.column(column)
        if values.null_count:
            row = int(pc.index(pc.is_null(values), True).as_py())
            raise LoaderError(f"{path} row {row + 1}: column {column!r} is empty")
        integer = name != "rating"
        kind = values.type
        if pa.types.is_timestamp(kind) and name == "timestamp":
            values = pc.cast(values, pa.timestamp("s")).cast(pa.int64())
        elif integer and not pa.types.is_integer(kind):
            raise LoaderError(f"{path}: column {column!r} has type {kind}, expected integers (ids and unix seconds)")
        elif not integer and not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise LoaderError(f"{path}: column {column!r} has type {kind}, expected numbers")
        array = values.to_numpy()
        out[name] = array.astype(np.int64 if integer else np.float32)
        if not integer:
            bad = np.flatnonzero(~np.isfinite(array))
            if len(bad):
                raise LoaderError(f"{path} row {bad[0] + 1}: rating {array[bad[0]]} is not a number")
    return pd.DataFrame(out), has_time


def _read_items_csv(
    path: Path, sep: str, id_col: str, title_col: str, genres_col: str, *, required_genres: bool = False
) -> pd.DataFrame:
    """An items table: id, title (quoted where it holds the separator) and optional '|'-separated genres."""
    present = _header(path, sep)
    need = [id_col, title_col] + ([genres_col] if required_genres else [])
    missing = [c for c in need if c not in present]
    if missing:
        raise LoaderError(f"{path}: no column {', '.join(map(repr, missing))} in its header ({', '.join(present)})")
    usecols = [id_col, title_col] + ([genres_col] if genres_col in present else [])
    try:
        frame = pd.read_csv(
            path, sep=sep, usecols=usecols, dtype=str, keep_default_na=False, encoding="utf-8", skip_blank_lines=False
        )
    except UnicodeDecodeError as e:
        raise LoaderError(f"{path}: not UTF-8 text ({e})") from None
    except pd.errors.ParserError as e:
        raise LoaderError(_parser_message(path, e, sep)) from None
    ids = pd.to_numeric(frame[id_col], errors="coerce")
    bad = np.flatnonzero(ids.isna().to_numpy() | (ids.to_numpy() != np.floor(ids.to_numpy())))
    if len(bad):
        raise LoaderError(f"{path}:{bad[0] + 2}: expected an integer id, got {frame[id_col].iloc[bad[0]]!r}")
    ids = ids.to_numpy().astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise LoaderError(f"{path}: duplicate ids")
    genres = frame[genres_col] if genres_col in frame else pd.Series([""] * len(frame))
    return pd.DataFrame({"item_id": ids, "title": frame[title_col].to_numpy(), "genres": genres.map(_genre_list)})


def _genre_list(text: str) -> list[str]:
    return [g for g in text.strip().split("|") if g and g != NO_GENRES]


# --- fast numeric tables with line-numbered errors -----------------------------------------------------------

_INTEGER = {"user", "item", "timestamp"}


def _read_numeric(
    path: Path,
    *,
    sep: str,
    header: bool,
    positions: list[int] | list[str],
    names: list[str],
    n_fields: int,
    shown_sep: str,
    encoding: str,
) -> pd.DataFrame:
    """Columns `positions` of a delimited file as int64 (ids, timestamps) and float32 (ratings).

    Fast path: pandas' C parser with fixed dtypes. On any failure, the file is read again as text and the
    first bad line named.
    """
    dtypes = {p: (np.int64 if n in _INTEGER else np.float64) for p, n in zip(positions, names, strict=True)}
    first_line = 2 if header else 1
    kwargs = {
        "sep": sep,
        "header": 0 if header else None,
        "usecols": positions,
        "encoding": encoding,
        "skip_blank_lines": False,
        "engine": "c",
    }
    if not path.is_file():
        raise LoaderError(f"{path}: file not found")
    if header and (missing := [str(p) for p in positions if p not in _header(path, sep)]):
        raise LoaderError(f"{path}:1: the header lacks {', '.join(missing)}")
    try:
        frame = pd.read_csv(path, dtype=dtypes, **kwargs)  # type: ignore[call-overload]
    except pd.errors.ParserError as e:
        raise LoaderError(_parser_message(path, e, shown_sep)) from None
    except UnicodeDecodeError as e:
        raise LoaderError(f"{path}: not {encoding} text ({e})") from None
    except (ValueError, OverflowError):
        frame = None
    if frame is None or any(frame[p].isna().any() for p in positions):
        _name_bad_line(path, kwargs, positions, names, first_line, n_fields, shown_sep)
        raise LoaderError(f"{path}: unreadable")  # _name_bad_line always raises; this satisfies the checker
    _check_field_counts(path, sep, n_fields, shown_sep)
    out = pd.DataFrame({n: frame[p].to_numpy() for p, n in zip(positions, names, strict=True)})
    rating = out["rating"].to_numpy()
    bad = np.flatnonzero(~np.isfinite(rating))
    if len(bad):
        raise LoaderError(f"{path}:{bad[0] + first_line}: rating {rating[bad[0]]} is not a number")
    out["rating"] = rating.astype(np.float32)
    return out


def _check_field_counts(path: Path, sep: str, n_fields: int, shown_sep: str) -> None:
    """Name the first line with too many fields: pandas drops the extra ones silently when it reads a subset
    of the columns. Counted on the raw bytes with numpy (a few seconds at 25M lines); skipped for files with
    quotes, whose separators may sit inside a field (the parser has checked those)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if len(sep) != 1 or (raw == ord('"')).any():
        return
    ends = np.flatnonzero(raw == ord("\n"))
    if len(ends) == 0 or ends[-1] != len(raw) - 1:
        ends = np.r_[ends, len(raw)]  # a last line without a newline
    seps = np.flatnonzero(raw == ord(sep))
    starts = np.r_[0, ends[:-1] + 1]
    counts = np.searchsorted(seps, ends) - np.searchsorted(seps, starts)
    per_field = 2 if shown_sep == "::" else 1  # '::' read as ':'
    expected = n_fields - 1  # separators per line (n_fields counts the pieces between single characters)
    bad = np.flatnonzero((counts != expected) & (ends > starts))  # blank lines are reported elsewhere
    if len(bad):
        line = int(bad[0]) + 1
        got = int(counts[bad[0]]) // per_field + 1
        want = (n_fields - 1) // per_field + 1
        raise LoaderError(f"{path}:{line}: expected {want} {shown_sep}-separated fields, got {got}")


def _name_bad_line(
    path: Path,
    kwargs: dict[str, object],
    positions: list[int] | list[str],
    names: list[str],
    first_line: int,
    n_fields: int,
    shown_sep: str,
) -> None:
    text = pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)  # type: ignore[call-overload]
    for position, name in zip(positions, names, strict=True):
        column = text[position]
        empty = column.str.strip().eq("").to_numpy()
        if empty.any():
            row = int(np.argmax(empty))
            raise LoaderError(
                f"{path}:{row + first_line}: expected {n_fields} {shown_sep}-separated fields, found an empty one "
                f"(a blank or short line?)"
            )
        if name in _INTEGER:
            ok = column.str.fullmatch(r"\s*[+-]?\d+\s*").to_numpy(dtype=bool)
            if not ok.all():
                row = int(np.argmin(ok))
                raise LoaderError(f"{path}:{row + first_line}: expected an integer {name}, got {column.iloc[row]!r}")
        else:
            number = pd.to_numeric(column, errors="coerce")
            bad = number.isna().to_numpy()
            if bad.any():
                row = int(np.argmax(bad))
                raise LoaderError(f"{path}:{row + first_line}: expected a number, got {column.iloc[row]!r}")
    raise LoaderError(f"{path}: could not be read as numbers (ids beyond 64 bits?)")


def _parser_message(path: Path, error: Exception, shown_sep: str) -> str:
    """pandas' "Expected 4 fields in line 7, saw 5" as ``path:7: expected 4 ... fields, got 5``."""
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if match:
        want, line, got = (int(g) for g in match.groups())
        if shown_sep == "::":  # read as ':'-separated: n fields are 2n - 1 pieces
            want, got = (want + 1) // 2, (got + 1) // 2
        return f"{path}:{line}: expected {want} {shown_sep}-separated fields, got {got}"
    return f"{path}: unreadable ({str(error).strip()})"
