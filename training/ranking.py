"""Top-k ranking quality, and the popularity blend the service ranks with, chosen on validation data.

Protocol (one `RankingTask` per held-out set): a held-out item rated >= 4 stars is relevant; every user with
at least one relevant item ranks every item they did *not* rate in the history (the training data the scorer
was fitted on); Precision, Recall, NDCG and HitRate at 10 are averaged over those users. Relevance is binary.

Rating-trained models rank obscure items they are confident about above the items people actually watch, so
they usually lose to plain popularity on NDCG@10. The service therefore ranks by
``stars + w * log1p(count) / log1p(max count)`` (see `app/artifacts.py`): a candidate blend with a popularity
prior. `blended_ranking` picks ``w`` from `WEIGHT_GRID` to maximise NDCG@10 on a validation split carved from
the training data, and only then measures the test split with that ``w``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from training.baselines import item_popularity
from training.data import Interactions
from training.evaluate import user_tastes
from training.models import SEQUENCE_LENGTH

log = logging.getLogger(__name__)

K = 10
RELEVANT_STARS = 4.0  # ML-100K convention: 4 and 5 stars are "liked"
# Stars span 4 units and the popularity term 1, so at w = 4 popularity can move an item across the whole star
# range. One star is worth a factor of (1 + max count) ** (1 / w) in rating count: about 1.1 at w = 64 on
# ML-100K, nearly popularity ranking with the model re-ordering near-equals, which is where the grid stops.
# Users a ranking evaluation scores at most (dense per evaluation: users x items scores and masks). Large
# enough that all 943 ML-100K users are kept (the protocol is exact there); a seeded sample on larger sets.
MAX_USERS = 2_000
WEIGHT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0)

# (history, users) -> stars [len(users), num_items + 1], column 0 being padding. `history` is what the scorer
# may know about the users: the training data its model was fitted on.
Scorer = Callable[[Interactions, np.ndarray], np.ndarray]


def metric_names(k: int = K) -> tuple[str, ...]:
    return (f"ndcg@{k}", f"precision@{k}", f"recall@{k}", f"hitrate@{k}")


def pair_mask(data: Interactions, users: np.ndarray) -> np.ndarray:
    """``mask[r, i]``: ``users[r]`` rated item ``i`` in `data`. `users` must be sorted and unique."""
    mask = np.zeros((len(users), data.num_items + 1), dtype=bool)
    if len(users) == 0:
        return mask
    row = np.searchsorted(users, data.user_ids)
    keep = (row < len(users)) & (users[np.minimum(row, len(users) - 1)] == data.user_ids)
    mask[row[keep], data.item_ids[keep]] = True
    return mask


def popularity_feature(counts: np.ndarray) -> np.ndarray:
    """``log1p(count) / log1p(max count)`` in [0, 1], the prior the service blends in."""
    top = np.log1p(counts.max()) if len(counts) and counts.max() > 0 else 1.0
    return (np.log1p(counts) / top).astype(np.float64)


def top_k(scores: np.ndarray, exclude: np.ndarray, k: int = K) -> np.ndarray:
    """Item indices of the `k` best scores per row, never an excluded item or column 0 (padding).

    Ties go to the lower item index, so results are deterministic. A row with fewer than `k` candidates is
    filled with excluded items, which are never relevant.
    """
    if np.isnan(scores).any():
        raise ValueError("top_k: scores contain NaN")
    masked = np.where(exclude, -np.inf, scores.astype(np.float64))
    masked[:, 0] = -np.inf
    n = masked.shape[1]
    if k >= n:
        return np.argsort(-masked, axis=1, kind="stable")[:, :k]
    # Linear in the catalog, not n log n: the k-th best value per row, everything above it, then the ties at
    # it by lowest index (what a stable sort would keep), and only those k sorted. Same result as argsort.
    kth = -np.partition(-masked, k - 1, axis=1)[:, k - 1 : k]
    above = masked > kth
    ties = masked == kth
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | ties
    crowded = np.flatnonzero(ties.sum(axis=1, keepdims=True)[:, 0] > room[:, 0])  # rare: more ties than room
    if len(crowded):
        sub = ties[crowded]
        chosen[crowded] = above[crowded] | (sub & (np.cumsum(sub, axis=1) <= room[crowded]))
    idx = np.nonzero(chosen)[1].reshape(len(masked), k)  # ascending item index within each row
    order = np.argsort(-np.take_along_axis(masked, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def per_user_metrics(top: np.ndarray, relevant: np.ndarray, k: int = K) -> dict[str, np.ndarray]:
    """Precision, recall, NDCG and hit rate at `k` of each row.

    Parameters
    ----------
    top : ``[U, k]`` item indices in rank order (from `top_k`; fewer columns when the catalog is smaller)
    relevant : ``[U, num_items + 1]`` boolean; every row needs at least one relevant item

    Returns
    -------
    ``{"ndcg@k": [U], "precision@k": [U], "recall@k": [U], "hitrate@k": [U]}``
    """
    n_relevant = relevant.sum(axis=1)
    if (n_relevant == 0).any():
        raise ValueError("per_user_metrics: every user needs at least one relevant item")
    hits = np.take_along_axis(relevant, top[:, :k], axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)[np.minimum(n_relevant, k) - 1]
    n_hits = hits.sum(axis=1)
    ndcg, precision, recall, hitrate = metric_names(k)
    return {
        ndcg: (hits @ discount[: hits.shape[1]]) / ideal,
        precision: n_hits / k,
        recall: n_hits / n_relevant,
        hitrate: (n_hits > 0).astype(np.float64),
    }


@dataclass(frozen=True)
class RankingTask:
    """Everything a ranking evaluation needs besides the scores, built once per (history, held-out) pair."""

    history: Interactions  # the scorer's training data: excluded from candidates, source of popularity
    users: np.ndarray  # sorted user indices with at least one relevant held-out item
    exclude: np.ndarray  # [U, num_items + 1] items each user rated in `history`
    relevant: np.ndarray  # [U, num_items + 1] held-out items rated >= RELEVANT_STARS, not in `history`
    popularity: np.ndarray  # [num_items + 1] popularity_feature of the history counts

    @classmethod
    def build(cls, history: Interactions, heldout: Interactions) -> RankingTask:
        liked = heldout.subset(heldout.ratings >= RELEVANT_STARS)
        users = np.unique(liked.user_ids)
        if len(users) > MAX_USERS:
            # The masks and scores are users x items: on a large data set a seeded sample of users keeps them
            # bounded (an estimate of the same means); ML-100K's 943 users are all kept.
            users = np.sort(np.random.default_rng(0).choice(users, MAX_USERS, replace=False))
        exclude = pair_mask(history, users)
        relevant = pair_mask(liked, users) & ~exclude
        keep = relevant.any(axis=1)
        return cls(
            history,
            users[keep],
            exclude[keep],
            relevant[keep],
            popularity_feature(item_popularity(history)),
        )

    def evaluate(self, stars: np.ndarray, weight: float, k: int = K) -> dict[str, float]:
        """Mean metrics of ranking by ``stars + weight * popularity`` (`stars` as returned by a `Scorer`)."""
        blended = stars.astype(np.float64) + weight * self.popularity[None, :]
        per_user = per_user_metrics(top_k(blended, self.exclude, k), self.relevant, k)
        return {name: float(v.mean()) for name, v in per_user.items()}

    def evaluate_popularity(self, k: int = K) -> dict[str, float]:
        """The popularity baseline: rank by training count alone."""
        return self.evaluate(np.zeros((len(self.users), len(self.popularity))), 1.0, k)


def latest_contexts(history: Interactions, users: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's `length` latest history ratings, oldest first, left-padded with item 0 and rating 0."""
    indptr, order = history.user_histories()
    end = indptr[users + 1]
    idx = end[:, None] + np.arange(-length, 0)[None, :]
    valid = idx >= indptr[users][:, None]
    pos = order[np.where(valid, idx, 0)] if len(order) else np.zeros(idx.shape, dtype=np.int64)
    items = np.where(valid, history.item_ids[pos] if len(order) else 0, 0)
    ratings = np.where(valid, history.ratings[pos] if len(order) else 0.0, 0.0)
    return items.astype(np.int64), ratings.astype(np.float32)


