"""GET /items/{item_id} and GET /items/{item_id}/similar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.artifacts import MODEL_NAMES
from app.deps import RegistryDep, TopK, registry_of
from app.middleware import mark_served
from app.schemas import (
    DECIMAL_DIGITS,
    DECIMAL_NOTE,
    ERROR_RESPONSES,
    MAX_ID,
    ItemResponse,
    SimilarResponse,
)
from app.services import items as service

router = APIRouter(prefix="/items", tags=["items"], responses=ERROR_RESPONSES)

ItemId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="Raw MovieLens item id" + DECIMAL_NOTE, examples=[50]), DECIMAL_DIGITS
]


@router.get("/{item_id}")
async def get_item(item_id: ItemId, registry: RegistryDep) -> ItemResponse:
    """Get an item's title, year and genres."""
    return service.get_item(registry=registry, item_id=item_id)


@router.get("/{item_id}/similar")
async def get_similar_items(
    item_id: ItemId,
    request: Request,
    k: TopK = 10,
    model: Annotated[
        str,
        Query(description="Whose item embeddings: mf, dense or lstm", json_schema_extra={"enum": list(MODEL_NAMES)}),
    ] = "mf",
) -> SimilarResponse:
    """Get the items nearest to an item by cosine similarity of a model's item embeddings."""
    result = service.similar_items(registry=registry_of(request), item_id=item_id, model=model, k=k)
    mark_served(request, model=result.model, version=result.model_version)
    return result
