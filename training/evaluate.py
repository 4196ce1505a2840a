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


def sequence_tastes(model: nn.Module, history: Interactions, window: int) -> tuple[torch.Tensor, np.ndarray]:
    """Run the LSTM over every user's whole history: taste vectors ``[n_users + 1, width + 1, d]`` and the
    left-pad offsets, so ``tastes[u, offsets[u] + k]`` summarises user u's first k history ratings (zero past
    the end of the history)."""
    items, ratings, offsets, lengths = history.to_histories(window)
    it, rt = torch.from_numpy(items), torch.from_numpy(ratings)
    ends = offsets + lengths
    order = np.argsort(ends, kind="stable")  # users of similar length together: little right padding to run
    chunks = [order[lo : lo + 128] for lo in range(0, len(order), 128)]
    tastes: torch.Tensor | None = None
    with torch.inference_mode():
        for chunk in chunks:
            # At least one step: a chunk of users without history still gets its starting taste.
            rows, width = torch.from_numpy(chunk), max(int(ends[chunk].max()), 1)
            taste = model.run(it[rows, :width], rt[rows, :width])[0]  # type: ignore[operator]
            if tastes is None:
                tastes = torch.zeros(len(items), items.shape[1] + 1, taste.shape[-1])
            tastes[rows, : width + 1] = taste
    assert tastes is not None
    return tastes, offsets


def user_tastes(model: nn.Module, history: Interactions, window: int) -> torch.Tensor:
    """Each user's taste after their whole history, ``[n_users + 1, d]``."""
    tastes, offsets = sequence_tastes(model, history, window)
    lengths = np.bincount(history.user_ids, minlength=history.num_users + 1)
    return tastes[torch.arange(len(offsets)), torch.from_numpy(offsets + lengths)]


def predict_sequences(model: nn.Module, history: Interactions, queries: Interactions, window: int) -> np.ndarray:
    """Stars the LSTM predicts for each query (user, item, time) from the user's history before that time."""
    tastes, offsets = sequence_tastes(model, history, window)
    order = history.time_order()
    shift = np.int64(1) << 32  # one sortable key per (user, time)
    keys = history.user_ids[order] * shift + history.timestamps[order]
    before = np.searchsorted(keys, queries.user_ids * shift + queries.timestamps, side="left")
    first = np.searchsorted(history.user_ids[order], queries.user_ids, side="left")
    pos = offsets[queries.user_ids] + before - first
    with torch.inference_mode():
        taste = tastes[torch.from_numpy(queries.user_ids), torch.from_numpy(pos)]
        scaled = model.score_taste(taste, torch.from_numpy(queries.item_ids))  # type: ignore[operator]
        return (scaled * 4.0 + 1.0).clamp(1.0, 5.0).numpy()
