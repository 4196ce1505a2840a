"""The FastAPI application: `create_app()` wires settings, the model registry, routers and error handling.

Run it with ``uvicorn app.main:create_app --factory`` (``make serve``).

Start-up: the `lifespan` loads the whole model store before the server accepts a connection: manifest
checked against this service's schema version, every file's SHA-256 verified before it is parsed or handed
to ``torch.jit.load``, every model called with real inputs (warm-up) and its outputs checked. If anything
fails (store missing, corrupt or truncated file, checksum mismatch, newer schema, a model that does not
answer) the service refuses to start: it logs one ``refusing to start: <file>: <what is wrong>`` line and
uvicorn exits non-zero (3), so an orchestrator sees a crash loop instead of a server that answers 500s.
``GET /health`` is 200 whenever the process serves; ``GET /ready`` is 200 only while a fully loaded and
warmed registry is installed, else 503 with the reason.

Threads: each worker process runs torch with ``RECSYS_TORCH_THREADS`` (default 1) intra-op threads; see
`Settings.torch_threads`. Handlers are ``async def`` although they compute: a request is well under a
millisecond of CPU work with no I/O to wait for, and the hop to FastAPI's thread pool that a plain ``def``
handler costs is of the same order (measured in-process: ~0.25 ms of a ~0.8 ms p50, and half the latency
while other processes load the CPU). A worker therefore uses one core; scale with uvicorn workers
(``WEB_CONCURRENCY``), one per core. Anything slow (loading a store for a reload) belongs in
``anyio.to_thread.run_sync``, off the event loop.

Extending: routers are included in `_include_routers`, error mappings live in `ERROR_STATUS`, and the
registry sits in ``app.state.registry_holder`` (a `RegistryHolder`) so a reload can swap it atomically.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.docs import add_offline_docs
from app.errors import (
    InvalidRequestError,
    NotReadyError,
    RecsysError,
    RegistryError,
    UnknownGenreError,
    UnknownItemError,
    UnknownModelError,
    UnknownUserError,
)
from app.middleware import BodySizeLimitMiddleware
from app.registry import ModelRegistry, RegistryHolder
from app.routers import health, items, models, predict, recommend
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

VERSION = "0.1.0"
ERROR_STATUS: dict[type[RecsysError], int] = {
    UnknownModelError: 404,
    UnknownUserError: 404,
    UnknownItemError: 404,
    UnknownGenreError: 422,
    InvalidRequestError: 422,
    NotReadyError: 503,
    RegistryError: 503,
}
TAGS = [
    {"name": "predict", "description": "Predicted stars for given items"},
    {"name": "recommend", "description": "Ranked items for a user or an anonymous session"},
    {"name": "items", "description": "The catalog and item-to-item similarity"},
    {"name": "models", "description": "Loaded models, their versions and held-out metrics"},
    {"name": "health", "description": "Liveness and readiness probes"},
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm the model store before serving; refuse to start if it cannot be loaded."""
    settings: Settings = app.state.settings
    holder: RegistryHolder = app.state.registry_holder
    torch.set_num_threads(settings.torch_threads)
    try:
        registry = ModelRegistry.load(settings.models_dir)
    except RegistryError as e:
        holder.clear(f"loading the model store failed: {e}")
        log.error("refusing to start: %s", e)
        raise
    holder.set(registry)
    try:
        yield
    finally:
        holder.clear("the service is shutting down")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; models load when its lifespan starts, not here."""
    # The service's own INFO lines (what was loaded, from where) without other libraries' INFO chatter;
    # basicConfig does nothing when the host (pytest, a custom uvicorn log config) already set up logging.
    logging.getLogger("app").setLevel(logging.INFO)
    logging.basicConfig(format="%(levelname)s:     %(name)s: %(message)s")
    settings = settings or get_settings()
    app = FastAPI(
        title="Movie recommendations",
        version=VERSION,
        description="Rating prediction and top-k recommendation on MovieLens 100K with three PyTorch models "
        "(matrix factorisation, a dense network and a sequence LSTM) served from TorchScript.",
        lifespan=lifespan,
        openapi_tags=TAGS,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry_holder = RegistryHolder()
    _include_routers(app)
    _add_error_handlers(app)
    add_offline_docs(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    return app


def _include_routers(app: FastAPI) -> None:
    for module in (predict, recommend, items, models, health):
        for route in module.router.routes:
            # A handler's one-line docstring is its OpenAPI summary (FastAPI would title-case its name).
            if isinstance(route, APIRoute) and route.summary is None and route.description:
                first, _, rest = route.description.strip().partition("\n")
                route.summary, route.description = first.rstrip("."), rest.strip()
        app.include_router(module.router)


def _add_error_handlers(app: FastAPI) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RecsysError)
        status = next((code for cls, code in ERROR_STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": exc.message, **exc.extra}, status_code=status)

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback; the client gets JSON like every other error, without internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): invalid input like any other, 422.
            issue = {"type": "json_invalid", "loc": ["body"], "msg": "the body is not valid UTF-8 JSON"}
            return JSONResponse({"detail": [issue]}, status_code=422)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(RecsysError, domain_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
