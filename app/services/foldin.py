"""New users from a few ratings: `POST /recommend` and `POST /predict/{mf,dense}` for a visitor in no table.

The visitor's rated items are folded in as a new user against the model's frozen item side
(`app.foldin.LinearView.fold_in`: a regularised least-squares user vector whose prior is fitted on the known
users), and then ranked as a known user is: the same candidate mask, ranking vectors (mf), diversity,
paging and explanations. Items given without a rating are never recommended but do not inform the vector.
"""

from __future__ import annotations

import numpy as np

from app.handlers import ModelHandler
from app.ranking import LIKED_STARS, Filters, candidate_mask, explain_items, ranked_page, recommended_items
from app.registry import ModelRegistry
from app.schemas import AnonymousPredictResponse, RecommendResponse
from app.services.predict import predictions


def _folded(
    registry: ModelRegistry, loaded: ModelHandler, index: np.ndarray, ratings: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Ranking scores and predicted stars ``[n_items + 1]`` of a visitor who rated the leading
    ``len(ratings)`` of `index`: the model's ranking vectors where it exports them (mf); dense's ranking head
    is an MLP over a user vector the frozen module cannot take from outside, so a dense visitor is ranked by
    the folded-in stars."""
    view = registry.views[loaded.name]
    coef = view.fold_in(index[: len(ratings)], np.asarray(ratings, dtype=np.float64))
    stars = view.stars_of(coef).astype(np.float32)
    rank_vector = view.rank_vector_of(coef)
    if view.rank is not None and rank_vector is not None:
        return (view.rank.items @ rank_vector).astype(np.float32), stars
    return stars, stars


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
    registry.check_ratings(ratings)
    index = registry.item_indices(items)
    mask = candidate_mask(registry, filters)
    scores, stars = _folded(registry, loaded, index, ratings)
    mask[index] = False
    page, total = ranked_page(scores, mask, loaded.unit_embeddings, filters)
    liked = index[: len(ratings)][np.asarray(ratings) >= LIKED_STARS]
    because = explain_items(loaded.unit_embeddings, page, liked) if explain else None
    return RecommendResponse(
        user_id=None,
        model=loaded.name,
        model_version=loaded.version,
        strategy="fold-in",
        total=total,
        offset=filters.offset,
        items=recommended_items(registry, page, scores[page], stars[page], because),
    )


def predict_for_visitor(
    *, registry: ModelRegistry, model: str, items: list[int], ratings: list[float], item_ids: list[int]
) -> AnonymousPredictResponse:
    """Predicted stars for `item_ids` of a visitor who gave `ratings` to `items`, by the pair model `model`."""
    loaded = registry.model(model, kind="pair")
    registry.check_ratings(ratings)
    index = registry.item_indices(items)
    targets = registry.item_indices(item_ids)
    stars = _folded(registry, loaded, index, ratings)[1][targets]
    return AnonymousPredictResponse(
        model=loaded.name,
        model_version=loaded.version,
        folded_in=len(ratings),
        predictions=predictions(item_ids, stars),
    )
