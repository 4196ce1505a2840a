"""Unexpected failures still answer JSON with a `detail`, without leaking internals."""

from __future__ import annotations

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
    app = create_app(Settings(models_dir=synthetic_store.path))
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/predict/mf", json={"user_id": 101, "item_ids": [1001]})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "secret internals" not in r.text
    assert any("unhandled error on POST /predict/mf" in rec.getMessage() for rec in caplog.records)
