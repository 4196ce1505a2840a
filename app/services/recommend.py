"""Top-k recommendations for a known user, a cold-start user (popular items) or an anonymous session.

Two model calls score every item, through the model's handler (`app.handlers`): the ranking score (which
orders the list) and the predicted stars (returned as each item's ``rating``); everything after them is
vectorised numpy (`app.ranking`): a boolean candidate mask (filters, seen items, padding), one top-k + sort
for the page, and one matrix product for the explanations of the k items returned.

Ranking: by the model's ranking score (see `app/artifacts.py`); ties go to the lower item index, so paging with
`offset` neither repeats nor skips an item.

Large catalogs (`registry.retrieval`, see app/retrieval.py): the model call gives a query vector instead,
a FAISS index a shortlist, and only the shortlist is scored, by the ranking space's inner product (mf, lstm:
exactly the ranking score) or, for dense, by its predicted stars (mf's shortlist re-ordered).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from app.artifacts import MODELS, ModelName
from app.errors import UnknownUserError
from app.handlers import ModelHandler, SequenceHandler
from app.ranking import (
    LIKED_STARS,
    Explanations,
    Filters,
    candidate_mask,
    explain_items,
    ranked_page,
    recommended_items,
)
from app.registry import ModelRegistry
from app.retrieval import ModelRetrieval, Scorer
from app.retrieval import ranked_page as retrieved_page
from app.schemas import RecommendResponse
from app.services import foldin

Strategy = Literal["personalized", "session"]


def recommend_for_user(
    *,
    registry: ModelRegistry,
    user_id: int,
    model: str,
    filters: Filters,
    exclude_seen: bool = True,
    explain: bool = False,
    fallback: Literal["popular"] | None = None,
) -> RecommendResponse:
    """The best items for a known user by `model`; an unknown user gets the most popular items if
    ``fallback="popular"``, else `UnknownUserError`."""
    loaded = registry.model(model)
    mask = candidate_mask(registry, filters)
    if not registry.has_user(user_id):
        if fallback != "popular":
            raise UnknownUserError([user_id])
        return _popular(registry, user_id, loaded, mask, filters, explain)
    user = registry.user_index(user_id)
    seen, seen_ratings = registry.history(user)
    if exclude_seen:
        mask[seen] = False
    liked = seen[seen_ratings >= LIKED_STARS] if explain else None
    retrieval = registry.retrieval.get(model)
    if retrieval is not None and retrieval.space is not None:
        return _retrieved_for_user(registry, loaded, retrieval, user, mask, filters, liked, user_id=user_id)
    # Every model scores a known user in one call each; the LSTM from the state after the whole history.
    scores, stars = loaded.score_user(user)
    return _ranked(registry, loaded, scores, stars, mask, filters, liked, user_id=user_id, strategy="personalized")


def recommend_for_visitor(
    *,
    registry: ModelRegistry,
    model: ModelName,
    items: list[int],
    ratings: list[float],
    filters: Filters,
    explain: bool = False,
) -> RecommendResponse:
    """`POST /recommend`: a sequence model ranks what comes after the session; a pair model folds the rated
    items in as a new user (`app.services.foldin`)."""
    # The contract's kind, not the loaded model's: a model that is not loaded gets the 404 of its own kind.
    if MODELS[model].kind == "pair":
        return foldin.recommend_for_visitor(
            registry=registry, model=model, items=items, ratings=ratings, filters=filters, explain=explain
        )
    return recommend_for_session(
        registry=registry, model=model, items=items, ratings=ratings, filters=filters, explain=explain
    )


def recommend_for_session(
    *,
    registry: ModelRegistry,
    model: str,
    items: list[int],
    ratings: list[float],
    filters: Filters,
    explain: bool = False,
) -> RecommendResponse:
    """The best next items after an anonymous session (oldest first) by the sequence model `model`; session
    items are never recommended, and the latest of them (its context length) are the model's context."""
    loaded = registry.sequence_model(model)
    registry.check_ratings(ratings)
    index = registry.item_indices(items)
    mask = candidate_mask(registry, filters)
    full_ratings = np.zeros(len(index), dtype=np.float32)
    full_ratings[: len(ratings)] = ratings
    mask[index] = False
    liked = index[full_ratings >= LIKED_STARS] if explain else None
    retrieval = registry.retrieval.get(model)
    if retrieval is not None and retrieval.space is not None:
        return _retrieved_for_session(registry, loaded, retrieval, index, full_ratings, mask, filters, liked)
    scores, stars = loaded.score_session(index, full_ratings)
    return _ranked(registry, loaded, scores, stars, mask, filters, liked, user_id=None, strategy="session")


