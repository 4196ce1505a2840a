"""Diversity re-ranking: maximal marginal relevance (Carbonell & Goldstein 1998) over a model's item embeddings.

With ``diversity = λ`` in [0, 1], the page is built greedily: each next item maximises

    (1 - λ) · relevance(i) - λ · max similarity(i, items already chosen)

where relevance is the ranking score min-max scaled to [0, 1] over the candidate pool and similarity is the
cosine of the model's item embeddings (the same unit vectors `/items/{id}/similar` uses). λ = 0 is the plain
ranking (and takes the plain path); λ = 1 ignores the score after the first item. Only a pool of the best
candidates is re-ranked (`pool_size`), so the cost is ``pool x page`` dot products whatever the catalog size,
and paging stays consistent: the greedy order is deterministic, computed for ``offset + k`` items and sliced
(`app.ranking.ranked_page` does that).
"""

from __future__ import annotations

import numpy as np

POOL_FACTOR = 5  # the pool holds this many times the items asked for...
MIN_POOL = 100  # ...and at least this many: enough room for λ = 0.5 to reach past near-duplicates


def pool_size(need: int) -> int:
    return max(MIN_POOL, POOL_FACTOR * need)


def mmr_order(relevance: np.ndarray, unit: np.ndarray, n: int, diversity: float) -> np.ndarray:
    """Positions into the pool of the first `n` MMR picks; `relevance` best first (the pool as ranked)."""
    span = float(relevance.max() - relevance.min()) if len(relevance) else 0.0
    scaled = (relevance - relevance.min()) / span if span > 0 else np.ones_like(relevance)
    similarity = unit @ unit.T  # [pool, pool]; the pool is small
    closest = np.full(len(relevance), -np.inf)  # max similarity to anything chosen so far
    chosen: list[int] = []
    available = np.ones(len(relevance), dtype=bool)
    for _ in range(min(n, len(relevance))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(available, (1.0 - diversity) * scaled - diversity * penalty, -np.inf)
        pick = int(np.argmax(value))  # ties: the better-ranked (earlier) pool position
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, similarity[:, pick])
    return np.asarray(chosen, dtype=np.int64)


def intra_list_diversity(unit: np.ndarray, lists: np.ndarray) -> float:
    """Mean pairwise cosine distance (1 - cos) within each row of item indices `lists` ``[U, k]``, averaged."""
    if lists.shape[1] < 2:
        return 0.0
    vectors = unit[lists]  # [U, k, d]
    similarity = np.einsum("ukd,ujd->ukj", vectors, vectors)
    k = lists.shape[1]
    off_diagonal = (similarity.sum(axis=(1, 2)) - np.einsum("ukk->u", similarity)) / (k * (k - 1))
    return float(np.mean(1.0 - off_diagonal))
