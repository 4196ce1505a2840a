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

Hot reload: ``POST /admin/reload`` (with the ``X-API-Key`` of ``RECSYS_ADMIN_API_KEY``) or SIGHUP loads the
store again in a worker thread and swaps it in; a store that fails to load leaves the current models serving
(`app.services.admin`). ``POST /admin/rollback`` and ``/admin/reload?version=`` serve a kept store version.

Middleware, outermost first: `ObservabilityMiddleware` (request id, access log, Prometheus metrics at
``/metrics``, JSON 500 for anything unhandled), CORS (only with ``RECSYS_CORS_ORIGINS``), then
`BodySizeLimitMiddleware`.

Extending: routers are included in `_include_routers`, error mappings live in `ERROR_STATUS`, and the
registry sits in ``app.state.registry_holder`` (a `RegistryHolder`) so a reload can swap it atomically.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import math
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import retrieval
from app.docs import add_offline_docs
from app.errors import (
    InvalidRequestError,
    NotReadyError,
    RecsysError,
    RegistryError,
    ReloadFailedError,
    UnknownGenreError,
    UnknownItemError,
    UnknownModelError,
    UnknownUserError,
)
from app.logs import configure_logging
from app.metrics import ServiceMetrics
from app.middleware import BodySizeLimitMiddleware, ObservabilityMiddleware
from app.registry import ModelRegistry, RegistryHolder
from app.routers import admin, batch, health, items, metrics, models, predict, recommend, search, ui
from app.schemas import CATALOG_BOUND, CATALOG_GENRE, CATALOG_GENRE_LIST, STORE_SCALE, comma_list_pattern
from app.services.admin import reload_models
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

VERSION = "0.1.0"
ERROR_STATUS: dict[type[RecsysError], int] = {
    UnknownModelError: 404,
    UnknownUserError: 404,
    UnknownItemError: 404,
    UnknownGenreError: 422,
    InvalidRequestError: 422,
    ReloadFailedError: 409,
    NotReadyError: 503,
    RegistryError: 503,
}
TAGS = [
    {"name": "predict", "description": "Predicted stars for given items"},
    {"name": "recommend", "description": "Ranked items for a user or an anonymous session"},
    {"name": "items", "description": "The catalog and item-to-item similarity"},
    {"name": "models", "description": "Loaded models, their versions and held-out metrics"},
    {"name": "health", "description": "Liveness and readiness probes"},
    {"name": "admin", "description": "Operating the service; needs the X-API-Key header"},
]
RELOAD_SHUTDOWN_WAIT = 30.0  # seconds a SIGHUP reload still running at shutdown may take to finish


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm the model store before serving; refuse to start if it cannot be loaded."""
    settings: Settings = app.state.settings
    holder: RegistryHolder = app.state.registry_holder
    torch.set_num_threads(settings.torch_threads)
    retrieval.set_threads(settings.torch_threads)
    try:
        registry = ModelRegistry.load(settings.models_dir, retrieval=holder.retrieval)
    except RegistryError as e:
        holder.clear(f"loading the model store failed: {e}")
        log.error("refusing to start: %s", e)
        raise
    holder.set(registry)
    # Everything alive now (imported libraries, the registry: ~180k objects) is exempt from the cyclic garbage
    # collector from here on: its full collections walked them in ~95 ms while requests waited, the longest
    # pauses the service had. They are still freed by reference counting when a reload drops them.
    gc.collect()
    gc.freeze()
    reloads: set[asyncio.Task[None]] = set()
    hangup = _reload_on_sighup(app, reloads)
    try:
        yield
    finally:
        if hangup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if reloads:
            await asyncio.wait(reloads, timeout=RELOAD_SHUTDOWN_WAIT)
        holder.clear("the service is shutting down")


def _reload_on_sighup(app: FastAPI, tasks: set[asyncio.Task[None]]) -> bool:
    """Make SIGHUP reload the model store; False where a handler cannot be installed (not the main thread,
    as under TestClient, or no signal support)."""
    loop = asyncio.get_running_loop()

    async def reload() -> None:
        try:
            await reload_models(
                holder=app.state.registry_holder,
                directory=app.state.settings.models_dir,
                metrics=app.state.metrics,
                trigger="SIGHUP",
            )
        except ReloadFailedError:
            pass  # logged by reload_models; the previous models keep serving
        except Exception:
            log.exception("reload on SIGHUP failed")

    def on_hangup() -> None:
        task = loop.create_task(reload())
        tasks.add(task)  # keep a reference until it is done, or it may be garbage-collected mid-reload
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; models load when its lifespan starts, not here."""
    settings = settings or get_settings()
    configure_logging(settings.log_format)
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
    app.state.registry_holder = RegistryHolder(retrieval.RetrievalConfig.from_settings(settings))
    app.state.metrics = ServiceMetrics(app.state.registry_holder)
    _include_routers(app)
    ui.mount_static(app)
    _add_error_handlers(app)
    _bound_by_catalog(app)
    add_offline_docs(app)
    # add_middleware wraps what is there: the last added runs first.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-Model-Version"],
        )
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics, access_log=settings.access_log)
    return app


