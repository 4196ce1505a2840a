"""GET /items?q=: find items by title."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.deps import registry_of
from app.schemas import ERROR_RESPONSES, MAX_QUERY_LENGTH, MAX_SEARCH_RESULTS, ItemSearchResponse
from app.services import search as service

router = APIRouter(prefix="/items", tags=["items"], responses=ERROR_RESPONSES)


@router.get("")
async def search_items(
    request: Request,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY_LENGTH,
            description="Words of the title, any case, accents optional",
            examples=["star wars"],
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS, description="How many items at most")] = 10,
) -> ItemSearchResponse:
    """Search items by title, best match first, then by number of ratings.

    Case- and accent-insensitive ("amelie" finds "Amélie"); MovieLens' trailing articles match either way
    round ("the empire" finds "Empire Strikes Back, The").
    """
    return service.search_items(registry=registry_of(request), q=q, limit=limit)
