"""Rating prediction: (user, items) for the pair models, an item sequence for the LSTM.

Each request is one batched call: raw ids -> index tensors -> ``module.predict`` under inference mode ->
``.tolist()`` -> raw ids back.
"""

from __future__ import annotations

import numpy as np
import torch

from app.artifacts import SEQUENCE_LENGTH
from app.registry import ModelRegistry
from app.schemas import Prediction, PredictResponse, SequencePredictResponse

DECIMALS = 4  # stars to 1e-4: far below model error, and short JSON


def predict_ratings(*, registry: ModelRegistry, model: str, user_id: int, item_ids: list[int]) -> PredictResponse:
    """Predicted stars of `user_id` for each of `item_ids`, in order."""
    loaded = registry.model(model, kind="pair")
    user = registry.user_index(user_id)
    items = registry.item_indices(item_ids)
    with torch.inference_mode():
        stars = loaded.module.predict(torch.full((len(items),), user), torch.from_numpy(items))
    return PredictResponse(
        model=loaded.name,
        model_version=loaded.version,
        user_id=user_id,
        predictions=_predictions(item_ids, stars),
    )


def predict_sequence(*, registry: ModelRegistry, items: list[int], ratings: list[float]) -> SequencePredictResponse:
    """Predicted stars of each item of a sequence (oldest first) from the items and ratings before it.

    The sequence is left-padded to SEQUENCE_LENGTH with item 0 and rating 0, as the LSTM was trained; unknown
    ratings (items after the rated prefix) are 0 too.
    """
    loaded = registry.model("lstm", kind="sequence")
    registry.check_ratings(ratings)
    index = registry.item_indices(items)
    padded_items, padded_ratings = left_pad(index, np.asarray(ratings, dtype=np.float32), SEQUENCE_LENGTH)
    with torch.inference_mode():
        stars = loaded.module.predict(torch.from_numpy(padded_items[None]), torch.from_numpy(padded_ratings[None]))[
            0, SEQUENCE_LENGTH - len(items) :
        ]
    return SequencePredictResponse(
        model=loaded.name, model_version=loaded.version, predictions=_predictions(items, stars)
    )


def left_pad(items: np.ndarray, ratings: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `length` items and their ratings, left-padded with 0; ``ratings`` may be shorter than
    ``items`` (the known ratings of the leading items): the rest are 0, unknown."""
    padded_items = np.zeros(length, dtype=np.int64)
    padded_ratings = np.zeros(length, dtype=np.float32)
    full = np.zeros(len(items), dtype=np.float32)
    full[: len(ratings)] = ratings
    n = min(len(items), length)
    if n:
        padded_items[length - n :] = items[len(items) - n :]
        padded_ratings[length - n :] = full[len(items) - n :]
    return padded_items, padded_ratings


def _predictions(item_ids: list[int], stars: torch.Tensor) -> list[Prediction]:
    ratings = stars.to(torch.float64).round(decimals=DECIMALS).tolist()
    return [Prediction(item_id=i, rating=r) for i, r in zip(item_ids, ratings, strict=True)]