def model_scorer(name: str, network: nn.Module) -> Scorer:
    """Score every item for each known user the way the service does.

    mf and dense: ``score_all(tensor([u]))``. lstm: ``score_next`` over the user's whole history in the
    `history` given, left-padded to a multiple of ``SEQUENCE_LENGTH`` as in training. That is the state its
    ``score_all(u)`` serves (the contract: the taste after the user's whole training history), computed from
    `history` so that choosing a weight on validation never uses a taste that has seen the validation ratings.
    """
    if name == "lstm":
        return _history_scorer(network)

    def score(history: Interactions, users: np.ndarray) -> np.ndarray:
        network.eval()
        out = np.empty((len(users), history.num_items + 1), dtype=np.float32)
        with torch.inference_mode():
            for row, user in enumerate(users.tolist()):
                out[row] = network.score_all(torch.tensor([user])).numpy()  # type: ignore[operator]
        return out

    return score


def _history_scorer(network: nn.Module) -> Scorer:
    def score(history: Interactions, users: np.ndarray) -> np.ndarray:
        network.eval()
        out = np.empty((len(users), history.num_items + 1), dtype=np.float32)
        if hasattr(network, "user_taste"):
            # Fast path, same scores: every user's taste in one batched pass, then the served score_all.
            clone = copy.deepcopy(network)
            with torch.inference_mode():
                clone.user_taste.copy_(user_tastes(clone, history, SEQUENCE_LENGTH))  # type: ignore[operator]
            return model_scorer("mf", clone)(history, users)
        histories = history.to_histories(SEQUENCE_LENGTH)
        with torch.inference_mode():
            for row, user in enumerate(users.tolist()):
                # One user at a time, padded as in training; a user without history: one empty window.
                items, ratings, _ = histories.padded(np.array([user]), min_width=SEQUENCE_LENGTH)
                out[row] = network.score_next(torch.from_numpy(items), torch.from_numpy(ratings)).numpy()  # type: ignore[operator]
        return out

    return score


