"""Heavy recommendation requests (many items, explanations) run in a worker thread, one at a time, so they do not
stop the event loop; light ones stay on it. Both paths answer the same bytes' worth of JSON."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.routers import recommend as router
from app.services import recommend as service
from tests.conftest import N_ITEMS

REQUESTS = [
    ("get", "/recommend/101", {"params": {"k": N_ITEMS // 2, "explain": "true", "exclude_seen": "false"}}),
    ("get", "/recommend/99999", {"params": {"k": 20, "explain": "true", "fallback": "popular"}}),
    ("post", "/recommend", {"json": {"items": [1001, 1002, 1003], "ratings": [5, 4], "k": 30, "explain": True}}),
]


def _threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    for name in ("recommend_for_user", "recommend_for_session"):
        original = getattr(service, name)

        def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen.append(threading.current_thread().name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(service, name, spy)
    return seen


@pytest.mark.parametrize(("method", "url", "kwargs"), REQUESTS)
def test_heavy_requests_run_off_the_event_loop_and_answer_the_same(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    seen = _threads(monkeypatch)
    light = client.request(method, url, **kwargs)
    monkeypatch.setattr(router, "HEAVY_ITEMS", 1)
    heavy = client.request(method, url, **kwargs)
    assert light.status_code == heavy.status_code == 200, (light.text, heavy.text)
    assert heavy.json() == light.json()
    assert heavy.headers["content-type"] == light.headers["content-type"] == "application/json"
    assert heavy.headers.get("x-model-version") == light.headers.get("x-model-version")
    loop_thread, worker_thread = seen
    assert worker_thread != loop_thread, seen


def test_errors_of_heavy_requests_are_the_usual_answers(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "HEAVY_ITEMS", 1)
    r = client.get("/recommend/99999", params={"k": 20, "explain": "true"})
    assert r.status_code == 404 and r.json()["unknown_user_ids"] == [99999]
    r = client.get("/recommend/101", params={"k": N_ITEMS + 1, "explain": "true"})
    assert r.status_code == 422 and r.json()["max_k"] == N_ITEMS


def test_the_explained_page_size_decides_what_is_heavy() -> None:
    assert N_ITEMS * 4 <= router.HEAVY_ITEMS  # the synthetic store's requests stay light unless a test says so
    assert router.HEAVY_ITEMS < 1682
