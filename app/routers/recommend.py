"""GET /recommend/{user_id}: top-k for a known user (or popular items); POST /recommend: for a visitor (an LSTM
session, or mf/dense with the visitor's ratings folded in)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError

from app.deps import RegistryDep
from app.middleware import mark_served
from app.schemas import (
    DIVERSITY_DESCRIPTION,
    ERROR_RESPONSES,
    MAX_EXCLUDE,
    MAX_GENRE_LENGTH,
    MAX_GENRES,
    MAX_ID,
    RecommendResponse,
    SessionRecommendRequest,
)
from app.services import foldin
from app.services import recommend as service

router = APIRouter(prefix="/recommend", tags=["recommend"], responses=ERROR_RESPONSES)


@router.get("/{user_id}")
async def recommend_items(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID, description="Raw MovieLens user id", examples=[196])],
    registry: RegistryDep,
    request: Request,
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
    diversity: Annotated[float, Query(ge=0.0, le=1.0, description=DIVERSITY_DESCRIPTION)] = 0.0,
    fallback: Annotated[
        Literal["popular"] | None, Query(description="For an unknown user: 'popular' instead of 404")
    ] = None,
) -> RecommendResponse:
    """Recommend the best items for a user, with optional filters, paging and explanations."""
    filters = service.Filters(
        k=k, offset=offset, genres=_genres(genres), exclude=_ids(exclude, "exclude"), diversity=diversity
    )
    result = service.recommend_for_user(
        registry=registry,
        user_id=user_id,
        model=model,
        filters=filters,
        exclude_seen=exclude_seen,
        explain=explain,
        fallback=fallback,
    )
    _mark(request, result)
    return result


@router.post("")
async def recommend_session(
    body: SessionRecommendRequest, registry: RegistryDep, request: Request
) -> RecommendResponse:
    """Recommend for an anonymous visitor: the LSTM's next items, or mf/dense with the ratings folded in.

    With `model=lstm` (the default) the items are a session, oldest first, and the LSTM ranks what comes next.
    With `model=mf` or `model=dense` the rated items are folded in as a new user: a user vector solved by
    regularised least squares against the model's frozen item factors, so a visitor who rated five films gets a
    personalised list from any model. Every model leaves the given items out.
    """
    filters = service.Filters(
        k=body.k,
        offset=body.offset,
        genres=tuple(body.genres or ()),
        exclude=tuple(body.exclude or ()),
        diversity=body.diversity,
    )
    if body.model == "lstm":
        result = service.recommend_for_session(
            registry=registry,
            items=body.items,
            ratings=body.ratings or [],
            filters=filters,
            explain=body.explain,
        )
    else:
        result = foldin.recommend_for_visitor(
            registry=registry,
            model=body.model,
            items=body.items,
            ratings=body.ratings or [],
            filters=filters,
            explain=body.explain,
        )
    _mark(request, result)
    return result


def _mark(request: Request, result: RecommendResponse) -> None:
    # The popularity fallback is ranked by no model: its metrics say so rather than crediting `model`.
    model = "popular" if result.strategy == "popular" else result.model
    mark_served(request, model=model, version=result.model_version)


def _words(values: list[str] | None) -> tuple[str, ...]:
    return tuple(w.strip() for v in values or () for w in v.split(",") if w.strip())


def _invalid(name: str, message: str, values: list[str] | None, kind: str) -> RequestValidationError:
    # Shown as is in the response: the offending input, shortened, so a huge query is not echoed back whole.
    shown = ",".join(values or ())
    shown = shown if len(shown) <= 200 else shown[:200] + "…"
    return RequestValidationError([{"type": kind, "loc": ("query", name), "msg": message, "input": shown}])


def _genres(values: list[str] | None) -> tuple[str, ...]:
    words = _words(values)
    if len(words) > MAX_GENRES:
        raise _invalid("genres", f"at most {MAX_GENRES} genres", values, "too_long")
    long = [w for w in words if len(w) > MAX_GENRE_LENGTH]
    if long:
        raise _invalid("genres", f"a genre has at most {MAX_GENRE_LENGTH} characters", values, "string_too_long")
    return words


def _ids(values: list[str] | None, name: str) -> tuple[int, ...]:
    words = _words(values)
    if len(words) > MAX_EXCLUDE:
        raise _invalid(name, f"at most {MAX_EXCLUDE} ids in {name}", values, "too_long")
    # Length first: int() of a digit string past 4300 digits raises rather than parse.
    bad = [w for w in words if not (w.isascii() and w.isdigit() and len(w) <= 10 and 1 <= int(w) <= MAX_ID)]
    if bad:
        shown = ", ".join(repr(w if len(w) <= 20 else w[:20] + "…") for w in bad[:10])
        shown += f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise _invalid(
            name,
            f"{name} must be positive integer item ids (1 to {MAX_ID}) separated by commas; not ids: {shown}",
            values,
            "int_parsing",
        )
    return tuple(int(w) for w in words)
