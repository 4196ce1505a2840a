"""Half stars end to end: a ratings.csv data set -> the CLI -> a model store -> the service's answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.artifacts import MANIFEST_FILE
from app.main import create_app
from app.settings import Settings
from training.__main__ import main


def _latest_folder(directory: Path, seed: int = 0) -> Path:
    """A small ml-latest-style folder: sparse movie ids, half stars 0.5..5, quoted titles, some without genres."""
    rng = np.random.default_rng(seed)
    movie_ids = np.sort(rng.choice(np.arange(1, 200_000), 40, replace=False))
    rows = []
    for user in range(1, 31):
        for item in rng.choice(movie_ids, int(rng.integers(8, 20)), replace=False):
            rows.append((user * 3, int(item), float(rng.integers(1, 11)) / 2, int(rng.integers(9e8, 1.5e9))))
    directory.mkdir(parents=True)
    pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"]).to_csv(
        directory / "ratings.csv", index=False
    )
    genres = ["Comedy|Drama", "(no genres listed)", "Action"]
    pd.DataFrame(
        {
            "movieId": movie_ids,
            "title": [f"Film, number {k} ({1990 + k})" for k in range(len(movie_ids))],
            "genres": [genres[k % 3] for k in range(len(movie_ids))],
        }
    ).to_csv(directory / "movies.csv", index=False)
    return directory


@pytest.fixture(scope="module")
def half_star_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("half")
    data = _latest_folder(root / "ml-latest-small")
    store = root / "store"
    argv = ["--data", str(data), "--split", "random", "--epochs", "2", "--out", str(store), "--no-download"]
    assert main(argv) == 0
    return data, store


def test_manifest_records_the_half_star_scale(half_star_store: tuple[Path, Path]) -> None:
    _, store = half_star_store
    dataset = json.loads((store / MANIFEST_FILE).read_text())["dataset"]
    assert dataset["name"] == "ml-latest" and (dataset["rating_min"], dataset["rating_max"]) == (0.5, 5.0)
    assert dataset["split"] == "random"


def test_served_ratings_stay_within_half_to_five_stars(half_star_store: tuple[Path, Path]) -> None:
    data, store = half_star_store
    ratings = pd.read_csv(data / "ratings.csv")
    user = int(ratings["userId"].iloc[0])
    items = sorted(set(ratings["movieId"].tolist()))
    with TestClient(create_app(Settings(models_dir=store))) as client:
        assert client.get("/models").status_code == 200
        for model in ("mf", "dense"):
            response = client.post(f"/predict/{model}", json={"user_id": user, "item_ids": items})
            assert response.status_code == 200, response.text
            stars = [p["rating"] for p in response.json()["predictions"]]
            assert len(stars) == len(items) and all(0.5 <= s <= 5.0 for s in stars)
        # Half stars are valid input ratings on this store; a rating off its scale is refused with the scale.
        response = client.post("/predict/lstm", json={"items": items[:4], "ratings": [0.5, 4.5, 5.0]})
        assert response.status_code == 200, response.text
        assert all(0.5 <= p["rating"] <= 5.0 for p in response.json()["predictions"])
        response = client.post("/predict/lstm", json={"items": items[:2], "ratings": [0.3]})
        assert response.status_code == 422 and "0.5-5" in response.text
        top = client.get(f"/recommend/{user}", params={"k": 5})
        assert top.status_code == 200, top.text


def test_generic_file_with_renamed_columns_through_the_cli(tmp_path: Path) -> None:
    data = _latest_folder(tmp_path / "src")
    frame = pd.read_csv(data / "ratings.csv").rename(columns={"userId": "uid", "movieId": "iid", "rating": "score"})
    path = tmp_path / "mine.parquet"
    frame.drop(columns=["timestamp"]).to_parquet(path)
    store = tmp_path / "store"
    argv = ["--data", str(path), "--user-col", "uid", "--item-col", "iid", "--rating-col", "score"]
    assert main([*argv, "--split", "temporal", "--epochs", "1", "--models", "mf", "--out", str(store)]) == 0
    dataset = json.loads((store / MANIFEST_FILE).read_text())["dataset"]
    assert dataset["name"] == "file" and dataset["n_users"] == frame["uid"].nunique()
    assert dataset["rating_min"] == frame["score"].min() and dataset["rating_max"] == frame["score"].max()
