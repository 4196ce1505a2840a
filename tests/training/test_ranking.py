"""Tests for `training.ranking`: metrics on hand-made cases with known answers, and the popularity blend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.conftest import synthetic_interactions, write_ml100k
from training.data import Interactions, load_movielens
from training.evaluate import user_tastes
from training.networks import MatrixFactorization, SequenceLSTM
from training.pipeline import rank, run, validation_parts
from training.ranking import (
    WEIGHT_GRID,
    RankingTask,
    blended_ranking,
    choose_popularity_weight,
    latest_contexts,
    model_scorer,
    pair_mask,
    per_user_metrics,
    popularity_feature,
    session_scorer,
    top_k,
)


def interactions(rows: list[tuple[int, int, float]], num_users: int, num_items: int, t0: int = 0) -> Interactions:
    """(user, item, stars) rows with increasing timestamps."""
    users, items, stars = (np.array(c) for c in zip(*rows, strict=True)) if rows else ([], [], [])
    return Interactions(
        np.asarray(users, np.int64),
        np.asarray(items, np.int64),
        np.asarray(stars, np.float32),
        np.arange(t0, t0 + len(rows), dtype=np.int64),
        num_users,
        num_items,
    )


def concat(*parts: Interactions) -> Interactions:
    return Interactions(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("user_ids", "item_ids", "ratings", "timestamps")),
        parts[0].num_users,
        parts[0].num_items,
    )


def relevant_row(n_items: int, items: list[int]) -> np.ndarray:
    row = np.zeros((1, n_items + 1), dtype=bool)
    row[0, items] = True
    return row


# --- metric functions ---------------------------------------------------------------------------------------


def test_perfect_ranking_has_ndcg_precision_recall_and_hit_rate_one() -> None:
    relevant = relevant_row(20, list(range(1, 11)))
    scores = np.where(relevant, 5.0, 1.0)
    top = top_k(scores, np.zeros_like(relevant), 10)
    metrics = per_user_metrics(top, relevant, 10)
    assert {k: float(v[0]) for k, v in metrics.items()} == pytest.approx(
        {"ndcg@10": 1.0, "precision@10": 1.0, "recall@10": 1.0, "hitrate@10": 1.0}
    )


def test_metrics_of_a_hand_ranked_list() -> None:
    # Relevant items 2 and 9 land at ranks 1 and 3 of the top 3; item 7 is relevant but ranked below.
    relevant = relevant_row(10, [2, 7, 9])
    scores = np.zeros((1, 11))
    scores[0, [2, 4, 9, 7]] = [4.0, 3.5, 3.0, 1.0]
    top = top_k(scores, np.zeros_like(relevant), 3)
    assert top.tolist() == [[2, 4, 9]]
    m = per_user_metrics(top, relevant, 3)
    dcg = 1.0 + 1.0 / np.log2(4)
    ideal = 1.0 + 1.0 / np.log2(3) + 1.0 / np.log2(4)
    assert m["ndcg@3"][0] == pytest.approx(dcg / ideal)
    assert m["precision@3"][0] == pytest.approx(2 / 3)
    assert m["recall@3"][0] == pytest.approx(2 / 3)
    assert m["hitrate@3"][0] == 1.0


def test_precision_at_k_counts_hits_over_k_even_when_fewer_items_are_relevant() -> None:
    relevant = relevant_row(30, [1, 2, 3])
    scores = np.where(relevant, 5.0, 1.0)
    m = per_user_metrics(top_k(scores, np.zeros_like(relevant), 10), relevant, 10)
    assert m["precision@10"][0] == pytest.approx(0.3)
    assert m["recall@10"][0] == pytest.approx(1.0)
    assert m["ndcg@10"][0] == pytest.approx(1.0)  # the ideal list has only 3 relevant items too


def test_a_ranking_without_hits_scores_zero() -> None:
    relevant = relevant_row(20, [20])
    m = per_user_metrics(top_k(np.zeros((1, 21)), np.zeros_like(relevant), 10), relevant, 10)
    assert all(v[0] == 0.0 for v in m.values())


def test_top_k_never_returns_excluded_items_or_padding_and_breaks_ties_by_index() -> None:
    scores = np.full((2, 8), 3.0)
    scores[:, 0] = 99.0  # padding must never be ranked, whatever the network says about it
    scores[0, 5] = 4.0
    exclude = np.zeros((2, 8), dtype=bool)
    exclude[0, [5, 1]] = True
    top = top_k(scores, exclude, 3)
    assert top.tolist() == [[2, 3, 4], [1, 2, 3]]


def test_users_without_relevant_items_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one relevant"):
        per_user_metrics(np.array([[1, 2]]), np.zeros((1, 3), dtype=bool), 2)


def test_task_excludes_training_items_and_needs_four_stars_for_relevance() -> None:
    train = interactions([(1, 1, 5.0), (1, 2, 1.0), (2, 3, 4.0)], 3, 6)
    test = interactions([(1, 4, 4.0), (1, 5, 3.0), (2, 2, 5.0), (3, 6, 2.0)], 3, 6, t0=10)
    task = RankingTask.build(train, test)
    assert task.users.tolist() == [1, 2]  # user 3 has no rating >= 4 in test
    assert np.flatnonzero(task.relevant[0]).tolist() == [4]
    assert np.flatnonzero(task.exclude[0]).tolist() == [1, 2]
    # A scorer that loves the items user 1 already rated is judged on the items it may recommend.
    stars = np.ones((2, 7))
    stars[:, [1, 2]] = 5.0
    stars[:, 4] = 4.5
    # User 1's top candidate is item 4, a hit; user 2's is item 1 (ties with item 2 go to the lower index).
    assert task.evaluate(stars, 0.0, k=1)["precision@1"] == pytest.approx(0.5)


def test_pair_mask_marks_only_the_requested_users() -> None:
    data = interactions([(1, 2, 3.0), (3, 1, 4.0), (2, 2, 1.0)], 3, 2)
    assert pair_mask(data, np.array([1, 3])).tolist() == [[False, False, True], [False, True, False]]
    assert pair_mask(data, np.array([], dtype=np.int64)).shape == (0, 3)


def test_popularity_baseline_and_blend_follow_log_counts() -> None:
    counts = np.array([0, 1, 9, 99])
    assert popularity_feature(counts) == pytest.approx([0.0, np.log(2) / np.log(100), 0.5, 1.0])
    # Item 3 is most rated; with a large enough weight it overtakes the item the model prefers.
    train = interactions([(u, 3, 3.0) for u in range(2, 6)] + [(u, 2, 3.0) for u in range(2, 4)], 6, 4)
    test = interactions([(1, 3, 5.0)], 6, 4, t0=100)
    task = RankingTask.build(train, test)
    assert task.evaluate_popularity(k=1)["hitrate@1"] == 1.0
    stars = np.array([[0.0, 4.0, 3.0, 3.5, 1.0]])
    assert task.evaluate(stars, 0.0, k=1)["hitrate@1"] == 0.0
    assert task.evaluate(stars, 1.0, k=1)["hitrate@1"] == 1.0


# --- scoring through the exported methods -------------------------------------------------------------------


def test_latest_contexts_are_the_last_ratings_left_padded() -> None:
    rows = [(1, i, float(1 + i % 5)) for i in range(1, 13)] + [(2, 7, 4.0)]
    history = interactions(rows, 3, 12)
    items, ratings = latest_contexts(history, np.array([1, 2, 3]), 9)
    assert items[0].tolist() == list(range(4, 13))
    assert items[1].tolist() == [0] * 8 + [7]
    assert ratings[1].tolist() == [0.0] * 8 + [4.0]
    assert items[2].tolist() == [0] * 9  # no history: all padding


def test_model_scorer_scores_as_the_contract_says() -> None:
    torch.manual_seed(0)
    history = synthetic_interactions()
    users = np.array([1, 5])
    mf = MatrixFactorization(history.num_users, history.num_items, 4).eval()
    with torch.inference_mode():
        assert model_scorer("mf", mf)(history, users)[1] == pytest.approx(mf.score_all(torch.tensor([5])).numpy())
    # lstm: score_all(u) serves the taste after the user's whole training history; the scorer computes that
    # taste from the history it is given, so it matches score_all once the taste is that of `history`.
    lstm = SequenceLSTM(history.num_users, history.num_items, 4, 8).eval()
    with torch.no_grad():
        lstm.item_bias.weight.normal_()
        lstm.user_taste.copy_(user_tastes(lstm, history, 10))  # type: ignore[operator]
    with torch.inference_mode():
        expected = lstm.score_all(torch.tensor([5])).numpy()
    assert model_scorer("lstm", lstm)(history, users)[1] == pytest.approx(expected, abs=1e-5)
    # Scored from a shorter history, the scorer follows that history, not the stored taste.
    early = history.subset(history.timestamps < np.median(history.timestamps))
    assert not np.allclose(model_scorer("lstm", lstm)(early, users)[1], expected, atol=1e-3)
    items, ratings = latest_contexts(history, users[1:], 9)
    with torch.inference_mode():
        session = lstm.score_next(torch.from_numpy(items), torch.from_numpy(ratings)).numpy()
    assert session_scorer(lstm)(history, users)[1] == pytest.approx(session)


def test_metrics_on_a_catalog_smaller_than_k() -> None:
    relevant = relevant_row(4, [2])
    scores = np.array([[0.0, 1.0, 5.0, 2.0, 3.0]])
    m = per_user_metrics(top_k(scores, np.zeros_like(relevant), 10), relevant, 10)
    assert m["ndcg@10"][0] == pytest.approx(1.0)
    assert m["precision@10"][0] == pytest.approx(0.1)


# --- choosing the popularity weight -------------------------------------------------------------------------

N_ITEMS = 12
POPULAR = [1, 2, 3, 4]  # rated by every crowd user
FAVOURITES = [5, 6, 7, 8]  # never rated in training, but the scorer's top picks


def favourites_scorer(history: Interactions, users: np.ndarray) -> np.ndarray:
    stars = np.ones((len(users), history.num_items + 1), dtype=np.float32)
    stars[:, FAVOURITES] = 5.0
    return stars


def blend_world(val_items: list[int]) -> tuple[Interactions, Interactions, Interactions]:
    """``(fit, validation, train)``: users 1-20 rate the popular items; users 21-30 rate item 12 in `fit` and
    love `val_items` in `validation`."""
    crowd = [(u, i, 3.0) for u in range(1, 21) for i in POPULAR]
    targets = [(u, 12, 3.0) for u in range(21, 31)]
    fit = interactions(crowd + targets, 30, N_ITEMS)
    validation = interactions([(u, i, 5.0) for u in range(21, 31) for i in val_items], 30, N_ITEMS, t0=1000)
    return fit, validation, concat(fit, validation)


def loved(items: list[int]) -> Interactions:
    return interactions([(u, i, 5.0) for u in range(21, 31) for i in items], 30, N_ITEMS, t0=2000)


def test_weight_is_chosen_on_validation_and_a_test_set_favouring_another_weight_is_ignored() -> None:
    fit, validation, train = blend_world(val_items=[5, 6])  # validation rewards the scorer alone
    popular_test = loved([1, 2])  # this test would reward a large popularity weight
    result = blended_ranking(favourites_scorer, fit=fit, validation=validation, train=train, test=popular_test)
    assert result.weight == 0.0

    # The test really does favour another weight, so ignoring it was a choice, not a coincidence.
    task = RankingTask.build(train, popular_test)
    stars = favourites_scorer(train, task.users)
    by_weight = {w: task.evaluate(stars, w)["ndcg@10"] for w in WEIGHT_GRID}
    assert max(by_weight, key=by_weight.__getitem__) > 0.0
    assert result.test["ndcg@10"] == pytest.approx(by_weight[0.0])
    assert max(by_weight.values()) > result.test["ndcg@10"]

    # Another test set changes the measurements but never the choice or the validation curve.
    other = blended_ranking(favourites_scorer, fit=fit, validation=validation, train=train, test=loved([7, 8]))
    assert other.weight == result.weight and other.validation_ndcg == result.validation_ndcg
    assert other.test["ndcg@10"] != result.test["ndcg@10"]


def test_validation_that_rewards_popularity_moves_the_weight_up() -> None:
    fit, validation, train = blend_world(val_items=[1, 2])
    weight, curve = choose_popularity_weight(favourites_scorer, fit, validation)
    # Popular items score 1 + w stars: at w = 4 they tie with the 5-star favourites and win on lower index.
    assert weight == 4.0
    assert curve[weight] == pytest.approx(1.0)
    result = blended_ranking(favourites_scorer, fit=fit, validation=validation, train=train, test=loved([5, 6]))
    assert result.weight == weight
    assert result.as_metrics()["popularity_weight"] == weight
    assert result.as_metrics()["unblended_ndcg@10"] == pytest.approx(1.0)


def test_validation_must_come_from_train_and_stay_disjoint_from_test() -> None:
    fit, validation, train = blend_world(val_items=[5, 6])
    with pytest.raises(ValueError, match="disjoint from test"):
        blended_ranking(favourites_scorer, fit=fit, validation=validation, train=train, test=validation)
    with pytest.raises(ValueError, match="carved from train"):
        blended_ranking(favourites_scorer, fit=fit, validation=validation, train=fit, test=loved([7]))


def test_no_relevant_validation_items_leaves_the_weight_at_zero() -> None:
    fit, _, _ = blend_world(val_items=[])
    meh = interactions([(21, 5, 2.0)], 30, N_ITEMS, t0=1000)
    assert choose_popularity_weight(favourites_scorer, fit, meh) == (0.0, {})


# --- hooked into the training job ---------------------------------------------------------------------------


def test_rank_uses_the_validation_split_train_one_early_stops_on() -> None:
    train = synthetic_interactions(n=800)
    test = synthetic_interactions(n=200, seed=1)
    test = test.subset(~np.isin(test.user_ids * 100 + test.item_ids, train.user_ids * 100 + train.item_ids))
    mf = MatrixFactorization(train.num_users, train.num_items, 4).eval()
    weight, metrics = rank("mf", mf, train, test, seed=3)
    fit, validation = validation_parts(train, 3)
    expected = blended_ranking(model_scorer("mf", mf), fit=fit, validation=validation, train=train, test=test)
    assert weight == expected.weight in (0.0, *WEIGHT_GRID)
    assert metrics == expected.as_metrics()
    assert {"ndcg@10", "precision@10", "recall@10", "hitrate@10", "popularity_ndcg@10"} <= set(metrics)


def test_training_job_records_weight_and_ranking_metrics_in_the_manifest(tmp_path: Path) -> None:
    directory = write_ml100k(tmp_path / "ml-100k", user_ids=range(1, 31), item_ids=range(1, 41), n_ratings=700, seed=2)
    out = tmp_path / "store"
    outcomes = run(load_movielens(directory), split="u1", models=("mf",), out=out, max_epochs=1)
    entry = json.loads((out / "manifest.json").read_text())["models"]["mf"]
    assert entry["popularity_weight"] == outcomes[0].model.popularity_weight
    assert entry["popularity_weight"] in (0.0, *WEIGHT_GRID)
    ranking = entry["metrics"][0]["ranking"]
    assert 0.0 <= ranking["ndcg@10"] <= 1.0 and "popularity_ndcg@10" in ranking
