"""POST /predict/{model}: stars for (user, items) pairs; POST /predict/lstm: stars along an item sequence."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from app.deps import registry_of
from app.middleware import mark_served
from app.schemas import (
    ERROR_RESPONSES,
    PAIR_MODELS,
    AnonymousPredictResponse,
    PairPredictRequest,
    PredictResponse,
    SequencePredictRequest,
    SequencePredictResponse,
)
from app.services import foldin
from app.services import predict as service
from app.strict_json import StrictJsonRoute

router = APIRouter(prefix="/predict", tags=["predict"], responses=ERROR_RESPONSES, route_class=StrictJsonRoute)


SEQUENCE_MODEL = "lstm"  # the sequence model this route serves


# Declared before /{model} so that "lstm" reaches the sequence handler.
@router.post(f"/{SEQUENCE_MODEL}")
async def predict_sequence(body: SequencePredictRequest, request: Request) -> SequencePredictResponse:
    """Predict the stars of each item in a sequence from the items and ratings before it (LSTM), or of a known
    user's items after their whole training history."""
    registry = registry_of(request)
    if body.user_id is not None and body.item_ids is not None:
        result = service.predict_user_sequence(
            registry=registry, model=SEQUENCE_MODEL, user_id=body.user_id, item_ids=body.item_ids
        )
    else:
        assert body.items is not None  # the schema requires one of the two forms
        result = service.predict_sequence(
            registry=registry, model=SEQUENCE_MODEL, items=body.items, ratings=body.ratings or []
        )
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
    body: PairPredictRequest,
    request: Request,
) -> PredictResponse | AnonymousPredictResponse:
    """Predict the stars a user would give each of the items (mf or dense).

    A known user sends `user_id`; a visitor sends the films they rated (`items` and `ratings`), which are folded
    in as a new user, and `item_ids` to predict.
    """
    registry = registry_of(request)
    result: PredictResponse | AnonymousPredictResponse
    if body.user_id is None:
        assert body.items is not None and body.ratings is not None  # the schema allows no other visitor
        result = foldin.predict_for_visitor(
            registry=registry, model=model, items=body.items, ratings=body.ratings, item_ids=body.item_ids
        )
    else:
        result = service.predict_ratings(registry=registry, model=model, user_id=body.user_id, item_ids=body.item_ids)
    mark_served(request, model=result.model, version=result.model_version)
    return result
