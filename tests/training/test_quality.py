"""Tests for `training.quality`: the temporal split, and the report end to end on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import write_ml100k
from training.data import Interactions, load_movielens
from training.quality.cli import main
from training.quality.experiment import temporal_split


def test_temporal_split_holds_out_each_users_latest_ratings() -> None:
    # User 1 rates items 1..14 at times 14..1 (latest first in item order); user 2 rates 12 items in order.
    users = np.r_[np.full(14, 1), np.full(12, 2)].astype(np.int64)
    items = np.r_[np.arange(1, 15), np.arange(1, 13)].astype(np.int64)
    times = np.r_[np.arange(14, 0, -1), np.arange(100, 112)].astype(np.int64)
    data = Interactions(users, items, np.full(26, 3.0, np.float32), times, 2, 14)
    train, test = temporal_split(data, last=10)
    assert sorted(test.item_ids[test.user_ids == 1].tolist()) == list(range(1, 11))
    assert sorted(test.item_ids[test.user_ids == 2].tolist()) == list(range(3, 13))
    assert len(train) + len(test) == len(data)
    for user in (1, 2):
        assert train.timestamps[train.user_ids == user].max() <= test.timestamps[test.user_ids == user].min()


def test_temporal_split_refuses_users_with_nothing_left_to_train_on() -> None:
    data = Interactions(np.ones(10, np.int64), np.arange(1, 11), np.full(10, 4.0, np.float32), np.arange(10), 1, 10)
    with pytest.raises(ValueError, match="at most 10 ratings"):
        temporal_split(data, last=10)


def test_quality_command_writes_report_charts_and_numbers(tmp_path: Path) -> None:
    directory = write_ml100k(tmp_path / "ml-100k", user_ids=range(1, 31), item_ids=range(1, 41), n_ratings=900, seed=3)
    for fold in ("u2",):  # the helper writes u1 only; a second fold exercises mean ± std
        for part in ("base", "test"):
            (directory / f"{fold}.{part}").write_text((directory / f"u1.{part}").read_text())
    out = tmp_path / "docs"
    code = main(["--data", str(directory), "--folds", "u1,u2", "--epochs", "1", "--out", str(out)])
    assert code == 0
    report = (out / "report.md").read_text()
    for heading in (
        "## Protocol",
        "## Rating prediction",
        "## Ranking",
        "## Temporal check",
        "## Learning",
        "Sessions",
    ):
        assert heading in report
    for chart in ("learning_curves", "rmse_vs_anchors", "ranking", "prediction_distribution", "temporal"):
        assert (out / "img" / f"{chart}.png").stat().st_size > 0
        assert f"img/{chart}.png" in report
    numbers = json.loads((out / "quality.json").read_text())
    assert [f["split"] for f in numbers["folds"]] == ["u1", "u2"]
    names = [r["name"] for r in numbers["folds"][0]["runs"]]
    assert names == ["global mean", "bias", "mf", "dense", "lstm", "popularity", "item-KNN", "EASE", "ALS"]
    u1_test = load_movielens(directory).split("u1")[1]
    assert numbers["folds"][0]["n_test"] == len(u1_test)
    runs = numbers["folds"][0]["runs"]
    assert all(run["rmse"] > 0 for run in runs[:5])
    assert all(run["ranking"]["ndcg@10"] >= 0 for run in runs[2:])
    # Peers' hyperparameters come from their validation grids; sessions are measured beside popularity.
    assert runs[7]["params"]["lambda"] > 0 and "factors" in runs[8]["params"]
    assert set(numbers["folds"][0]["sessions"]) == {"lstm", "popularity"}
    assert [r["name"] for r in numbers["temporal"]["runs"]][2:5] == ["mf", "dense", "lstm"]
