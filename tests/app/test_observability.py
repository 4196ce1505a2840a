"""Request ids, the access log, log formats and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.logs import JsonFormatter, KeyValueFormatter, new_request_id, request_id_var
from app.main import create_app
from app.settings import Settings
from tests.conftest import SyntheticStore

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
ACCESS_FIELDS = {"method", "route", "status", "duration_ms", "request_id"}


# --- request id ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given", ["abc-123", "0af7651916cd43dd8448eb211c80319c", "Root=1-5759e988-bd862e3f", "a" * 128]
)
def test_an_acceptable_request_id_is_echoed(client: TestClient, given: str) -> None:
    r = client.get("/health", headers={"X-Request-ID": given})
    assert r.headers["x-request-id"] == given


@pytest.mark.parametrize("given", ["", "a" * 129, "has space", 'quo"te', "new\\nline", "ümlaut", "a;b", "<x>"])
def test_an_unacceptable_request_id_is_replaced(client: TestClient, given: str) -> None:
    r = client.get("/health", headers={"X-Request-ID": given.encode("latin-1", "replace")})
    assert GENERATED_ID.fullmatch(r.headers["x-request-id"])


def test_generated_ids_differ_in_a_forked_child() -> None:
    # Workers forked from one parent must not hand out the same ids: the prefix is drawn again in the child.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    mine = new_request_id()
    assert GENERATED_ID.fullmatch(child) and GENERATED_ID.fullmatch(mine) and child[:16] != mine[:16]


def test_every_response_gets_a_fresh_request_id(client: TestClient) -> None:
    ids = {client.get(path).headers["x-request-id"] for path in ("/health", "/health", "/nope", "/items/1")}
    assert len(ids) == 4 and all(GENERATED_ID.fullmatch(i) for i in ids)
    too_big = client.post("/predict/mf", content=b"x" * 100_000, headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and GENERATED_ID.fullmatch(too_big.headers["x-request-id"])


# --- X-Model-Version ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/predict/dense", {"user_id": 101, "item_ids": [1001]}),
        ("POST", "/predict/lstm", {"items": [1001, 1002]}),
        ("GET", "/recommend/101?model=lstm&k=2", None),
        ("POST", "/recommend", {"items": [1001], "k": 2}),
        ("GET", "/items/1001/similar?model=dense&k=2", None),
    ],
)
def test_the_model_version_header_matches_the_body(
    client: TestClient, method: str, url: str, body: dict[str, object] | None
) -> None:
    r = client.request(method, url, json=body)
    assert r.status_code == 200
    assert r.headers["x-model-version"] == r.json()["model_version"]


def test_no_model_version_header_where_no_model_answered(client: TestClient) -> None:
    for r in (
        client.get("/recommend/7?fallback=popular&k=2"),  # unknown user: popularity ranks, no model
        client.get("/items/1001"),
        client.get("/ready"),
        client.post("/predict/mf", json={"user_id": 7, "item_ids": [1001]}),  # 404
    ):
        assert "x-model-version" not in r.headers


# --- access log ---------------------------------------------------------------------------------------------


def _access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "app.access"]


@pytest.fixture(scope="module")
def logging_client(synthetic_store: SyntheticStore) -> Iterator[TestClient]:
    """An app with the access log switched on (RECSYS_ACCESS_LOG=true; it is off by default)."""
    with TestClient(create_app(Settings(models_dir=synthetic_store.path, access_log=True))) as test_client:
        yield test_client


def test_one_access_line_per_request_without_ids_bodies_or_query(
    logging_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = logging_client
    with caplog.at_level(logging.INFO, logger="app.access"):
        client.get("/recommend/113?k=3&exclude=1033&model=dense", headers={"X-Request-ID": "req-1"})
        client.post("/predict/mf", json={"user_id": 117, "item_ids": [1044, 1045]}, headers={"X-Request-ID": "r2"})
        client.get("/items/99999", headers={"X-Request-ID": "req-3"})
    first, second, third = _access_records(caplog)
    assert vars(first).keys() & (ACCESS_FIELDS | {"model"}) == ACCESS_FIELDS | {"model"}
    assert (first.method, first.route, first.status, first.model, first.request_id) == (
        "GET",
        "/recommend/{user_id}",
        200,
        "dense",
        "req-1",
    )
    assert (second.route, second.model, second.request_id) == ("/predict/{model}", "mf", "r2")
    assert (third.route, third.status, third.request_id) == ("/items/{item_id}", 404, "req-3")
    assert not hasattr(third, "model")
    # The formatted lines carry none of the ids the client sent, no query string and no body.
    lines = [KeyValueFormatter().format(r) for r in (first, second, third)]
    for secret in ("113", "1033", "117", "1044", "99999", "k=3", "exclude", "item_ids"):
        assert not any(re.search(rf"(?<![\d.]){secret}(?![\d.])", line) for line in lines), (secret, lines)


def test_key_value_lines() -> None:
    record = logging.LogRecord("app.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.__dict__.update(status=200, route="/a b", note='say "hi"')
    token = request_id_var.set("rid-1")
    try:
        line = KeyValueFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO app\.x hello world .*", line), line
    assert line.endswith(' status=200 route="/a b" note="say \\"hi\\"" request_id=rid-1'), line


def test_json_lines_carry_fields_request_id_and_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("app.y", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    record.__dict__.update(route="/predict/{model}")
    token = request_id_var.set("rid-2")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "ERROR" and parsed["logger"] == "app.y" and parsed["msg"] == "failed"
    assert parsed["route"] == "/predict/{model}" and parsed["request_id"] == "rid-2"
    assert "ValueError: boom" in parsed["exc"]


# --- metrics ------------------------------------------------------------------------------------------------


def _metrics(client: TestClient) -> str:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_requests_are_counted_by_route_template_method_and_status(client: TestClient) -> None:
    ok = 'recsys_http_requests_total{method="GET",route="/recommend/{user_id}",status="200"}'
    missing = 'recsys_http_requests_total{method="GET",route="/recommend/{user_id}",status="404"}'
    model = 'recsys_model_requests_total{model="lstm",route="/recommend/{user_id}"}'
    before = _metrics(client)
    for user in (101, 102, 103):
        client.get(f"/recommend/{user}?model=lstm&k=2")
    client.get("/recommend/5?k=2")
    for n in range(3):
        client.get(f"/no/such/path/{n}")
    client.request("BREW", "/ready")
    after = _metrics(client)
    assert _value(after, ok) - _value(before, ok) == 3
    assert _value(after, missing) - _value(before, missing) == 1
    assert _value(after, model) - _value(before, model) == 3
    bucket = 'recsys_model_request_duration_seconds_bucket{le="+Inf",model="lstm",route="/recommend/{user_id}"}'
    assert _value(after, bucket) - _value(before, bucket) == 3
    latency = 'recsys_http_request_duration_seconds_count{method="GET",route="/recommend/{user_id}",status="200"}'
    assert _value(after, latency) - _value(before, latency) == 3
    # Label values stay a small fixed set: no raw paths, user ids or invented methods.
    assert "/recommend/101" not in after and "/no/such" not in after and "BREW" not in after
    assert 'route="<unmatched>",status="404"' in after and 'method="other",route="/ready",status="405"' in after


def test_loaded_versions_and_readiness_are_exported(client: TestClient) -> None:
    text = _metrics(client)
    for name, version in client.get("/ready").json()["models"].items():
        assert f'recsys_model_info{{model="{name}",version="{version}"}} 1.0' in text
    assert _value(text, "recsys_ready") == 1.0
    assert _value(text, "recsys_models_load_seconds") > 0
    assert _value(text, "process_resident_memory_bytes") > 0
