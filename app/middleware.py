"""The service's two middlewares, both plain ASGI (no `BaseHTTPMiddleware`: it costs a task and a stream per
request, and this API's requests are about a millisecond).

- `ObservabilityMiddleware`, outermost: request id, access log line, Prometheus metrics, ``X-Model-Version``,
  and the catch-all that turns any unhandled exception into a JSON 500 (traceback logged, never sent).
- `BodySizeLimitMiddleware`: 413 in JSON past ``RECSYS_MAX_BODY_BYTES``, also for chunked bodies that carry no
  Content-Length. FastAPI's own ``max_body_size`` answers in plain text, and every error here is JSON.
"""

from __future__ import annotations

import contextlib
import logging
import time

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import accepted_request_id, request_id_var
from app.metrics import UNMATCHED_ROUTE, ServiceMetrics

log = logging.getLogger(__name__)
access_log = logging.getLogger("app.access")

REQUEST_ID_HEADER = b"x-request-id"
MODEL_VERSION_HEADER = b"x-model-version"


def mark_served(request: Request, *, model: str, version: str | None) -> None:
    """Record which model answered this request: the middleware labels the per-model metrics with `model`
    and sends `version` as the ``X-Model-Version`` header."""
    request.state.model = model
    if version is not None:
        request.state.model_version = version


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/recommend/{user_id}``); one constant for unmatched paths."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class ObservabilityMiddleware:
    """Per HTTP request: a request id, one access-log line, metrics by route template, ``X-Model-Version``,
    and a JSON 500 for an unhandled exception.

    The request id is the client's ``X-Request-ID`` if it is acceptable (`app.logs.REQUEST_ID_PATTERN`), else
    a new one; it is echoed in the response header, put in every log line written while serving the request,
    and stored as ``request.state.request_id``.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = accepted_request_id(_header(scope, REQUEST_ID_HEADER))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        token = request_id_var.set(request_id)
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
                version = state.get("model_version")
                if version is not None:
                    headers.append((MODEL_VERSION_HEADER, version.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Logged here, with its traceback and request id; the client gets JSON without internals.
            log.exception("unhandled error on %s %s", scope["method"], route_template(scope))
            if started:
                raise  # the response is half sent: nothing valid can follow, the server drops the connection
            status = 500
            await _send_json(send_with_headers, 500, {"detail": "internal error", "request_id": request_id})
        finally:
            self.metrics.in_flight -= 1
            seconds = time.perf_counter() - start
            route = route_template(scope)
            model = state.get("model")
            self.metrics.observe(scope["method"], route, status, seconds, model)
            if self.access_log:
                fields = {"method": scope["method"], "route": route, "status": status}
                fields["duration_ms"] = round(seconds * 1000, 3)
                if model is not None:
                    fields["model"] = model
                access_log.info("request", extra={**fields, "request_id": request_id})
            request_id_var.reset(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_json(send: Send, status: int, content: object) -> None:
    body = orjson.dumps(content)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Answers 413 to a request whose body exceeds `max_bytes`: at once when Content-Length says so, else (a
    chunked body) as soon as the streamed body passes the limit (the app's response to the aborted read is
    dropped). Requests without a chunked body pass straight through: nothing is wrapped per request."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._reject(send)
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked:
            # No body, or one of a declared length within the limit: the server reads no more than
            # Content-Length bytes as this request's body, so there is nothing to watch.
            await self.app(scope, receive, send)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if too_large:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        detail = f"request body too large; at most {self.max_bytes} bytes (RECSYS_MAX_BODY_BYTES)"
        await _send_json(send, 413, {"detail": detail, "max_bytes": self.max_bytes})
