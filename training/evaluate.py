"""Pure evaluation: predictions for held-out pairs and error metrics. Never used during fitting on test data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.data import Interactions

BATCH = 8192


def scale(stars: np.ndarray, rating_min: float = 1.0, rating_max: float = 5.0) -> np.ndarray:
    """Stars on the data set's scale to [0,1] (the tutorial's (r - 1) / 4 on ML-100K)."""
    return (stars - rating_min) / (rating_max - rating_min)


def error_metrics(predicted: np.ndarray, actual: np.ndarray, span: float = 4.0) -> dict[str, float]:
    """RMSE and MAE in stars and on the [0,1] scale (the star error divided by the scale's `span`)."""
    err = predicted.astype(np.float64) - actual.astype(np.float64)
    rmse = float(np.sqrt(np.mean(err**2)))
    mae = float(np.mean(np.abs(err)))
    return {"rmse": rmse, "mae": mae, "rmse_scaled": rmse / span, "mae_scaled": mae / span}


def predict_pairs(model: nn.Module, data: Interactions) -> np.ndarray:
    """Stars predicted by an mf or dense network for every (user, item) pair of `data`."""
    users = torch.from_numpy(data.user_ids)
    items = torch.from_numpy(data.item_ids)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(data), BATCH):
            out.append(model.predict(users[lo : lo + BATCH], items[lo : lo + BATCH]))  # type: ignore[operator]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def tastes_at(
    model: nn.Module, history: Interactions, window: int, users: np.ndarray, positions: np.ndarray
) -> torch.Tensor:
    """The LSTM's taste of ``users[j]`` after their first ``positions[j]`` history ratings, ``[len(users), d]``.

    Users run in batches of similar history length with a bounded number of padded cells
    (`Histories.buckets`), and only the queried positions are kept: memory is linear in ratings and queries,
    never users x longest history.
    """
    hist = history.to_histories(window)
    offsets = hist.offsets
    wanted = np.unique(users)
    # Queries grouped by their user's batch, so each batch finds its queries without scanning all of them.
    batch_of = np.full(history.num_users + 1, -1, dtype=np.int64)
    batches = list(hist.buckets(wanted))
    for b, members in enumerate(batches):
        batch_of[members] = b
    query_order = np.argsort(batch_of[users], kind="stable")
    bounds = np.searchsorted(batch_of[users][query_order], np.arange(len(batches) + 1))
    out: torch.Tensor | None = None
    slot = np.empty(history.num_users + 1, dtype=np.int64)
    with torch.inference_mode():
        for b, members in enumerate(batches):
            # At least one step: a batch of users without history still gets its starting taste.
            items, ratings, _ = hist.padded(members, min_width=1)
            taste = model.run(torch.from_numpy(items), torch.from_numpy(ratings))[0]  # type: ignore[operator]
            if out is None:
                out = torch.zeros(len(users), taste.shape[-1])
            q = query_order[bounds[b] : bounds[b + 1]]
            slot[members] = np.arange(len(members))
            rows, cols = slot[users[q]], offsets[users[q]] + positions[q]
            out[torch.from_numpy(q)] = taste[torch.from_numpy(rows), torch.from_numpy(cols)]
    return out if out is not None else torch.zeros(len(users), int(model.dim) + 1)  # type: ignore[arg-type]


def user_tastes(model: nn.Module, history: Interactions, window: int) -> torch.Tensor:
    """Each user's taste after their whole history, ``[n_users + 1, d]``."""
    users = np.arange(history.num_users + 1)
    lengths = np.bincount(history.user_ids, minlength=history.num_users + 1)
    return tastes_at(model, history, window, users, lengths)


def predict_sequences(model: nn.Module, history: Interactions, queries: Interactions, window: int) -> np.ndarray:
    """Stars the LSTM predicts for each query (user, item, time) from the user's history before that time."""
    order = history.time_order()
    shift = np.int64(1) << 32  # one sortable key per (user, time)
    keys = history.user_ids[order] * shift + history.timestamps[order]
    before = np.searchsorted(keys, queries.user_ids * shift + queries.timestamps, side="left")
    first = np.searchsorted(history.user_ids[order], queries.user_ids, side="left")
    taste = tastes_at(model, history, window, queries.user_ids, before - first)
    with torch.inference_mode():
        scaled = model.score_taste(taste, torch.from_numpy(queries.item_ids))  # type: ignore[operator]
        lo, hi = history.rating_scale
        return (scaled * (hi - lo) + lo).clamp(lo, hi).numpy()
