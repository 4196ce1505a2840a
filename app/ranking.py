"""Ranking helpers every recommending service shares: filters and the candidate mask, the top-k page (plain or
diversified), explanations, and the items of a response. Pure numpy over item indices; no model calls.

Ranking: by score, ties to the lower item index, so paging with `offset` neither repeats nor skips an item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.diversity import mmr_order, pool_size
from app.errors import InvalidRequestError
from app.registry import ModelRegistry
from app.schemas import Because, RecommendedItem

DECIMALS = 4  # stars and scores to 1e-4: far below model error, and short JSON
EXPLAIN_TOP = 3  # similar liked items shown per recommendation
LIKED_STARS = 4.0  # "highly rated" for explanations

Explanations = list[list[tuple[int, float]]]  # per page item: (liked item index, cosine similarity)


@dataclass(frozen=True)
class Filters:
    """What every recommend endpoint can restrict: genres (any of), raw item ids to leave out, paging."""

    k: int
    offset: int = 0
    genres: tuple[str, ...] = ()
    exclude: tuple[int, ...] = ()
    diversity: float = 0.0  # MMR trade-off in [0, 1] (app.diversity); 0 is the plain ranking


def check_k(registry: ModelRegistry, k: int) -> None:
    """`InvalidRequestError` when `k` asks for more items than the catalog has."""
    if k > registry.n_items:
        raise InvalidRequestError(
            f"k={k} is larger than the catalog ({registry.n_items} items); ask for at most {registry.n_items}",
            max_k=registry.n_items,
        )


def candidate_mask(registry: ModelRegistry, filters: Filters) -> np.ndarray:
    """Boolean mask over item indices of what may be recommended (never index 0, the padding)."""
    check_k(registry, filters.k)
    mask = registry.all_items.copy()
    if filters.genres:
        mask &= registry.genre_mask(list(filters.genres))
    if filters.exclude:
        mask[registry.item_indices(list(filters.exclude))] = False
    return mask


def top_page(scores: np.ndarray, mask: np.ndarray, *, k: int, offset: int) -> tuple[np.ndarray, int]:
    """Indices of the candidates ranked offset..offset+k by score (ties: lower index first), and how many
    candidates there are. Only the best offset+k are ordered: `torch.topk` finds the score to beat (3x faster
    than numpy's partition over a 62k catalog), then every candidate reaching it, ties included, is sorted."""
    total = int(np.count_nonzero(mask))
    need = min(offset + k, total)
    if need <= offset:
        return np.zeros(0, dtype=np.int64), total
    masked = np.where(mask, scores, -np.inf)
    threshold = torch.topk(torch.from_numpy(masked), need, sorted=False).values.min().item()
    candidates = np.flatnonzero(mask & (masked >= threshold))
    order = np.lexsort((candidates, -masked[candidates]))[:need]
    page: np.ndarray = candidates[order[offset:]]
    return page, total


def ranked_page(scores: np.ndarray, mask: np.ndarray, unit: np.ndarray, filters: Filters) -> tuple[np.ndarray, int]:
    """`top_page`, re-ranked by maximal marginal relevance over `unit` embeddings when ``filters.diversity > 0``."""
    if filters.diversity <= 0.0:
        return top_page(scores, mask, k=filters.k, offset=filters.offset)
    total = int(np.count_nonzero(mask))
    need = min(filters.offset + filters.k, total)
    if need <= filters.offset:
        return np.zeros(0, dtype=np.int64), total
    pool, _ = top_page(scores, mask, k=min(pool_size(need), total), offset=0)
    order = mmr_order(scores[pool].astype(np.float64), unit[pool], need, filters.diversity)
    page: np.ndarray = pool[order[filters.offset :]]
    return page, total


def explain_items(unit: np.ndarray, page: np.ndarray, liked: np.ndarray) -> Explanations:
    """For each recommended index, up to EXPLAIN_TOP (liked index, cosine similarity of the `unit` item
    embeddings), most similar first."""
    liked = np.unique(liked)
    if len(page) == 0 or len(liked) == 0:
        return [[] for _ in page]
    similarity = unit[page] @ unit[liked].T  # [k, n_liked], one product for the whole page
    similarity[page[:, None] == liked[None, :]] = -np.inf  # an item does not explain itself
    n = min(EXPLAIN_TOP, len(liked))
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :n]
    best = np.take_along_axis(similarity, top, axis=1)
    result: Explanations = []
    for row_items, row_sims in zip(liked[top].tolist(), best.tolist(), strict=True):
        result.append([(i, s) for i, s in zip(row_items, row_sims, strict=True) if s != -np.inf])
    return result


def rounded(values: np.ndarray) -> list[float]:
    """Served numbers to `DECIMALS`, as Python floats."""
    out: list[float] = np.round(values.astype(np.float64), DECIMALS).tolist()
    return out


def recommended_items(
    registry: ModelRegistry,
    page: np.ndarray,
    scores: np.ndarray,
    stars: np.ndarray | None,
    because: Explanations | None,
) -> list[RecommendedItem]:
    """The response items of `page` (item indices) with their scores, stars (None: popularity) and explanations."""
    score_list = rounded(scores)
    star_list = rounded(stars) if stars is not None else None
    result = []
    for position, index in enumerate(page.tolist()):
        item = registry.item(index)
        result.append(
            RecommendedItem(
                item_id=item.item_id,
                title=item.title,
                year=item.year,
                genres=item.genres,
                score=score_list[position],
                rating=star_list[position] if star_list is not None else None,
                because=None
                if because is None
                else [
                    Because(
                        item_id=registry.item(i).item_id,
                        title=registry.item(i).title,
                        similarity=round(s, DECIMALS),
                    )
                    for i, s in because[position]
                ],
            )
        )
    return result
