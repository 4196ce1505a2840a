"""New users from a few ratings: `POST /recommend` and `POST /predict/{mf,dense}` for a visitor in no table.

The visitor's rated items are folded in as a new user against the model's frozen item side
(`app.foldin.LinearView.fold_in`: a regularised least-squares user vector whose prior is fitted on the known
users), and then ranked exactly as a known user is: the same candidate mask, popularity blend, diversity,
paging and explanations. Items given without a rating are never recommended but do not inform the vector.
"""

from __future__ import annotations

import numpy as np

from app.registry import ModelRegistry
from app.schemas import AnonymousPredictResponse, Prediction, RecommendResponse
from app.services.predict import DECIMALS
from app.services.recommend import LIKED_STARS, Filters, _ranked, candidate_mask


def _folded_stars(registry: ModelRegistry, model: str, index: np.ndarray, ratings: list[float]) -> np.ndarray:
    """Predicted stars ``[n_items + 1]`` of a visitor who rated the leading ``len(ratings)`` of `index`."""
    rated = index[: len(ratings)]
    coef = registry.views[model].fold_in(rated, np.asarray(ratings, dtype=np.float64))
    stars: np.ndarray = registry.views[model].stars_of(coef).astype(np.float32)
    return stars


def recommend_for_visitor(
    *,
    registry: ModelRegistry,
    model: str,
    items: list[int],
    ratings: list[float],
    filters: Filters,
    explain: bool = False,
) -> RecommendResponse:
    """The best items for a visitor who rated the leading items of `items`, by the pair model `model`."""
    loaded = registry.model(model, kind="pair")
    index = registry.item_indices(items)
    mask = candidate_mask(registry, filters)
    stars = _folded_stars(registry, model, index, ratings)
    mask[index] = False
    liked = index[: len(ratings)][np.asarray(ratings) >= LIKED_STARS] if explain else None
    return _ranked(registry, loaded, stars, mask, filters, liked, user_id=None, strategy="fold-in")


def predict_for_visitor(
    *, registry: ModelRegistry, model: str, items: list[int], ratings: list[float], item_ids: list[int]
) -> AnonymousPredictResponse:
    """Predicted stars for `item_ids` of a visitor who gave `ratings` to `items`, by the pair model `model`."""
    loaded = registry.model(model, kind="pair")
    index = registry.item_indices(items)
    targets = registry.item_indices(item_ids)
    stars = _folded_stars(registry, model, index, ratings)[targets]
    rounded = np.round(stars.astype(np.float64), DECIMALS).tolist()
    return AnonymousPredictResponse(
        model=loaded.name,
        model_version=loaded.version,
        folded_in=len(ratings),
        predictions=[Prediction(item_id=i, rating=r) for i, r in zip(item_ids, rounded, strict=True)],
    )
