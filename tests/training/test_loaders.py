"""Every supported layout, read from small files the tests write (never the real data sets)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import DataError, load_dataset
from training.datasource import DataSourceError, resolve_data_dir
from training.loaders import Columns

ML1M_RATINGS = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n2::30::1::978300275\n"
ML1M_MOVIES = (
    "10::Amélie (2001)::Comedy|Romance\n20::Star Wars: Episode IV (1977)::Action|Sci-Fi\n30::Heat (1995)::Action\n"
)
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
LATEST_RATINGS = "userId,movieId,rating,timestamp\n7,100,4.5,1\n7,205,0.5,2\n9,100,3.0,3\n9,999,5.0,4\n"
LATEST_MOVIES = (
    "movieId,title,genres\n"
    '100,"Lock, Stock and Two Smoking Barrels (1998)",Comedy|Crime\n'
    "205,Unseen (2019),(no genres listed)\n"
    '999,"American President, The (1995)",Comedy|Drama|Romance\n'
    "500,Never Rated (2000),Drama\n"
)


def _write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        data = text if isinstance(text, bytes) else text.encode("latin-1" if name.endswith(".dat") else "utf-8")
        (directory / name).write_bytes(data)
    return directory


def ml1m(tmp_path: Path) -> Path:
    return _write(tmp_path / "ml-1m", {"ratings.dat": ML1M_RATINGS, "movies.dat": ML1M_MOVIES, "users.dat": ML1M_USERS})


def latest(tmp_path: Path, ratings: str = LATEST_RATINGS) -> Path:
    return _write(tmp_path / "ml-latest-small", {"ratings.csv": ratings, "movies.csv": LATEST_MOVIES})


def test_ml1m_folder_with_latin1_titles_and_demographics(tmp_path: Path) -> None:
    data = load_dataset(ml1m(tmp_path))
    assert data.name == "ml-1m" and data.rating_scale == (1.0, 5.0)
    assert (data.ratings.num_users, data.ratings.num_items, len(data.ratings)) == (2, 3, 4)
    assert list(data.items["title"]) == ["Amélie (2001)", "Star Wars: Episode IV (1977)", "Heat (1995)"]
    assert list(data.items["year"]) == [2001, 1977, 1995]
    assert data.genres == ["Action", "Comedy", "Romance", "Sci-Fi"]
    f = data.ratings.features
    assert f is not None and f.num_user_features > 0 and f.user_features.shape == (3, 3)
    # Age code 1 is the youngest band, 56 the oldest; F and M differ.
    assert f.user_features[1, 0] == 1 and f.user_features[2, 0] == 7 and f.user_features[1, 1] != f.user_features[2, 1]
    assert f.item_features[1].tolist() == [2, 3]  # Amélie: Comedy, Romance


def test_ml10m_folder_has_half_stars_and_no_user_features(tmp_path: Path) -> None:
    ratings = "1::10::4.5::1\n1::20::0.5::2\n2::10::3::3\n"
    directory = _write(tmp_path / "ml-10M100K", {"ratings.dat": ratings, "movies.dat": ML1M_MOVIES})
    data = load_dataset(directory)
    assert data.name == "ml-10m" and data.rating_scale == (0.5, 5.0)
    assert sorted(data.ratings.ratings.tolist()) == [0.5, 3.0, 4.5]
    assert data.ratings.num_items == 2  # Heat is never rated: not indexed
    f = data.ratings.features
    assert f is not None and f.num_user_features == 0 and f.num_item_features == 4


def test_latest_layout_quoted_titles_and_no_genres_listed(tmp_path: Path) -> None:
    data = load_dataset(latest(tmp_path))
    assert data.name == "ml-latest" and data.rating_scale == (0.5, 5.0)
    assert data.item_raw_ids.tolist() == [100, 205, 999]  # 500 is never rated
    assert data.items["title"].tolist()[0] == "Lock, Stock and Two Smoking Barrels (1998)"
    assert data.items["genres"].tolist() == [["Comedy", "Crime"], [], ["Comedy", "Drama", "Romance"]]
    assert data.ratings.ratings.dtype == np.float32 and 0.5 in data.ratings.ratings.tolist()


def test_folder_holding_a_layout_folder_and_a_user_zip_of_it(tmp_path: Path) -> None:
    inner = latest(tmp_path / "parent")
    assert resolve_data_dir(tmp_path / "parent", cache_dir=tmp_path / "cache", download=False) == inner
    archive = tmp_path / "ml-latest-small.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in inner.iterdir():
            zf.write(f, f"ml-latest-small/{f.name}")
    extracted = resolve_data_dir(archive, cache_dir=tmp_path / "cache", download=False)
    assert load_dataset(extracted).ratings.num_users == 2


def test_user_made_ml100k_zip_is_accepted(tmp_path: Path) -> None:
    """Zipped by hand, so its digest is not the official one: read as the user's own (CRCs still checked)."""
    files = {
        "u.data": "1\t1\t5\t874965758\n2\t1\t4\t878542960\n",
        "u.item": "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
        "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
        "u.genre": "".join(f"g{k}|{k}\n" for k in range(19)),
    }
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"ml-100k/{name}", text)
    directory = resolve_data_dir(archive, cache_dir=tmp_path / "cache", download=False)
    assert (directory / "u.data").is_file()
    assert len(load_dataset(directory).ratings) == 2


