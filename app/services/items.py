"""Catalog lookups and item-to-item similarity (cosine of a model's item embeddings; from the model's FAISS
index of unit embeddings when the catalog is large enough for approximate retrieval)."""

from __future__ import annotations

from app.ranking import check_k, rounded, top_page
from app.registry import ModelRegistry
from app.retrieval import ranked_page
from app.schemas import ItemResponse, SimilarItem, SimilarResponse


def get_item(*, registry: ModelRegistry, item_id: int) -> ItemResponse:
    """Title, year and genres of one item, and how often it was rated in training."""
    index = int(registry.item_indices([item_id])[0])
    item = registry.item(index)
    return ItemResponse(
        item_id=item.item_id,
        title=item.title,
        year=item.year,
        genres=item.genres,
        n_ratings=int(registry.popularity[index]),
    )


def similar_items(*, registry: ModelRegistry, item_id: int, model: str, k: int) -> SimilarResponse:
    """The k items whose embeddings in `model` are nearest to `item_id`'s by cosine, most similar first."""
    loaded = registry.model(model)
    index = int(registry.item_indices([item_id])[0])
    check_k(registry, k)
    unit = loaded.unit_embeddings
    mask = registry.all_items.copy()
    mask[index] = False
    retrieval = registry.retrieval.get(model)
    if retrieval is not None:
        query = unit[index]
        page, scores, _ = ranked_page(
            lambda depth: retrieval.similar.search(query, depth),
            lambda items: unit[items] @ query,
            mask,
            k=k,
            offset=0,
            config=retrieval.config,
        )
    else:
        similarity = unit @ unit[index]  # one matrix-vector product over the catalog
        page, _ = top_page(similarity, mask, k=k, offset=0)
        scores = similarity[page]
    items = []
    for index_, sim in zip(page.tolist(), rounded(scores), strict=True):
        item = registry.item(index_)
        items.append(
            SimilarItem(item_id=item.item_id, title=item.title, year=item.year, genres=item.genres, similarity=sim)
        )
    source = registry.item(index)
    return SimilarResponse(
        item_id=source.item_id,
        title=source.title,
        model=loaded.name,
        model_version=loaded.version,
        items=items,
    )