# --- approximate retrieval (large catalogs) -----------------------------------------------------------------


def _retrieved_for_user(
    registry: ModelRegistry,
    loaded: ModelHandler,
    retrieval: ModelRetrieval,
    user: int,
    mask: np.ndarray,
    filters: Filters,
    liked: np.ndarray | None,
    *,
    user_id: int,
) -> RecommendResponse:
    space = retrieval.space
    assert space is not None
    query = space.query(registry.model(space.source).user_vector(user))
    score: Scorer = space.scorer(query)
    if retrieval.rerank:  # the shortlist is another model's: this model orders it

        def by_model(items: np.ndarray) -> np.ndarray:
            # Dense's ranking head needs the whole catalog (`rank_all`); its predicted stars order the shortlist.
            return loaded.predict_pairs(user, items)

        score = by_model

    page, scores, total = retrieved_page(
        lambda depth: space.index.search(query, depth),
        score,
        mask,
        k=filters.k,
        offset=filters.offset,
        config=retrieval.config,
    )
    stars = loaded.predict_pairs(user, page)
    because = explain_items(loaded.unit_embeddings, page, liked) if liked is not None else None
    return _response(registry, loaded, page, scores, stars, because, filters, total, user_id, "personalized")


def _retrieved_for_session(
    registry: ModelRegistry,
    loaded: SequenceHandler,
    retrieval: ModelRetrieval,
    items: np.ndarray,
    ratings: np.ndarray,
    mask: np.ndarray,
    filters: Filters,
    liked: np.ndarray | None,
) -> RecommendResponse:
    space = retrieval.space
    assert space is not None
    query = space.query(loaded.session_vector(items, ratings))
    page, scores, total = retrieved_page(
        lambda depth: space.index.search(query, depth),
        space.scorer(query),
        mask,
        k=filters.k,
        offset=filters.offset,
        config=retrieval.config,
    )
    stars = loaded.predict_next(items, ratings, page)
    because = explain_items(loaded.unit_embeddings, page, liked) if liked is not None else None
    return _response(registry, loaded, page, scores, stars, because, filters, total, None, "session")


def _response(
    registry: ModelRegistry,
    loaded: ModelHandler,
    page: np.ndarray,
    scores: np.ndarray,
    stars: np.ndarray,
    because: Explanations | None,
    filters: Filters,
    total: int,
    user_id: int | None,
    strategy: Strategy,
) -> RecommendResponse:
    return RecommendResponse(
        user_id=user_id,
        model=loaded.name,
        model_version=loaded.version,
        strategy=strategy,
        total=total,
        offset=filters.offset,
        items=recommended_items(registry, page, scores, stars, because),
    )


def _ranked(
    registry: ModelRegistry,
    loaded: ModelHandler,
    scores: np.ndarray,
    stars: np.ndarray,
    mask: np.ndarray,
    filters: Filters,
    liked: np.ndarray | None,
    *,
    user_id: int | None,
    strategy: Strategy,
) -> RecommendResponse:
    page, total = ranked_page(scores, mask, loaded.unit_embeddings, filters)
    because = explain_items(loaded.unit_embeddings, page, liked) if liked is not None else None
    return _response(registry, loaded, page, scores[page], stars[page], because, filters, total, user_id, strategy)


def _popular(
    registry: ModelRegistry,
    user_id: int,
    loaded: ModelHandler,
    mask: np.ndarray,
    filters: Filters,
    explain: bool,
) -> RecommendResponse:
    counts = registry.popularity.astype(np.float64)
    page, total = ranked_page(counts, mask, loaded.unit_embeddings, filters)
    return RecommendResponse(
        user_id=user_id,
        model=loaded.name,
        model_version=None,
        strategy="popular",
        total=total,
        offset=filters.offset,
        items=recommended_items(registry, page, counts[page], None, [[] for _ in page] if explain else None),
    )