def _include_routers(app: FastAPI) -> None:
    for module in (predict, batch, recommend, search, items, models, health, admin, metrics, ui):
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
        return JSONResponse(_json_safe({"detail": exc.message, **exc.extra}), status_code=status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): invalid input like any other, 422.
            issue = {"type": "json_invalid", "loc": ["body"], "msg": "the body is not valid UTF-8 JSON"}
            return JSONResponse({"detail": [issue]}, status_code=422)
        return await http_exception_handler(request, exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # FastAPI's own handler, except that the echoed input may hold NaN or Infinity (Python's JSON parser
        # accepts them): JSON cannot encode those, so they are echoed as the text the client sent.
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    # Any other exception becomes a JSON 500 in `ObservabilityMiddleware`, which knows the request id.
    app.add_exception_handler(RecsysError, domain_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _bound_by_catalog(app: FastAPI) -> None:
    """Serve an OpenAPI document whose every `k` says the real bound: ``maximum`` is the loaded catalog's size
    (the server answers 422 past it), not the static 2^31 - 1 the pydantic field carries; stars likewise carry
    the store's rating scale. Rebuilt when a reload
    installs a store with another catalog; without a loaded store the static bound stays."""
    generate = app.openapi
    cache: dict[int, dict[str, Any]] = {}

    def marked(node: dict[str, Any], mark: dict[str, Any]) -> bool:
        return all(node.get(key) == value for key, value in mark.items())

    def patch(node: object, registry: ModelRegistry) -> None:
        if isinstance(node, dict):
            if marked(node, CATALOG_BOUND):
                node["maximum"] = registry.n_items
            if marked(node, CATALOG_GENRE):
                node["enum"] = list(registry.genres)
            if marked(node, STORE_SCALE):  # the service refuses stars off the store's scale
                node.pop("exclusiveMinimum", None)
                node["minimum"] = registry.manifest.dataset.rating_min
                node["maximum"] = registry.manifest.dataset.rating_max
            if marked(node, CATALOG_GENRE_LIST):
                node["pattern"] = comma_list_pattern("|".join(re.escape(g) for g in registry.genres))
            for child in node.values():
                patch(child, registry)
        elif isinstance(node, list):
            for child in node:
                patch(child, registry)

    def openapi() -> dict[str, Any]:
        base = generate()
        registry = app.state.registry_holder.registry
        if registry is None:
            return base
        if id(registry) not in cache:
            document = copy.deepcopy(base)
            patch(document, registry)
            cache.clear()  # holds the one registry served, so an old one's id cannot be reused while cached
            cache[id(registry)] = document
        return cache[id(registry)]

    app.openapi = openapi  # type: ignore[method-assign]


def _json_safe(value: object) -> object:
    """`value` with every non-finite float replaced by its JSON-ish spelling ("NaN", "Infinity", "-Infinity")
    and every string made encodable: a lone surrogate cannot be UTF-8, so it is shown escaped (``\\ud800``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
