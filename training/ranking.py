"""Top-k ranking quality: the protocol every ranker (our models, the peers) is measured with.

Protocol (one `RankingTask` per held-out set): a held-out item rated >= 4 stars is relevant; every user with
at least one relevant item ranks every item they did *not* rate in the history (the training data the scorer
was fitted on); Precision, Recall, NDCG (binary gains, ideal DCG over min(#relevant, k)) and HitRate at 10 are
averaged over those users, beside catalog coverage and the mean training count of the items shown.

Our models rank by their ranking score (`rank_all`, `rank_next`: see `app/artifacts.py` and
`training.rank_heads`); schema 1's blend of predicted stars with a popularity prior is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.artifacts import SEQUENCE_LENGTH, context_length, left_pad, popularity_prior
from training.baselines import item_popularity
from training.data import Interactions

log = logging.getLogger(__name__)

K = 10
RELEVANT_STARS = 4.0  # ML-100K convention: 4 and 5 stars are "liked"
# Users a ranking evaluation scores at most (dense per evaluation: users x items scores and masks). Large
# enough that all 943 ML-100K users are kept (the protocol is exact there); a seeded sample on larger sets.
MAX_USERS = 2_000

# (history, users) -> scores [len(users), num_items + 1], column 0 being padding, higher is better. `history` is
# what the scorer may know about the users: the training data its model was fitted on.
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
    popularity: np.ndarray  # [num_items + 1] popularity_prior (app.artifacts) of the history counts

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
            popularity_prior(item_popularity(history)),
        )

    def evaluate(self, stars: np.ndarray, weight: float, k: int = K) -> dict[str, float]:
        """Mean metrics of ranking by ``stars + weight * popularity`` (`stars` as returned by a `Scorer`), plus
        ``coverage@k`` (share of the catalog in anyone's top k) and ``mean_count@k`` (mean training rating count
        of the items recommended)."""
        blended = stars.astype(np.float64) + weight * self.popularity[None, :]
        top = top_k(blended, self.exclude, k)
        per_user = per_user_metrics(top, self.relevant, k)
        out = {name: float(v.mean()) for name, v in per_user.items()}
        counts = item_popularity(self.history)
        out[f"coverage@{k}"] = len(np.unique(top)) / max(self.history.num_items, 1)
        out[f"mean_count@{k}"] = float(counts[top].mean()) if top.size else 0.0
        return out

    def evaluate_popularity(self, k: int = K) -> dict[str, float]:
        """The popularity baseline: rank by training count alone."""
        return self.evaluate(np.zeros((len(self.users), len(self.popularity))), 1.0, k)


def latest_contexts(history: Interactions, users: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's `length` latest history ratings, oldest first, left-padded with item 0 and rating 0 (the
    contract's `left_pad`, as the service pads a session)."""
    indptr, order = history.user_histories()
    items = np.zeros((len(users), length), dtype=np.int64)
    ratings = np.zeros((len(users), length), dtype=np.float32)
    for row, user in enumerate(users.tolist()):
        positions = order[indptr[user] : indptr[user + 1]]
        items[row], ratings[row] = left_pad(history.item_ids[positions], history.ratings[positions], length)
    return items, ratings


def rank_scorer(network: nn.Module) -> Scorer:
    """The served ranking score of known users: ``rank_all(tensor([u]))``, from the user vectors the network
    holds (folded from its whole training split; `history` only sizes the output)."""

    def score(history: Interactions, users: np.ndarray) -> np.ndarray:
        network.eval()
        out = np.empty((len(users), history.num_items + 1), dtype=np.float32)
        with torch.inference_mode():
            for row, user in enumerate(users.tolist()):
                out[row] = network.rank_all(torch.tensor([user])).numpy()  # type: ignore[operator]
        return out

    return score


def rank_session_scorer(network: nn.Module) -> Scorer:
    """The LSTM's ``rank_next`` after each user's latest history ratings (its context length), as
    `POST /recommend` ranks a session of them."""

    def score(history: Interactions, users: np.ndarray) -> np.ndarray:
        network.eval()
        out = np.empty((len(users), history.num_items + 1), dtype=np.float32)
        items, ratings = latest_contexts(history, users, context_length(SEQUENCE_LENGTH))
        it, rt = torch.from_numpy(items), torch.from_numpy(ratings)
        with torch.inference_mode():
            for row in range(len(users)):
                out[row] = network.rank_next(it[row : row + 1], rt[row : row + 1]).numpy()  # type: ignore[operator]
        return out

    return score
