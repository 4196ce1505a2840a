"""The Python floor: a bare ASGI app (no framework, no middleware) doing each benchmarked route's model work.

    RECSYS_MODELS_DIR=STORE uvicorn bench.anchors.bare:create_app --factory --no-access-log

Routes as the service spells them: ``GET /health``, ``POST /predict/{mf,dense}``, ``POST /predict/lstm``,
``GET /recommend/{user_id}?k=&model=``. Only what the benchmark sends is handled; anything odd is a 400, not
validated as the service would: this is the least a Python server can do per request, not a service.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from bench.anchors.work import Work, load_registry

JSON = [(b"content-type", b"application/json")]


def create_app() -> Any:
    work = Work(load_registry())
    health = orjson.dumps({"status": "ok"})

    async def read_body(receive: Any) -> bytes:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        return body

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        status = 200
        try:
            if path == "/health":
                body = health
            elif path == "/predict/lstm":
                data = orjson.loads(await read_body(receive))
                body = orjson.dumps(work.predict_sequence(data["items"], data.get("ratings") or []))
            elif path.startswith("/predict/"):
                data = orjson.loads(await read_body(receive))
                body = orjson.dumps(work.predict(path[9:], data["user_id"], data["item_ids"]))
            elif path.startswith("/recommend/"):
                query = dict(parse_qsl(scope["query_string"].decode()))
                result = work.recommend(int(path[11:]), query.get("model", "mf"), int(query.get("k", 10)))
                body = orjson.dumps(result)
            else:
                status, body = 404, b'{"detail":"Not Found"}'
        except (KeyError, ValueError, orjson.JSONDecodeError):
            status, body = 400, b'{"detail":"bad request"}'
        await send({"type": "http.response.start", "status": status, "headers": JSON})
        await send({"type": "http.response.body", "body": body})

    return app
