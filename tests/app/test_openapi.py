"""/openapi.json documents every endpoint with examples and error responses; /docs and /redoc need no CDN."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

ENDPOINTS = {
    ("post", "/predict/{model}"),
    ("post", "/predict/lstm"),
    ("get", "/recommend/{user_id}"),
    ("post", "/recommend"),
    ("get", "/items/{item_id}"),
    ("get", "/items/{item_id}/similar"),
    ("get", "/models"),
    ("get", "/models/{model}"),
    ("get", "/health"),
    ("get", "/ready"),
    ("post", "/admin/reload"),
    ("post", "/admin/rollback"),
    ("post", "/recommend/batch"),
    ("get", "/items"),
}


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def _schema(openapi: dict[str, Any], ref: str) -> dict[str, Any]:
    return openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]  # type: ignore[no-any-return]


def test_every_endpoint_is_documented_with_a_summary(openapi: dict[str, Any]) -> None:
    documented = {(m, p) for p, ops in openapi["paths"].items() for m in ops}
    assert documented == ENDPOINTS
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            assert op.get("description") or op.get("summary"), (method, path)


def test_request_and_response_bodies_carry_examples(openapi: dict[str, Any]) -> None:
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op:
                for ref in _refs(op["requestBody"]["content"]["application/json"]["schema"]):
                    assert _schema(openapi, ref).get("examples"), (method, path, ref)
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            if path not in {"/health", "/ready", "/models", "/models/{model}"}:
                for ref in _refs(ok):
                    assert _schema(openapi, ref).get("examples"), (method, path, ref)


def _refs(schema: dict[str, Any]) -> list[str]:
    """The schemas a body may be: one $ref, or each of an anyOf (POST /predict/{model}: a known user or a
    visitor)."""
    return [schema["$ref"]] if "$ref" in schema else [s["$ref"] for s in schema["anyOf"]]


def test_error_responses_are_documented(openapi: dict[str, Any]) -> None:
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            if path in {"/health", "/models"}:
                continue
            expected = {"503"} if path == "/ready" else {"404", "422"}
            if path in {"/admin/reload", "/admin/rollback"}:
                expected = {"401", "404", "409"}  # disabled, wrong key, the store failed to load
            assert expected <= set(op["responses"]), (method, path)
    error = _schema(openapi, "ErrorResponse")
    assert error["required"] == ["detail"] and error["examples"]


def test_the_admin_key_header_is_documented(openapi: dict[str, Any]) -> None:
    for path in ("/admin/reload", "/admin/rollback"):
        [header] = [p for p in openapi["paths"][path]["post"]["parameters"] if p["in"] == "header"]
        assert (header["name"].lower(), header["required"]) == ("x-api-key", False)


def test_docs_pages_load_their_assets_from_this_server(client: TestClient) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert urls and all(u.startswith("/") for u in urls), urls
        assert f"/static/docs/{asset}" in urls
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        r = client.get(f"/static/docs/{asset}")
        assert r.status_code == 200 and len(r.content) > 1000, asset
    assert client.get("/docs/oauth2-redirect").status_code == 200
