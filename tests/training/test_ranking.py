"""Tests for `training.ranking`: metrics on hand-made cases with known answers, and the popularity blend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.artifacts import popularity_prior
from tests.training.conftest import synthetic_interactions, write_ml100k
from training.data import Interactions, load_movielens
from training.fit import DivergedError
from training.networks import MatrixFactorization, SequenceLSTM
from training.pipeline import rank, run
from training.rank_heads import RankConfig, choose_weight, lstm_queries, train_lstm_head, train_mf_head
from training.ranking import (
    RankingTask,
    latest_contexts,
    pair_mask,
    per_user_metrics,
    rank_scorer,
    rank_session_scorer,
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
    assert popularity_prior(counts) == pytest.approx([0.0, np.log(2) / np.log(100), 0.5, 1.0])
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


def test_rank_scorers_score_as_the_contract_says() -> None:
    torch.manual_seed(0)
    history = synthetic_interactions()
    users = np.array([1, 5])
    mf = MatrixFactorization(history.num_users, history.num_items, 4, rank_dim=3).eval()
    with torch.no_grad():
        mf.rank_users.normal_()
        mf.rank_items.normal_()
    with torch.inference_mode():
        assert rank_scorer(mf)(history, users)[1] == pytest.approx(mf.rank_all(torch.tensor([5])).numpy())
    lstm = SequenceLSTM(history.num_users, history.num_items, 4, 8).eval()
    with torch.no_grad():
        lstm.rank_in.weight.normal_()
        lstm.rank_items.normal_()
        lstm.rank_users = lstm_queries(lstm, history, 10)
    items, ratings = latest_contexts(history, users[1:], 9)
    with torch.inference_mode():
        session = lstm.rank_next(torch.from_numpy(items), torch.from_numpy(ratings)).numpy()
        assert rank_scorer(lstm)(history, users)[1] == pytest.approx(lstm.rank_all(torch.tensor([5])).numpy())
    assert rank_session_scorer(lstm)(history, users)[1] == pytest.approx(session, abs=1e-5)


def test_metrics_on_a_catalog_smaller_than_k() -> None:
    relevant = relevant_row(4, [2])
    scores = np.array([[0.0, 1.0, 5.0, 2.0, 3.0]])
    m = per_user_metrics(top_k(scores, np.zeros_like(relevant), 10), relevant, 10)
    assert m["ndcg@10"][0] == pytest.approx(1.0)
    assert m["precision@10"][0] == pytest.approx(0.1)


# --- the ranking heads ---------------------------------------------------------------------------------------


def taste_world(seed: int = 0) -> tuple[Interactions, Interactions, Interactions]:
    """``(fit, validation, test)``: two taste groups of 30 users, each rating (5 stars) a random half of its
    group's 10 films and (3 stars) two of 10 films everyone rates; held-out are more of their group's films."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 60, 30
    rows: dict[str, list[tuple[int, int, float]]] = {"fit": [], "val": [], "test": []}
    for u in range(1, n_users + 1):
        own = np.arange(1, 11) if u <= 30 else np.arange(11, 21)
        picked = rng.permutation(own)
        rows["fit"] += [(u, int(i), 5.0) for i in picked[:5]]
        rows["fit"] += [(u, int(i), 3.0) for i in rng.choice(np.arange(21, 31), 2, replace=False)]
        rows["val"] += [(u, int(picked[5]), 5.0)]
        rows["test"] += [(u, int(i), 5.0) for i in picked[6:8]]
    return (
        interactions(rows["fit"], n_users, n_items),
        interactions(rows["val"], n_users, n_items, t0=1000),
        interactions(rows["test"], n_users, n_items, t0=2000),
    )


def test_mf_head_learns_which_items_go_together_and_folds_into_an_inner_product() -> None:
    fit, val, test = taste_world()
    mf = MatrixFactorization(fit.num_users, fit.num_items, 4).eval()  # an untrained rating model
    config = RankConfig(dim=8, max_epochs=60, eval_every=5, patience=4, lr=0.03, reg=1e-4)
    history = concat(fit, val)
    _, result = train_mf_head(mf, fit, val, config, torch.Generator().manual_seed(0), history=history)
    assert result.best_epoch > 0 and result.weight in config.weight_grid
    task = RankingTask.build(history, test)
    learned = task.evaluate(rank_scorer(mf)(history, task.users), 0.0, k=4)["recall@4"]
    # Held-out items are among the 4 unseen films of the user's group: the head ranks those 4 first, popularity
    # (the group-free films everyone rates) cannot.
    assert learned > 0.95 and task.evaluate_popularity(k=4)["recall@4"] < 0.5
    with torch.inference_mode():
        for user in (1, 45):
            u = torch.tensor([user])
            assert torch.allclose(mf.rank_item_vectors() @ mf.rank_user_vector(u), mf.rank_all(u), atol=1e-5)


