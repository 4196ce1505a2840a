"""Settings from the environment, and what they switch on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings, get_settings
from tests.conftest import SyntheticStore


def test_environment_overrides_and_relative_models_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_MODELS_DIR", "stores/a")
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("RECSYS_MAX_BODY_BYTES", "1234")
    monkeypatch.setenv("RECSYS_TORCH_THREADS", "2")
    monkeypatch.setenv("RECSYS_ADMIN_API_KEY", "k" * 32)
    monkeypatch.setenv("RECSYS_LOG_FORMAT", "json")
    monkeypatch.setenv("RECSYS_ACCESS_LOG", "true")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.models_dir == tmp_path / "stores/a"
        assert settings.cors_origins == ["http://a.example", "http://b.example"]
        assert settings.max_body_bytes == 1234 and settings.torch_threads == 2
        assert settings.admin_api_key is not None and settings.admin_api_key.get_secret_value() == "k" * 32
        assert settings.log_format == "json" and settings.access_log is True
    finally:
        get_settings.cache_clear()


def test_the_admin_key_is_off_when_empty_and_refused_when_short_without_echoing_it() -> None:
    assert Settings(admin_api_key="").admin_api_key is None
    assert Settings(admin_api_key="   ").admin_api_key is None
    with pytest.raises(ValidationError) as info:
        Settings(admin_api_key="short-secret")
    assert "at least 16 characters" in str(info.value) and "short-secret" not in str(info.value)


def test_no_access_lines_by_default(synthetic_store: SyntheticStore, caplog: pytest.LogCaptureFixture) -> None:
    # Off unless RECSYS_ACCESS_LOG=true, as uvicorn's own line is off under `make serve` (--no-access-log).
    with (
        TestClient(create_app(Settings(models_dir=synthetic_store.path))) as client,
        caplog.at_level(logging.INFO),
    ):
        assert client.get("/health").headers["x-request-id"]
    assert not [r for r in caplog.records if r.name == "app.access"]


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "MODELS_DIR",
        "CORS_ORIGINS",
        "MAX_BODY_BYTES",
        "TORCH_THREADS",
        "ADMIN_API_KEY",
        "LOG_FORMAT",
    ):
        monkeypatch.delenv(f"RECSYS_{name}", raising=False)
    monkeypatch.delenv("RECSYS_ACCESS_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.models_dir == tmp_path / "models_store"
    assert settings.cors_origins == [] and settings.torch_threads == 1
    assert settings.admin_api_key is None and settings.log_format == "text" and settings.access_log is False


def test_cors_is_off_by_default_and_on_for_listed_origins(synthetic_store: SyntheticStore) -> None:
    preflight = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(Settings(models_dir=synthetic_store.path))) as client:
        r = client.get("/health", headers={"Origin": "http://ui.example"})
        assert "access-control-allow-origin" not in r.headers
    settings = Settings(models_dir=synthetic_store.path, cors_origins=["http://ui.example"])
    with TestClient(create_app(settings)) as client:
        r = client.options("/predict/mf", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://ui.example"
        r = client.post(
            "/predict/mf", json={"user_id": 101, "item_ids": [1001]}, headers={"Origin": "http://ui.example"}
        )
        assert r.headers["access-control-allow-origin"] == "http://ui.example"
        exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
        assert exposed == {"x-request-id", "x-model-version"}
        r = client.get("/health", headers={"Origin": "http://other.example"})
        assert "access-control-allow-origin" not in r.headers


def test_bodies_over_the_limit_are_413(synthetic_store: SyntheticStore) -> None:
    settings = Settings(models_dir=synthetic_store.path, max_body_bytes=200)
    with TestClient(create_app(settings)) as client:
        small = client.post("/predict/mf", json={"user_id": 101, "item_ids": [1001]})
        assert small.status_code == 200
        # Exactly at the limit is allowed; one byte more is not.
        at_limit = b'{"user_id": 101, "item_ids": [1001]}'.ljust(200)
        json_headers = {"content-type": "application/json"}
        assert client.post("/predict/mf", content=at_limit, headers=json_headers).status_code == 200
        r = client.post("/predict/mf", content=at_limit + b" ", headers=json_headers)
        assert r.status_code == 413 and r.json()["max_bytes"] == 200
        big = {"user_id": 101, "item_ids": [1001] * 100}
        r = client.post("/predict/mf", json=big)
        assert r.status_code == 413 and "at most 200 bytes" in r.json()["detail"]

        # Without Content-Length (chunked), the limit applies to the bytes as they arrive.
        def chunks() -> object:
            yield b'{"user_id": 101, "item_ids": ['
            for _ in range(100):
                yield b"1001, "
            yield b"1001]}"

        r = client.post("/predict/mf", content=chunks(), headers={"content-type": "application/json"})  # type: ignore[arg-type]
        assert r.status_code == 413
