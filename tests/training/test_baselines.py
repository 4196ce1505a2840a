"""Tests for `training.baselines` on synthetic data with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from training.baselines import BiasBaseline, GlobalMean, item_popularity
from training.data import Interactions
from training.evaluate import error_metrics


def biased_ratings(n_users: int = 60, n_items: int = 80, n: int = 3000, seed: int = 0) -> Interactions:
    """Distinct pairs rated ``3 + b_u + b_i + noise``: strong main effects, nothing else to learn."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    users, items = pairs // n_items + 1, pairs % n_items + 1
    bu, bi = rng.normal(0, 0.6, n_users + 1), rng.normal(0, 0.8, n_items + 1)
    raw = 3.0 + bu[users] + bi[items] + rng.normal(0, 0.5, n)
    ratings = np.clip(np.rint(raw), 1, 5).astype(np.float32)
    times = np.arange(n, dtype=np.int64) + 880_000_000
    return Interactions(users.astype(np.int64), items.astype(np.int64), ratings, times, n_users, n_items)


def split(data: Interactions, fraction: float = 0.2) -> tuple[Interactions, Interactions]:
    test = np.random.default_rng(1).random(len(data)) < fraction
    return data.subset(~test), data.subset(test)


def test_global_mean_predicts_the_training_mean_everywhere() -> None:
    train, test = split(biased_ratings())
    model = GlobalMean.fit(train)
    assert model.predict(test.user_ids, test.item_ids) == pytest.approx(np.full(len(test), train.ratings.mean()))
    assert model.score_all(np.array([1, 2])).shape == (2, train.num_items + 1)


def test_bias_baseline_beats_global_mean_on_held_out_ratings() -> None:
    train, test = split(biased_ratings())
    mean_rmse = error_metrics(GlobalMean.fit(train).predict(test.user_ids, test.item_ids), test.ratings)["rmse"]
    bias_rmse = error_metrics(BiasBaseline.fit(train).predict(test.user_ids, test.item_ids), test.ratings)["rmse"]
    assert bias_rmse < 0.85 * mean_rmse


def test_unregularised_bias_baseline_recovers_an_exact_additive_matrix() -> None:
    n_users, n_items = 7, 5
    users, items = (a.ravel() + 1 for a in np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij"))
    bu, bi = np.linspace(-1, 1, n_users + 1), np.linspace(-0.8, 0.8, n_items + 1)
    ratings = (3.0 + bu[users] + bi[items]).astype(np.float32)
    data = Interactions(users, items, ratings, np.zeros(len(users), np.int64), n_users, n_items)
    model = BiasBaseline.fit(data, reg_user=0.0, reg_item=0.0, iterations=20)
    assert model.predict(users, items) == pytest.approx(ratings, abs=1e-5)


def test_bias_of_a_rarely_rated_item_is_shrunk_towards_zero() -> None:
    # Item 1 has one 5-star rating, item 2 twenty: the same mean, very different evidence. Item 3's twenty
    # 1-star ratings pull the global mean down to 3.
    crowd = np.arange(1, 21)
    users = np.r_[1, crowd, crowd].astype(np.int64)
    items = np.r_[1, np.full(20, 2), np.full(20, 3)].astype(np.int64)
    ratings = np.r_[5.0, np.full(20, 5.0), np.full(20, 1.0)].astype(np.float32)
    data = Interactions(users, items, ratings, np.zeros(len(users), np.int64), 20, 3)
    model = BiasBaseline.fit(data)
    assert 0 < model.item_bias[1] < model.item_bias[2]
    assert model.item_bias[0] == 0.0 and model.user_bias[0] == 0.0


def test_score_all_matches_predict_and_stays_in_star_range() -> None:
    train, _ = split(biased_ratings())
    model = BiasBaseline.fit(train)
    users = np.array([3, 9])
    scores = model.score_all(users)
    items = np.arange(1, train.num_items + 1)
    for row, user in enumerate(users):
        assert scores[row, 1:] == pytest.approx(model.predict(np.full(len(items), user), items))
    assert scores.min() >= 1.0 and scores.max() <= 5.0


def test_item_popularity_counts_training_ratings_per_item() -> None:
    data = Interactions(
        np.array([1, 2, 2]),
        np.array([3, 3, 1]),
        np.array([4.0, 2.0, 5.0], np.float32),
        np.zeros(3, np.int64),
        2,
        4,
    )
    assert item_popularity(data).tolist() == [0, 1, 0, 2, 0]


def test_bias_baseline_refuses_empty_training_data() -> None:
    empty = biased_ratings().subset(np.zeros(3000, dtype=bool))
    with pytest.raises(ValueError, match="no training ratings"):
        BiasBaseline.fit(empty)
