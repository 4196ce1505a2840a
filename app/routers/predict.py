"""POST /predict/{model}: stars for (user, items) pairs; POST /predict/lstm: stars along an item sequence."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from app.deps import registry_of
from app.middleware import mark_served
from app.schemas import (
    ERROR_RESPONSES,
    PAIR_MODELS,
    PredictRequest,
    PredictResponse,
    SequencePredictRequest,
    SequencePredictResponse,
)
from app.services import predict as service
from app.strict_json import StrictJsonRoute

router = APIRouter(prefix="/predict", tags=["predict"], responses=ERROR_RESPONSES, route_class=StrictJsonRoute)


# Declared before /{model} so that "lstm" reaches the sequence handler.
@router.post("/lstm")
async def predict_sequence(body: SequencePredictRequest, request: Request) -> SequencePredictResponse:
    """Predict the stars of each item in a sequence from the items and ratings before it (LSTM)."""
    result = service.predict_sequence(registry=registry_of(request), items=body.items, ratings=body.ratings or [])
    mark_served(request, model=result.model, version=result.model_version)
    return result


@router.post("/{model}")
async def predict_ratings(
    # The enum is documentation, not validation: another name reaches the service, whose 404 lists the models
    # loaded. It keeps "lstm" out of this operation's schema, since /predict/lstm (declared first) takes it.
    model: Annotated[
        str,
        Path(description="A pair model: mf or dense", examples=["mf"], json_schema_extra={"enum": PAIR_MODELS}),
    ],
    body: PredictRequest,
    request: Request,
) -> PredictResponse:
    """Predict the stars a user would give each of the items (mf or dense)."""
    result = service.predict_ratings(
        registry=registry_of(request), model=model, user_id=body.user_id, item_ids=body.item_ids
    )
    mark_served(request, model=result.model, version=result.model_version)
    return result