def test_lstm_head_learns_the_groups_and_serves_sessions() -> None:
    fit, val, test = taste_world(seed=1)
    lstm = SequenceLSTM(fit.num_users, fit.num_items, 4, 8).eval()
    config = RankConfig(dim=8, max_epochs=60, eval_every=5, patience=4, lr=0.03, reg=1e-4, full_history=0.8)
    history = concat(fit, val)
    train_lstm_head(lstm, fit, val, config, torch.Generator().manual_seed(0), 10, history=history)
    task = RankingTask.build(history, test)
    assert task.evaluate(rank_scorer(lstm)(history, task.users), 0.0, k=4)["recall@4"] > 0.95
    # A session of two films of the second group ranks that group's other films first.
    items = torch.tensor([[0] * 7 + [11, 12, 13]])
    ratings = torch.tensor([[0.0] * 7 + [5.0, 5.0, 5.0]])
    with torch.inference_mode():
        scores = lstm.rank_next(items, ratings)
        query = lstm.rank_session_vector(items, ratings)
        assert torch.allclose(lstm.rank_item_vectors() @ query, scores, atol=1e-5)
    top = [i for i in torch.argsort(scores, descending=True).tolist() if i not in (0, 11, 12, 13)][:7]
    assert set(top) == set(range(14, 21))


def test_rating_weight_is_chosen_on_validation() -> None:
    # Two candidates per user: the head prefers item 1, the rating score item 2; validation relevance says 2.
    history = interactions([(1, 3, 5.0), (2, 3, 5.0)], 2, 3)
    val = interactions([(1, 2, 5.0), (2, 2, 4.0)], 2, 3, t0=10)
    task = RankingTask.build(history, val)
    logits = np.array([[0.0, 1.0, 0.0, 0.0]] * 2)
    rating = np.array([[0.0, 0.0, 0.6, 0.0]] * 2)
    (weight, pop), curve = choose_weight(task, logits, rating, [0.0, 1.0, 2.0, 4.0])
    assert (weight, pop) == (2.0, 0.0)  # the smallest weight at which item 2 overtakes item 1
    assert curve[0.0, 0.0] < curve[2.0, 0.0] == curve[4.0, 0.0]
    # Item 1 is the popular one here (rated by both in a bigger history): a popularity prior is not chosen.
    (weight, pop), _ = choose_weight(
        RankingTask.build(concat(history, interactions([(1, 1, 3.0)], 2, 3)), val),
        logits,
        rating,
        [0.0, 2.0],
        [0.0, 4.0],
    )
    assert (weight, pop) == (2.0, 0.0)


# --- hooked into the training job ---------------------------------------------------------------------------


def test_rank_measures_the_served_score_beside_popularity() -> None:
    train = synthetic_interactions(n=800)
    test = synthetic_interactions(n=200, seed=1)
    test = test.subset(~np.isin(test.user_ids * 100 + test.item_ids, train.user_ids * 100 + train.item_ids))
    mf = MatrixFactorization(train.num_users, train.num_items, 4, rank_dim=2).eval()
    with torch.no_grad():
        mf.rank_items.normal_()
        mf.rank_users.normal_()
    metrics = rank("mf", mf, train, test)
    task = RankingTask.build(train, test)
    assert metrics["ndcg@10"] == pytest.approx(task.evaluate(rank_scorer(mf)(train, task.users), 0.0)["ndcg@10"])
    assert metrics["popularity_ndcg@10"] == pytest.approx(task.evaluate_popularity()["ndcg@10"])
    assert {"precision@10", "recall@10", "hitrate@10", "coverage@10", "mean_count@10"} <= set(metrics)


def test_training_job_records_rank_weight_and_ranking_metrics_in_the_manifest(tmp_path: Path) -> None:
    directory = write_ml100k(tmp_path / "ml-100k", user_ids=range(1, 31), item_ids=range(1, 41), n_ratings=700, seed=2)
    out = tmp_path / "store"
    outcomes = run(load_movielens(directory), split="u1", models=("mf",), out=out, max_epochs=1)
    entry = json.loads((out / "manifest.json").read_text())["models"]["mf"]
    assert entry["rank_weight"] == outcomes[0].model.rank_weight
    assert entry["rank_weight"] in RankConfig().weight_grid
    assert entry["hyperparameters"]["rank_dim"] == RankConfig().dim
    ranking = entry["metrics"][0]["ranking"]
    assert 0.0 <= ranking["ndcg@10"] <= 1.0 and "popularity_ndcg@10" in ranking


def test_a_diverging_head_raises_diverged_error() -> None:
    # The CLI turns DivergedError into "error: ..." and exit 2; the head raised a bare RuntimeError instead.
    fit, val, _ = taste_world()
    mf = MatrixFactorization(fit.num_users, fit.num_items, 4).eval()
    config = RankConfig(dim=8, max_epochs=3, eval_every=1, lr=1e30)
    with pytest.raises(DivergedError, match="mf ranking head: loss is"):
        train_mf_head(mf, fit, val, config, torch.Generator().manual_seed(0))
