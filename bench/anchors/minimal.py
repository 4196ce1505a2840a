"""The framework floor: the least FastAPI app doing each benchmarked route's model work.

    RECSYS_MODELS_DIR=STORE uvicorn bench.anchors.minimal:create_app --factory --no-access-log

What any FastAPI app pays: routing, typed path and query parameters, a pydantic request body; the response
is orjson bytes returned directly (no response model), and there is no middleware.
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from pydantic import BaseModel

from bench.anchors.work import Work, load_registry


class PairBody(BaseModel):
    user_id: int
    item_ids: list[int]


class SequenceBody(BaseModel):
    items: list[int]
    ratings: list[float] | None = None


def create_app() -> FastAPI:
    import orjson

    work = Work(load_registry())
    app = FastAPI()

    def json(content: object) -> Response:
        return Response(orjson.dumps(content), media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return json({"status": "ok"})

    @app.post("/predict/lstm")
    async def predict_sequence(body: SequenceBody) -> Response:
        return json(work.predict_sequence(body.items, body.ratings or []))

    @app.post("/predict/{model}")
    async def predict(model: str, body: PairBody) -> Response:
        return json(work.predict(model, body.user_id, body.item_ids))

    @app.get("/recommend/{user_id}")
    async def recommend(user_id: int, k: int = 10, model: str = "mf") -> Response:
        return json(work.recommend(user_id, model, k))

    return app
