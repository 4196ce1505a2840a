"""GET /recommend/{user_id}: top-k for a known user (or popular items); POST /recommend: for a visitor (an LSTM
session, or mf/dense with the visitor's ratings folded in)."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from app.artifacts import MODEL_NAMES
from app.deps import TopK, registry_of
from app.middleware import mark_served
from app.ranking import Filters
from app.schemas import (
    BOOL_NOTE,
    CATALOG_GENRE_LIST,
    DECIMAL_DIGITS,
    DECIMAL_NOTE,
    DIVERSITY_DESCRIPTION,
    ERROR_RESPONSES,
    ID_PATTERN,
    MAX_EXCLUDE,
    MAX_GENRE_LENGTH,
    MAX_GENRES,
    MAX_ID,
    TRUE_OR_FALSE,
    RecommendResponse,
    SessionRecommendRequest,
    comma_list_pattern,
)
from app.services import recommend as service
from app.strict_json import StrictJsonRoute

router = APIRouter(prefix="/recommend", tags=["recommend"], responses=ERROR_RESPONSES, route_class=StrictJsonRoute)

# Past this many returned items (explanations count three more each), a request runs in a worker thread, one at
# a time per process, and its JSON is built there too. k=1682&explain=true takes 35-170 ms of Python; on the
# event loop it stopped every other request for that long (8 such clients pushed others' p99 past 1.6 s). In a
# thread it holds the GIL for at most sys.getswitchinterval() (5 ms) at a stretch, and heavy requests queue
# behind each other instead of in front of light ones. Light requests stay on the loop: a thread hop costs more
# than their whole computation.
HEAVY_ITEMS = 200


@router.get("/{user_id}", response_model=RecommendResponse)
async def recommend_items(
    user_id: Annotated[
        int, Path(ge=1, le=MAX_ID, description="Raw MovieLens user id" + DECIMAL_NOTE, examples=[196]), DECIMAL_DIGITS
    ],
    request: Request,
    k: TopK = 10,
    # The enum documents; another name reaches the service, whose 404 lists the models loaded.
    model: Annotated[str, Query(description="mf, dense or lstm", json_schema_extra={"enum": list(MODEL_NAMES)})] = "mf",
    exclude_seen: Annotated[
        bool, Query(description="Leave out items the user rated in training" + BOOL_NOTE), TRUE_OR_FALSE
    ] = True,
    genres: Annotated[
        list[str] | None,
        Query(
            description="Only items having any of these genres: comma-separated and/or repeated",
            json_schema_extra={"items": {"type": "string", **CATALOG_GENRE_LIST}},
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        Query(
            description="Raw item ids never to return: comma-separated and/or repeated",
            json_schema_extra={"items": {"type": "string", "pattern": comma_list_pattern(ID_PATTERN)}},
        ),
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Skip this many of the best (paging)" + DECIMAL_NOTE), DECIMAL_DIGITS
    ] = 0,
    explain: Annotated[
        bool, Query(description="Add `because`: similar items the user rated 4+" + BOOL_NOTE), TRUE_OR_FALSE
    ] = False,
    diversity: Annotated[float, Query(ge=0.0, le=1.0, description=DIVERSITY_DESCRIPTION)] = 0.0,
    fallback: Annotated[
        Literal["popular"] | None, Query(description="For an unknown user: 'popular' instead of 404")
    ] = None,
) -> RecommendResponse | Response:
    """Recommend the best items for a user, with optional filters, paging and explanations."""
    filters = Filters(k=k, offset=offset, genres=_genres(genres), exclude=_ids(exclude, "exclude"), diversity=diversity)
    call = partial(
        service.recommend_for_user,
        registry=registry_of(request),
        user_id=user_id,
        model=model,
        filters=filters,
        exclude_seen=exclude_seen,
        explain=explain,
        fallback=fallback,
    )
    return await _serve(request, call, k=k, explain=explain)


@router.post("", response_model=RecommendResponse)
async def recommend_session(body: SessionRecommendRequest, request: Request) -> RecommendResponse | Response:
    """Recommend for an anonymous visitor: the LSTM's next items, or mf/dense with the ratings folded in.

    With `model=lstm` (the default) the items are a session, oldest first, and the LSTM ranks what comes next.
    With `model=mf` or `model=dense` the rated items are folded in as a new user: a user vector solved by
    regularised least squares against the model's frozen item factors, so a visitor who rated five films gets a
    personalised list from any model. Every model leaves the given items out.
    """
    filters = Filters(
        k=body.k,
        offset=body.offset,
        genres=tuple(body.genres or ()),
        exclude=tuple(body.exclude or ()),
        diversity=body.diversity,
    )
    call = partial(
        service.recommend_for_visitor,
        registry=registry_of(request),
        model=body.model,
        items=body.items,
        ratings=body.ratings or [],
        filters=filters,
        explain=body.explain,
    )
    return await _serve(request, call, k=body.k, explain=body.explain)


async def _serve(
    request: Request, call: Callable[[], RecommendResponse], *, k: int, explain: bool
) -> RecommendResponse | Response:
    if k * (4 if explain else 1) <= HEAVY_ITEMS:
        result = call()
        _mark(request, result)
        return result

    def compute() -> tuple[RecommendResponse, bytes]:
        result = call()
        return result, result.model_dump_json().encode()

    state = request.app.state
    if getattr(state, "heavy_limiter", None) is None:
        # Created on first use, inside the event loop it belongs to.
        state.heavy_limiter = anyio.CapacityLimiter(1)
    result, body = await anyio.to_thread.run_sync(compute, limiter=state.heavy_limiter)
    _mark(request, result)
    return Response(body, media_type="application/json")


def _mark(request: Request, result: RecommendResponse) -> None:
    # The popularity fallback is ranked by no model: its metrics say so rather than crediting `model`.
    model = "popular" if result.strategy == "popular" else result.model
    mark_served(request, model=model, version=result.model_version)


_ID = re.compile(ID_PATTERN)


def _words(values: list[str] | None) -> tuple[str, ...]:
    # Spaces only (not tabs or other whitespace), as the documented pattern says.
    return tuple(w.strip(" ") for v in values or () for w in v.split(",") if w.strip(" "))


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
    bad = [w for w in words if not _ID.fullmatch(w)]
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