def test_ratings_file_is_returned_as_a_file_not_checked_as_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating,timestamp\n1,2,3,4\n")
    assert resolve_data_dir(path, cache_dir=tmp_path / "cache", download=False) == path


def test_unknown_layout_lists_what_was_found_and_what_is_supported(tmp_path: Path) -> None:
    folder = _write(tmp_path / "mystery", {"scores.txt": "1 2 3\n", "README": "hi"})
    with pytest.raises(DataSourceError) as info:
        resolve_data_dir(folder, cache_dir=tmp_path / "cache", download=False)
    message = str(info.value)
    assert "README, scores.txt" in message
    for layout in ("u.data", "ratings.dat", "users.dat", "ratings.csv", "movies.csv", ".parquet"):
        assert layout in message


def test_generic_csv_with_renamed_columns_and_an_items_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("who,what,stars,when\n10,7,2,100\n10,8,10,50\n11,7,6,70\n")
    items = tmp_path / "items.csv"
    items.write_text('what,title,genres\n7,"Seven, The (1995)",Crime|Drama\n8,Eight,\n')
    columns = Columns(user="who", item="what", rating="stars", timestamp="when", items=items)
    data = load_dataset(path, columns)
    assert data.name == "file" and data.rating_scale == (2.0, 10.0)  # from the data
    assert data.items["title"].tolist() == ["Seven, The (1995)", "Eight"]
    assert data.items["year"].tolist()[0] == 1995
    assert data.genres == ["Crime", "Drama"]
    assert data.ratings.timestamps.tolist() == [100, 50, 70]


def test_generic_tsv_without_timestamps_uses_file_order(tmp_path: Path) -> None:
    path = tmp_path / "mine.tsv"
    path.write_text("user\titem\trating\n1\t5\t3.5\n1\t6\t4\n2\t5\t1\n")
    data = load_dataset(path, Columns(rating_min=1, rating_max=5))
    assert data.rating_scale == (1.0, 5.0)
    assert data.ratings.timestamps.tolist() == [0, 1, 2]
    assert any("row order" in note for note in data.notes)
    assert data.ratings.features is None  # no genres, no demographics: side features skipped
    assert data.items["title"].tolist() == ["Item 5", "Item 6"]


def test_generic_parquet_with_renamed_columns(tmp_path: Path) -> None:
    path = tmp_path / "ratings.parquet"
    frame = pd.DataFrame(
        {"uid": [3, 3, 4], "mid": [9, 8, 9], "score": [0.5, 4.5, 5.0], "ts": [1, 2, 3], "junk": ["a", "b", "c"]}
    )
    frame.to_parquet(path)
    data = load_dataset(path, Columns(user="uid", item="mid", rating="score", timestamp="ts"))
    assert (data.ratings.num_users, data.ratings.num_items) == (2, 2)
    assert data.rating_scale == (0.5, 5.0)
    assert sorted(data.ratings.ratings.tolist()) == [0.5, 4.5, 5.0]


def test_parquet_null_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "ratings.parquet"
    pd.DataFrame({"user": [1, 2, None], "item": [1, 2, 3], "rating": [1.0, 2.0, 3.0]}).to_parquet(path)
    with pytest.raises(DataError, match=r"ratings\.parquet row 3: column 'user' is empty"):
        load_dataset(path)


def test_generic_missing_column_says_which_option_to_set(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n1,2,3\n")
    with pytest.raises(DataError, match=r"no column 'user', 'item'.*--user-col"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("name", "text", "line", "problem"),
    [
        ("ratings.dat", "1::10::5::1\n1::20::x::2\n", 2, "expected a number, got 'x'"),
        ("ratings.dat", "1::10::5::1\n\n1::20::3::2\n", 2, "found an empty one (a blank or short line?)"),
        ("ratings.dat", "1::10::5::1\n1::20::3::2::9\n", 2, "expected 4 ::-separated fields, got 5"),
        ("ratings.dat", "1::10::5::1\n1.5::20::3::2\n", 2, "expected an integer user, got '1.5'"),
        ("ratings.dat", "1::10::5::1\n1::20::7::2\n", 2, "rating 7 outside 1-5"),
        ("ratings.dat", "1::10::5::1\n1::40::3::2\n", 2, "item id 40 is not in"),
    ],
)
def test_malformed_dat_rows_name_file_and_line(tmp_path: Path, name: str, text: str, line: int, problem: str) -> None:
    directory = ml1m(tmp_path)
    (directory / name).write_text(text, encoding="latin-1")
    with pytest.raises(DataError) as info:
        load_dataset(directory)
    assert f"{directory / name}:{line}: " in str(info.value) and problem in str(info.value)


def test_malformed_csv_row_names_file_and_line(tmp_path: Path) -> None:
    directory = latest(tmp_path, "userId,movieId,rating,timestamp\n7,100,4.5,1\n7,205,four,2\n")
    with pytest.raises(DataError, match=r"ratings\.csv:3: expected a number, got 'four'"):
        load_dataset(directory)
