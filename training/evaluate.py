"""Pure evaluation: predictions for held-out pairs and error metrics. Never used during fitting on test data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.data import Interactions

BATCH = 8192


def scale(stars: np.ndarray) -> np.ndarray:
    """Stars 1..5 to the tutorial's [0,1] scale."""
    return (stars - 1.0) / 4.0


def error_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE in stars and on the [0,1] scale (which is the star error divided by 4)."""
    err = predicted.astype(np.float64) - actual.astype(np.float64)
    rmse = float(np.sqrt(np.mean(err**2)))
    mae = float(np.mean(np.abs(err)))
    return {"rmse": rmse, "mae": mae, "rmse_scaled": rmse / 4.0, "mae_scaled": mae / 4.0}


def predict_pairs(model: nn.Module, data: Interactions) -> np.ndarray:
    """Stars predicted by an mf or dense network for every (user, item) pair of `data`."""
    users = torch.from_numpy(data.user_ids)
    items = torch.from_numpy(data.item_ids)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(data), BATCH):
            out.append(model.predict(users[lo : lo + BATCH], items[lo : lo + BATCH]))  # type: ignore[operator]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def sequence_contexts(
    history: Interactions, queries: Interactions, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each query (user, item, time): the user's last ``length - 1`` history ratings strictly before that
    time, then the query item, left-padded with 0. Ratings of the query position are 0 (unknown).

    Returns ``(items, ratings)`` of shape ``[len(queries), length]`` in the order of `queries`.
    """
    order = history.time_order()
    h_users, h_items, h_ratings = history.user_ids[order], history.item_ids[order], history.ratings[order]
    # One sortable key per (user, time): a query sees exactly the history keys below its own.
    shift = np.int64(1) << 32
    keys = h_users * shift + history.timestamps[order]
    q_keys = queries.user_ids * shift + queries.timestamps
    end = np.searchsorted(keys, q_keys, side="left")
    first = np.searchsorted(h_users, queries.user_ids, side="left")
    idx = end[:, None] + np.arange(-(length - 1), 0)[None, :]
    valid = idx >= first[:, None]
    idx = np.where(valid, idx, 0)
    items = np.where(valid, h_items[idx] if len(h_items) else 0, 0)
    ratings = np.where(valid, h_ratings[idx] if len(h_ratings) else 0.0, 0.0)
    items = np.concatenate([items, queries.item_ids[:, None]], axis=1)
    ratings = np.concatenate([ratings, np.zeros((len(queries), 1))], axis=1)
    return items.astype(np.int64), ratings.astype(np.float32)


def predict_sequences(
    model: nn.Module, history: Interactions, queries: Interactions, length: int
) -> np.ndarray:
    """Stars the LSTM predicts for each query pair, from the user's history before the query's time."""
    items, ratings = sequence_contexts(history, queries, length)
    it, rt = torch.from_numpy(items), torch.from_numpy(ratings)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(queries), BATCH):
            out.append(model.predict(it[lo : lo + BATCH], rt[lo : lo + BATCH])[:, -1])  # type: ignore[operator]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
