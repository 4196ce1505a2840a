"""Settings from the environment, and what they switch on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings, get_settings
from tests.conftest import SyntheticStore


def test_environment_overrides_and_relative_models_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_MODELS_DIR", "stores/a")
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("RECSYS_MAX_BODY_BYTES", "1234")
    monkeypatch.setenv("RECSYS_TORCH_THREADS", "2")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.models_dir == tmp_path / "stores/a"
        assert settings.cors_origins == ["http://a.example", "http://b.example"]
        assert settings.max_body_bytes == 1234 and settings.torch_threads == 2
    finally:
        get_settings.cache_clear()


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MODELS_DIR", "CORS_ORIGINS", "MAX_BODY_BYTES", "TORCH_THREADS"):
        monkeypatch.delenv(f"RECSYS_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.models_dir == tmp_path / "models_store"
    assert settings.cors_origins == [] and settings.torch_threads == 1


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
        r = client.get("/health", headers={"Origin": "http://other.example"})
        assert "access-control-allow-origin" not in r.headers


def test_bodies_over_the_limit_are_413(synthetic_store: SyntheticStore) -> None:
    settings = Settings(models_dir=synthetic_store.path, max_body_bytes=200)
    with TestClient(create_app(settings)) as client:
        small = client.post("/predict/mf", json={"user_id": 101, "item_ids": [1001]})
        assert small.status_code == 200
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
