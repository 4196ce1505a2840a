"""Well-known top-N recommenders, the peers the quality report measures our models against in the same run.

Each peer fits on a history and scores every item for given users (a `training.ranking.Scorer`), with its
hyperparameters chosen on validation carved from the training split, exactly as ours are:

- popularity: the training rating count;
- item-KNN: cosine similarity between items' user sets, a user's score the sum over their history, each item
  keeping its `k` most similar neighbours;
- EASE (Steck 2019): the closed-form item-item model ``B = I - P / diag(P)``, ``P = (X^T X + lambda I)^-1``;
- implicit ALS (Hu, Koren & Volinsky 2008, the `implicit` package's `AlternatingLeastSquares`), confidence
  ``1 + alpha`` on every rated pair.

All use binary implicit feedback (rated or not), as the ranking heads of our models do.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.data import Interactions
from training.ranking import RankingTask

log = logging.getLogger(__name__)

PeerFit = Callable[[Interactions, dict[str, Any]], Callable[[np.ndarray], np.ndarray]]

EASE_LAMBDAS = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0)
KNN_NEIGHBOURS = (20, 50, 100, 200, 0)  # 0: every item
# u1 validation chose the grid's edge twice: (32 factors, regularization 1, alpha 1) from factors 32-128,
# regularization 0.01-1 and alpha 1-20; then (16, 10, 2) from factors 16-64, regularization 0.3-10 and alpha
# 0.5-2. So the grid now reaches past both.
ALS_GRID = {"factors": (8, 16, 32, 64), "regularization": (1.0, 3.0, 10.0, 30.0, 100.0), "alpha": (1.0, 2.0, 5.0)}
ALS_ITERATIONS = 15


def binary_matrix(history: Interactions) -> np.ndarray:
    """``[n_users + 1, n_items + 1]`` float64, 1 where the user rated the item."""
    x = np.zeros((history.num_users + 1, history.num_items + 1))
    x[history.user_ids, history.item_ids] = 1.0
    return x


def fit_popularity(history: Interactions, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    counts = np.bincount(history.item_ids, minlength=history.num_items + 1).astype(np.float64)
    return lambda users: np.broadcast_to(counts, (len(users), len(counts))).copy()


def fit_ease(history: Interactions, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    x = binary_matrix(history)
    gram = x.T @ x + params["lambda"] * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return lambda users: x[users] @ b


def fit_item_knn(history: Interactions, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    x = binary_matrix(history)
    norms = np.sqrt(x.sum(0))
    sim = (x.T @ x) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(sim, 0.0)
    k = int(params["k"])
    if 0 < k < sim.shape[0]:
        # Keep each item's k most similar neighbours (per column: the items that vote for it).
        cutoff = -np.partition(-sim, k - 1, axis=0)[k - 1]
        sim = np.where(sim >= cutoff[None, :], sim, 0.0)
    return lambda users: x[users] @ sim


def fit_als(history: Interactions, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    x = sp.csr_matrix(
        (np.ones(len(history), dtype=np.float32), (history.user_ids, history.item_ids)),
        shape=(history.num_users + 1, history.num_items + 1),
    )
    # implicit's own advice: one BLAS thread, as its solver runs its own loop over users (checked at construction).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=int(params["factors"]),
            regularization=float(params["regularization"]),
            alpha=float(params["alpha"]),
            iterations=ALS_ITERATIONS,
            random_state=int(params.get("seed", 0)),
            num_threads=1,
        )
        model.fit(x, show_progress=False)
    users_f, items_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda users: users_f[users] @ items_f.T


PEERS: dict[str, tuple[PeerFit, list[dict[str, Any]]]] = {
    "popularity": (fit_popularity, [{}]),
    "item-KNN": (fit_item_knn, [{"k": k} for k in KNN_NEIGHBOURS]),
    "EASE": (fit_ease, [{"lambda": v} for v in EASE_LAMBDAS]),
    "ALS": (
        fit_als,
        [dict(zip(ALS_GRID, values, strict=True)) for values in itertools.product(*ALS_GRID.values())],
    ),
}


@dataclass
class PeerResult:
    name: str
    params: dict[str, Any]  # chosen on validation
    validation_ndcg: float
    grid: list[tuple[dict[str, Any], float]] = field(default_factory=list)  # validation NDCG@10 per candidate


def choose_and_fit(
    name: str, fit: Interactions, val: Interactions, train: Interactions, seed: int = 0
) -> tuple[PeerResult, Callable[[np.ndarray], np.ndarray]]:
    """The peer's hyperparameters with the best validation NDCG@10 (fitted on `fit`, ranking `val`), then the
    peer refitted on the whole `train` with them; returns the choice and the refitted scorer."""
    fitter, grid = PEERS[name]
    task = RankingTask.build(fit, val)
    scored: list[tuple[dict[str, Any], float]] = []
    for params in grid:
        params = {**params, "seed": seed} if name == "ALS" else params
        if len(grid) == 1 or len(task.users) == 0:
            scored.append((params, float("nan")))
            break
        scores = fitter(fit, params)(task.users)
        scored.append((params, task.evaluate(scores, 0.0)["ndcg@10"]))
    best = max(scored, key=lambda p: -np.inf if np.isnan(p[1]) else p[1])
    log.info("%s: chose %s on validation (NDCG@10 %.4f)", name, best[0], best[1])
    return PeerResult(name, best[0], best[1], scored), fitter(train, best[0])
