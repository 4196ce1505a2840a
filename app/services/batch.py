"""Top-k for many known users at once: `POST /recommend/batch` and ``python -m app.batch`` (a whole store).

The scores of all requested users come from one batched model call where the model has a batched form: for
mf and lstm, whose known users' stars are exactly ``coef @ basis.T + offset`` (`app.foldin.LinearView`,
verified against ``score_all`` at load), one matrix product ``[users, r] x [r, items]``; a module exporting
ranking vectors (``rank_user_vector``/``rank_item_vectors``) ranks by their product instead. The dense net
has no batched form in the contract (its ``score_all`` takes one user), so it is a ``score_all`` loop, and
the response says ``method: "loop"``.

Everything after the scores is vectorised over the batch too: one ``[users, items]`` candidate mask (filters,
then each user's training items), one stable descending sort per row, so ties go to the lower item index
exactly as `GET /recommend/{user_id}` breaks them. Diversity (MMR) re-ranks row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from app.diversity import mmr_order, pool_size
from app.errors import UnknownUserError
from app.handlers import ModelHandler
from app.ranking import Filters, candidate_mask, recommended_items
from app.registry import ModelRegistry
from app.schemas import BatchRecommendResponse, BatchUserResult

Method = Literal["matrix", "loop"]


@dataclass(frozen=True)
class BatchTop:
    """Top items of a batch: ``items[r]`` are the indices ranked offset.. for user row r (-1 past `totals[r]`)."""

    items: np.ndarray  # [users, k] int64 item indices, -1 where a user has fewer candidates
    scores: np.ndarray  # [users, k] ranking score
    stars: np.ndarray  # [users, k] predicted stars
    totals: np.ndarray  # [users] candidates per user
    method: Method


def user_indices(registry: ModelRegistry, user_ids: list[int]) -> np.ndarray:
    """Model indices of known raw user ids; `UnknownUserError` names every unknown one."""
    unknown = [u for u in user_ids if not registry.has_user(u)]
    if unknown:
        raise UnknownUserError(list(dict.fromkeys(unknown)))
    return np.array([registry.user_index(u) for u in user_ids], dtype=np.int64)


def score_users(
    registry: ModelRegistry, loaded: ModelHandler, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Method]:
    """Ranking scores and predicted stars ``[len(users), n_items + 1]`` of known user indices."""
    view = registry.views[loaded.name]
    if view.exact:
        stars = view.stars(users).astype(np.float32)
        method: Method = "matrix"
    else:
        stars = loaded.stars_users(users)
        method = "loop"
    if view.rank is not None:
        scores = (torch.from_numpy(view.rank.users[users]) @ torch.from_numpy(view.rank.items).T).numpy()
        return scores.astype(np.float32), stars, method
    # Dense ranks with an MLP head: its served `rank_all`, one user at a time.
    return loaded.rank_users(users), stars, "loop"


def seen_mask(registry: ModelRegistry, users: np.ndarray) -> np.ndarray:
    """``[len(users), n_items + 1]``: True where the user rated the item in training."""
    starts, ends = registry.indptr[users], registry.indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    # Positions of every history entry of the batch, without a Python loop over users.
    positions = (
        np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
    )
    mask = np.zeros((len(users), registry.n_items + 1), dtype=bool)
    mask[rows, registry.history_items[positions]] = True
    return mask


def top_for_users(
    registry: ModelRegistry, loaded: ModelHandler, users: np.ndarray, filters: Filters, *, exclude_seen: bool = True
) -> BatchTop:
    """The ranked page of every user in `users` (model indices) under one set of filters."""
    base = candidate_mask(registry, filters)
    scores, stars, method = score_users(registry, loaded, users)
    mask = np.broadcast_to(base, scores.shape).copy()
    if exclude_seen:
        mask &= ~seen_mask(registry, users)
    totals = mask.sum(axis=1)
    need = min(filters.offset + filters.k, registry.n_items)
    masked = np.where(mask, scores, np.float32(-np.inf)).astype(np.float32, copy=False)
    if filters.diversity > 0.0:
        order = _diverse_rows(masked, mask, loaded.unit_embeddings, need, filters.diversity)
    else:
        order = top_rows(masked, need)
    order = order[:, filters.offset :]
    valid = np.arange(filters.offset, filters.offset + order.shape[1])[None, :] < totals[:, None]
    rows = np.arange(len(users))[:, None]
    return BatchTop(
        items=np.where(valid, order, -1),
        scores=np.where(valid, scores[rows, order], np.nan),
        stars=np.where(valid, stars[rows, order], np.nan),
        totals=totals,
        method=method,
    )


TIE_MARGIN = 16  # extra candidates topk fetches per row, so ties at the page's end can be broken by index


def top_rows(masked: np.ndarray, need: int) -> np.ndarray:
    """Column indices of each row's `need` best values, best first, equal values by lower index (the
    single-user path's order). `torch.topk` with a margin, then a sort of that margin by (value, index): 10x
    faster than a stable sort of every row; a row whose tie at the page's end runs past the margin is sorted
    whole, so the result is exact."""
    width = min(need + TIE_MARGIN, masked.shape[1])
    values_t, index_t = torch.topk(torch.from_numpy(masked), width, dim=1)
    values, index = values_t.numpy(), index_t.numpy()
    order = np.lexsort((index, -values), axis=1)
    values, index = np.take_along_axis(values, order, axis=1), np.take_along_axis(index, order, axis=1)
    if width < masked.shape[1]:
        edge = values[:, need - 1]
        for row in np.flatnonzero((values[:, -1] == edge) & np.isfinite(edge)).tolist():
            full = torch.sort(torch.from_numpy(masked[row]), descending=True, stable=True).indices[:need]
            index[row, :need] = full.numpy()
    return index[:, :need]


def _diverse_rows(masked: np.ndarray, mask: np.ndarray, unit: np.ndarray, need: int, diversity: float) -> np.ndarray:
    pool_n = min(pool_size(need), masked.shape[1])
    pools = torch.sort(torch.from_numpy(masked), dim=1, descending=True, stable=True).indices[:, :pool_n].numpy()
    out = np.full((len(masked), need), -1, dtype=np.int64)
    for row, pool in enumerate(pools):
        pool = pool[mask[row, pool]]
        if len(pool):
            picks = pool[mmr_order(masked[row, pool].astype(np.float64), unit[pool], need, diversity)]
            out[row, : len(picks)] = picks
    return out


def recommend_batch(
    *,
    registry: ModelRegistry,
    user_ids: list[int],
    model: str,
    filters: Filters,
    exclude_seen: bool = True,
) -> BatchRecommendResponse:
    """Top-k of each known user in `user_ids`, in order; `UnknownUserError` names any unknown ones."""
    loaded = registry.model(model)
    users = user_indices(registry, user_ids)
    top = top_for_users(registry, loaded, users, filters, exclude_seen=exclude_seen)
    results = []
    for row, user_id in enumerate(user_ids):
        keep = top.items[row] >= 0
        results.append(
            BatchUserResult(
                user_id=user_id,
                total=int(top.totals[row]),
                items=recommended_items(
                    registry, top.items[row][keep], top.scores[row][keep], top.stars[row][keep], None
                ),
            )
        )
    return BatchRecommendResponse(
        model=loaded.name, model_version=loaded.version, method=top.method, offset=filters.offset, results=results
    )


def chunks(n: int, size: int) -> Iterator[np.ndarray]:
    """User indices 1..n in blocks of `size`."""
    for start in range(1, n + 1, size):
        yield np.arange(start, min(start + size, n + 1), dtype=np.int64)
