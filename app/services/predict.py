"""Rating prediction: (user, items) for the pair models, an item sequence for the LSTM.

Raw ids -> model indices (the registry), one batched call through the model's handler (`app.handlers`), and
raw ids back; the handler decides how its kind predicts a known user's items.
"""

from __future__ import annotations

import numpy as np

from app.ranking import rounded
from app.registry import ModelRegistry
from app.schemas import Prediction, PredictResponse, SequencePredictResponse


def predict_ratings(*, registry: ModelRegistry, model: str, user_id: int, item_ids: list[int]) -> PredictResponse:
    """Predicted stars of `user_id` for each of `item_ids`, in order, by the pair model `model`."""
    loaded = registry.model(model, kind="pair")
    stars = loaded.predict_pairs(registry.user_index(user_id), registry.item_indices(item_ids))
    return PredictResponse(
        model=loaded.name,
        model_version=loaded.version,
        user_id=user_id,
        predictions=predictions(item_ids, stars),
    )


def predict_sequence(
    *, registry: ModelRegistry, model: str, items: list[int], ratings: list[float]
) -> SequencePredictResponse:
    """Predicted stars of each item of a sequence (oldest first) from the items and ratings before it, by the
    sequence model `model`.

    The sequence is left-padded to the model's sequence length with item 0 and rating 0, as it was trained;
    unknown ratings (items after the rated prefix) are 0 too.
    """
    loaded = registry.sequence_model(model)
    registry.check_ratings(ratings)
    stars = loaded.predict_sequence(registry.item_indices(items), np.asarray(ratings, dtype=np.float32))
    return SequencePredictResponse(
        model=loaded.name, model_version=loaded.version, predictions=predictions(items, stars)
    )


def predict_user_sequence(
    *, registry: ModelRegistry, model: str, user_id: int, item_ids: list[int]
) -> SequencePredictResponse:
    """Predicted stars of `user_id` for each of `item_ids` by the sequence model `model`, after the user's
    whole training history (the state `/recommend/{user}?model=lstm` ranks from)."""
    loaded = registry.sequence_model(model)
    stars = loaded.predict_pairs(registry.user_index(user_id), registry.item_indices(item_ids))
    return SequencePredictResponse(
        model=loaded.name, model_version=loaded.version, user_id=user_id, predictions=predictions(item_ids, stars)
    )


def predictions(item_ids: list[int], stars: np.ndarray) -> list[Prediction]:
    """One `Prediction` per raw item id, in order."""
    return [Prediction(item_id=i, rating=r) for i, r in zip(item_ids, rounded(stars), strict=True)]
