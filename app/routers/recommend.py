"""GET /recommend/{user_id}: top-k for a known user (or popular items); POST /recommend: for a session."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError

from app.deps import RegistryDep
from app.schemas import ERROR_RESPONSES, MAX_ID, RecommendResponse, SessionRecommendRequest
from app.services import recommend as service

router = APIRouter(prefix="/recommend", tags=["recommend"], responses=ERROR_RESPONSES)


@router.get("/{user_id}")
async def recommend_items(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID, description="Raw MovieLens user id", examples=[196])],
    registry: RegistryDep,
    k: Annotated[int, Query(ge=1, le=MAX_ID, description="How many items (at most the catalog size)")] = 10,
    model: Annotated[str, Query(description="mf, dense or lstm")] = "mf",
    exclude_seen: Annotated[bool, Query(description="Leave out items the user rated in training")] = True,
    genres: Annotated[
        list[str] | None,
        Query(description="Only items having any of these genres: comma-separated and/or repeated"),
    ] = None,
    exclude: Annotated[
        list[str] | None, Query(description="Raw item ids never to return: comma-separated and/or repeated")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Skip this many of the best (paging)")] = 0,
    explain: Annotated[bool, Query(description="Add `because`: similar items the user rated 4+")] = False,
    fallback: Annotated[
        Literal["popular"] | None, Query(description="For an unknown user: 'popular' instead of 404")
    ] = None,
) -> RecommendResponse:
    """Recommend the best items for a user, with optional filters, paging and explanations."""
    filters = service.Filters(k=k, offset=offset, genres=_words(genres), exclude=_ids(exclude, "exclude"))
    return service.recommend_for_user(
        registry=registry,
        user_id=user_id,
        model=model,
        filters=filters,
        exclude_seen=exclude_seen,
        explain=explain,
        fallback=fallback,
    )


@router.post("")
async def recommend_session(body: SessionRecommendRequest, registry: RegistryDep) -> RecommendResponse:
    """Recommend the next items for an anonymous session of items (LSTM)."""
    filters = service.Filters(
        k=body.k,
        offset=body.offset,
        genres=tuple(body.genres or ()),
        exclude=tuple(body.exclude or ()),
    )
    return service.recommend_for_session(
        registry=registry,
        items=body.items,
        ratings=body.ratings or [],
        filters=filters,
        explain=body.explain,
    )


def _words(values: list[str] | None) -> tuple[str, ...]:
    return tuple(w.strip() for v in values or () for w in v.split(",") if w.strip())


def _ids(values: list[str] | None, name: str) -> tuple[int, ...]:
    words = _words(values)
    bad = [w for w in words if not (w.isascii() and w.isdigit() and 1 <= int(w) <= MAX_ID)]
    if bad:
        raise RequestValidationError(
            [
                {
                    "type": "int_parsing",
                    "loc": ("query", name),
                    "msg": f"{name} must be positive integer item ids separated by commas; "
                    f"not ids: {', '.join(map(repr, bad))}",
                    "input": ",".join(values or ()),
                }
            ]
        )
    return tuple(int(w) for w in words)
