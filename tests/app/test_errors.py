"""Unexpected failures still answer JSON with a `detail` and the request id, without leaking internals."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services import predict
from app.settings import Settings
from tests.conftest import SyntheticStore


def test_an_unexpected_exception_is_a_json_500(
    synthetic_store: SyntheticStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(predict, "predict_ratings", broken)
    app = create_app(Settings(models_dir=synthetic_store.path, access_log=True))  # off by default
    # The default raise_server_exceptions=True: the middleware answers, nothing propagates to the client.
    with TestClient(app) as client, caplog.at_level(logging.INFO):
        r = client.post("/predict/mf", json={"user_id": 101, "item_ids": [1001]}, headers={"X-Request-ID": "t-1"})
        assert client.get("/ready").status_code == 200  # the next request is served as usual
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error", "request_id": "t-1"}
    assert r.headers["x-request-id"] == "t-1" and r.headers["content-type"] == "application/json"
    assert "secret internals" not in r.text and "Traceback" not in r.text
    # Server side: the traceback, under the route template (never the raw path), then the access line.
    [error] = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert error.getMessage() == "unhandled error on POST /predict/{model}"
    assert error.exc_info is not None and "secret internals" in str(error.exc_info[1])
    [access] = [rec for rec in caplog.records if rec.name == "app.access" and rec.route == "/predict/{model}"]
    assert (access.status, access.request_id) == (500, "t-1")
