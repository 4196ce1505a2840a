"""Strict JSON request bodies: RFC 8259 and nothing more, so that no input is guessed at.

Python's `json.loads`, which FastAPI uses, accepts what a strict reader must not:

- duplicate keys (``{"k": 1, "k": 1000}``), silently keeping the last one, so two readers of one body can
  disagree about what it says;
- ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON;
- bodies in UTF-16 or UTF-32 (JSON is UTF-8);
- lone UTF-16 surrogates (``"\\ud800"``), which decode to a Python string that cannot be encoded as UTF-8:
  any error message echoing it then failed to encode, and the request became a 500 with a traceback.

`StrictJsonRoute` makes a router parse bodies with `loads` below; what it rejects raises
`json.JSONDecodeError`, which FastAPI turns into a 422 ``json_invalid`` issue like any other malformed body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {_shown(duplicate)}")
    return result


def _shown(key: str) -> str:
    # A key is named in the error, shortened, so a huge key is not echoed back whole.
    text = json.dumps(key[:40] + ("…" if len(key) > 40 else ""))
    return _SURROGATE.sub("?", text)


def _check_strings(value: Any) -> None:
    """ValueError if any string (key or value) anywhere in `value` holds a lone surrogate."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            # Paired surrogates were already combined by the decoder, so any left are lone.
            if not node.isascii() and _SURROGATE.search(node):
                raise ValueError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text")
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def loads(body: bytes | str) -> Any:
    """Parse a JSON body strictly; `json.JSONDecodeError` for anything RFC 8259 does not allow."""
    try:
        # UTF-8 only (RFC 8259 section 8.1): json.loads would also take UTF-16 and UTF-32, and would decode UTF-8
        # bytes of a surrogate ("surrogatepass"), which the strict codec refuses.
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as e:
        raise json.JSONDecodeError("the body is not valid UTF-8 JSON", "", 0) from e
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constants)
        _check_strings(value)
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(e), text, 0) from None
    return value


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An `APIRoute` whose JSON bodies are parsed by `loads` (FastAPI's documented custom-request pattern)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