def session_scorer(network: nn.Module) -> Scorer:
    """The LSTM's ``score_next`` after the user's latest ``SEQUENCE_LENGTH - 1`` history ratings, left-padded:
    a known user treated as an anonymous session of their last ratings."""

    def score(history: Interactions, users: np.ndarray) -> np.ndarray:
        network.eval()
        out = np.empty((len(users), history.num_items + 1), dtype=np.float32)
        items, ratings = latest_contexts(history, users, SEQUENCE_LENGTH - 1)
        it, rt = torch.from_numpy(items), torch.from_numpy(ratings)
        with torch.inference_mode():
            for row in range(len(users)):
                out[row] = network.score_next(it[row : row + 1], rt[row : row + 1]).numpy()  # type: ignore[operator]
        return out

    return score


def choose_popularity_weight(
    scorer: Scorer,
    fit: Interactions,
    validation: Interactions,
    grid: tuple[float, ...] = WEIGHT_GRID,
    k: int = K,
) -> tuple[float, dict[float, float]]:
    """The grid weight with the best validation NDCG@k (the smallest on ties), and NDCG@k of every weight.

    Parameters
    ----------
    scorer : scores users from `fit`, the data its model was trained on
    fit, validation : a split of the training data; the model must not have been fitted on `validation`

    Returns
    -------
    ``(weight, {grid weight: validation NDCG@k})``; weight 0 (rank by stars alone) and an empty curve when no
    validation user has a relevant item, as on toy data sets.
    """
    task = RankingTask.build(fit, validation)
    if len(task.users) == 0:
        log.warning("no validation user has a relevant item; popularity weight left at 0")
        return 0.0, {}
    stars = scorer(fit, task.users)
    curve = {w: task.evaluate(stars, w, k)[f"ndcg@{k}"] for w in grid}
    best = max(curve.values())
    return min(w for w, v in curve.items() if v == best), curve


@dataclass(frozen=True)
class BlendedRanking:
    weight: float  # chosen on validation
    validation_ndcg: dict[float, float]  # validation NDCG@k of each grid weight
    test: dict[str, float]  # test metrics at `weight` (empty when no test user has a relevant item)
    unblended: dict[str, float]  # test metrics at weight 0, reported beside, never used for a choice
    popularity: dict[str, float]  # the popularity baseline on the same test users
    # Test NDCG@k of every grid weight, measured after the choice and only on request, for reports.
    test_ndcg: dict[float, float] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        """The flat dict recorded in `Metrics.ranking`."""
        if not self.test:
            return {}
        out = dict(self.test)
        out.update({f"popularity_{name}": v for name, v in self.popularity.items()})
        out.update({f"unblended_{name}": v for name, v in self.unblended.items()})
        out["popularity_weight"] = self.weight
        return out


def blended_ranking(
    scorer: Scorer,
    *,
    fit: Interactions,
    validation: Interactions,
    train: Interactions,
    test: Interactions,
    grid: tuple[float, ...] = WEIGHT_GRID,
    k: int = K,
    test_curve: bool = False,
) -> BlendedRanking:
    """Choose the popularity weight on validation, then measure the test split with it.

    Parameters
    ----------
    scorer : scores users from a history; called with `fit` for validation and `train` for test
    fit, validation : the split of `train` the model was fitted / early-stopped on
    train : the whole training split: excluded from test candidates and the source of test popularity
    test : held-out ratings, or empty (then only the weight is chosen)
    test_curve : also measure test NDCG@k at every grid weight, after the choice (for reports)

    Raises
    ------
    ValueError
        `validation` is not part of `train`, or shares a (user, item) pair with `test`.
    """
    if len(fit) + len(validation) != len(train) or _overlaps(validation, test):
        raise ValueError("blended_ranking: validation must be carved from train and disjoint from test")
    weight, curve = choose_popularity_weight(scorer, fit, validation, grid, k)
    task = RankingTask.build(train, test)
    if len(task.users) == 0:
        return BlendedRanking(weight, curve, {}, {}, {})
    stars = scorer(train, task.users)
    return BlendedRanking(
        weight,
        curve,
        task.evaluate(stars, weight, k),
        task.evaluate(stars, 0.0, k),
        task.evaluate_popularity(k),
        {w: task.evaluate(stars, w, k)[f"ndcg@{k}"] for w in grid} if test_curve else {},
    )


def _overlaps(a: Interactions, b: Interactions) -> bool:
    width = np.int64(max(a.num_items, b.num_items) + 1)
    return bool(np.isin(a.user_ids * width + a.item_ids, b.user_ids * width + b.item_ids).any())
