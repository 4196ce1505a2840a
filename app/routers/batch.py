"""POST /recommend/batch: top-k for up to 1,000 known users in one call."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.deps import registry_of
from app.middleware import mark_served
from app.ranking import Filters
from app.schemas import ERROR_RESPONSES, BatchRecommendRequest, BatchRecommendResponse
from app.services import batch as service
from app.strict_json import StrictJsonRoute

router = APIRouter(prefix="/recommend", tags=["recommend"], responses=ERROR_RESPONSES, route_class=StrictJsonRoute)


@router.post("/batch")
async def recommend_batch(body: BatchRecommendRequest, request: Request) -> BatchRecommendResponse:
    """Recommend for many known users at once, scored in one batched model call where the model has one.

    The filters apply to every user as in `GET /recommend/{user_id}`; each user's training items are left out
    unless `exclude_seen` is false. An unknown user id fails the whole call with 404 naming every unknown id.
    For a whole model store, `python -m app.batch` writes every user's top-k to CSV.
    """
    filters = Filters(
        k=body.k,
        offset=body.offset,
        genres=tuple(body.genres or ()),
        exclude=tuple(body.exclude or ()),
        diversity=body.diversity,
    )
    result = service.recommend_batch(
        registry=registry_of(request),
        user_ids=body.user_ids,
        model=body.model,
        filters=filters,
        exclude_seen=body.exclude_seen,
    )
    mark_served(request, model=result.model, version=result.model_version)
    return result


@router.api_route("/batch", methods=["GET", "HEAD"], include_in_schema=False)
async def reject_batch_read() -> JSONResponse:
    """405 for GET /recommend/batch, which would otherwise reach GET /recommend/{user_id} as user "batch"."""
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": "POST"})
