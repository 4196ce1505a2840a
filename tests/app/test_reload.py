"""Hot reload: POST /admin/reload behind X-API-Key, atomic swap under load, failures keep the old models.

The two synthetic stores share catalog and histories and differ in weights, so their files can live in one
directory, as training leaves them: content-addressed files, and a reload "switches" by replacing
manifest.json atomically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.artifacts import MANIFEST_FILE
from app.main import create_app
from app.registry import ModelRegistry
from app.services.predict import predict_ratings
from app.settings import Settings
from tests.conftest import SyntheticStore

KEY = "test-admin-key-0123456789"
AUTH = {"X-API-Key": KEY}
# One request per route that names a model version: (method, url, json body, model).
REQUESTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/predict/mf", {"user_id": 101, "item_ids": [1001, 1002, 1003]}, "mf"),
    ("POST", "/predict/dense", {"user_id": 102, "item_ids": [1004, 1005]}, "dense"),
    ("POST", "/predict/lstm", {"items": [1001, 1007, 1009], "ratings": [4, 2]}, "lstm"),
    ("GET", "/recommend/103?k=5&model=mf", None, "mf"),
    ("GET", "/recommend/104?k=5&model=lstm&explain=true", None, "lstm"),
    ("POST", "/recommend", {"items": [1001, 1002], "k": 5}, "lstm"),
    ("GET", "/items/1001/similar?k=3&model=dense", None, "dense"),
]


@dataclass
class Stores:
    live: Path  # the served directory: both stores' files, manifest.json of one of them
    manifests: dict[str, bytes]  # "a" / "b" -> manifest.json bytes

    def switch(self, which: str) -> None:
        """Point the live store at store `which` as training does: write aside, then rename over."""
        tmp = self.live / f".manifest-{which}.tmp"
        tmp.write_bytes(self.manifests[which])
        os.replace(tmp, self.live / MANIFEST_FILE)


@pytest.fixture
def stores(synthetic_store: SyntheticStore, other_synthetic_store: SyntheticStore, tmp_path: Path) -> Stores:
    live = tmp_path / "live"
    live.mkdir()
    manifests = {}
    for which, store in (("a", synthetic_store), ("b", other_synthetic_store)):
        for path in store.path.iterdir():
            if path.is_dir():  # versions/: both stores' version manifests, as two exports leave them
                shutil.copytree(path, live / path.name, dirs_exist_ok=True)
            elif path.name != MANIFEST_FILE:
                shutil.copy(path, live / path.name)
        manifests[which] = (store.path / MANIFEST_FILE).read_bytes()
    result = Stores(live=live, manifests=manifests)
    result.switch("a")
    return result


@pytest.fixture
def admin_client(stores: Stores) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=stores.live, admin_api_key=KEY))) as client:
        yield client


@pytest.fixture(scope="module")
def keyed_client(synthetic_store: SyntheticStore) -> Iterator[TestClient]:
    """The admin key set, on the unchanging store: for access control, where reloads change nothing."""
    with TestClient(create_app(Settings(models_dir=synthetic_store.path, admin_api_key=KEY))) as client:
        yield client


def _send(client: TestClient, method: str, url: str, body: dict[str, Any] | None) -> Any:
    return client.request(method, url, json=body)


def _versions(client: TestClient) -> dict[str, str]:
    r = client.get("/ready")
    assert r.status_code == 200, r.text
    return r.json()["models"]  # type: ignore[no-any-return]


# --- access control -----------------------------------------------------------------------------------------


def test_admin_endpoints_are_off_without_a_key(client: TestClient) -> None:
    for headers in ({}, AUTH):
        r = client.post("/admin/reload", headers=headers)
        assert r.status_code == 404
        assert "RECSYS_ADMIN_API_KEY" in r.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": KEY[:-1]},
        {"X-API-Key": KEY + "x"},
        {"X-API-Key": KEY.upper()},
        {"X-API-Key": ("é" * 20).encode("latin-1")},  # not ASCII: compared as bytes, not a TypeError
    ],
    ids=["missing", "empty", "prefix", "longer", "case", "latin-1"],
)
def test_a_missing_or_wrong_key_is_401(
    keyed_client: TestClient, headers: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        r = keyed_client.post("/admin/reload", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"detail": "missing or wrong X-API-Key header"}
    assert r.headers["www-authenticate"].startswith("ApiKey")
    assert not any(rec.name == "app.services.admin" for rec in caplog.records)  # nothing was reloaded


def test_the_key_is_never_logged_or_echoed(keyed_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        ok = keyed_client.post("/admin/reload", headers=AUTH)
        wrong = keyed_client.post("/admin/reload", headers={"X-API-Key": "wrong-key-wrong-key"})
    assert (ok.status_code, wrong.status_code) == (200, 401)
    assert KEY not in caplog.text and "wrong-key-wrong-key" not in caplog.text
    assert KEY not in ok.text + wrong.text
    assert KEY not in repr(Settings(admin_api_key=KEY))


# --- reload semantics ---------------------------------------------------------------------------------------


def test_reload_swaps_in_the_new_store(
    admin_client: TestClient, stores: Stores, synthetic_store: SyntheticStore
) -> None:
    before = _versions(admin_client)
    first = admin_client.post("/predict/mf", json=REQUESTS[0][2])
    stores.switch("b")
    r = admin_client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["previous"] == before and body["models"] == _versions(admin_client)
    assert body["changed"] == sorted(before) and body["load_seconds"] > 0
    assert all(before[m] != body["models"][m] for m in before)
    second = admin_client.post("/predict/mf", json=REQUESTS[0][2])
    assert second.json()["model_version"] == second.headers["x-model-version"] == body["models"]["mf"]
    assert second.json()["predictions"] != first.json()["predictions"]
    # Reloading the same store again is allowed and changes nothing.
    again = admin_client.post("/admin/reload", headers=AUTH).json()
    assert again["changed"] == [] and again["models"] == body["models"]
    metrics = admin_client.get("/metrics").text
    assert 'recsys_reloads_total{result="success"} 2.0' in metrics
    assert f'recsys_model_info{{model="mf",version="{body["models"]["mf"]}"}} 1.0' in metrics
    assert f'version="{before["mf"]}"' not in metrics


def _break_store(stores: Stores) -> str:
    """Make the live manifest name a model file whose bytes fail their checksum; return that file name."""
    name = _model_file(stores.manifests["b"], "mf")
    (stores.live / name).write_bytes(b"not a model")
    stores.switch("b")
    return name


def _model_file(manifest: bytes, model: str) -> str:
    return str(json.loads(manifest)["models"][model]["file"])


def test_a_failed_reload_keeps_serving_the_old_models(
    admin_client: TestClient, stores: Stores, other_synthetic_store: SyntheticStore, caplog: pytest.LogCaptureFixture
) -> None:
    before = _versions(admin_client)
    answer = admin_client.post("/predict/mf", json=REQUESTS[0][2]).json()
    broken = _break_store(stores)
    with caplog.at_level(logging.INFO):
        r = admin_client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 409
    body = r.json()
    assert body["detail"].startswith("reload failed; still serving the previous models: ")
    assert broken in body["detail"] and "SHA-256 mismatch" in body["detail"]
    assert body["models"] == before
    # Still ready, still the same answers.
    assert _versions(admin_client) == before
    assert admin_client.post("/predict/mf", json=REQUESTS[0][2]).json() == answer
    assert any(rec.levelno == logging.ERROR and broken in rec.getMessage() for rec in caplog.records)
    assert 'recsys_reloads_total{result="failure"} 1.0' in admin_client.get("/metrics").text
    # Once the store is fixed, the next reload succeeds.
    shutil.copy(other_synthetic_store.path / broken, stores.live / broken)
    assert admin_client.post("/admin/reload", headers=AUTH).status_code == 200


def test_concurrent_reloads_run_one_at_a_time(
    admin_client: TestClient, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    active, overlap = 0, []
    lock = threading.Lock()
    load = ModelRegistry.load

    def counting_load(directory: Path, *args: Any) -> ModelRegistry:
        nonlocal active
        with lock:
            active += 1
            overlap.append(active)
        try:
            return load(directory, *args)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(ModelRegistry, "load", counting_load)
    stores.switch("b")
    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(lambda _: admin_client.post("/admin/reload", headers=AUTH).status_code, range(3)))
    assert statuses == [200, 200, 200]
    assert overlap and max(overlap) == 1, overlap


def test_requests_during_reloads_are_all_answered_by_one_consistent_version(
    admin_client: TestClient, stores: Stores
) -> None:
    # What each version answers, request by request.
    expected: dict[str, dict[int, Any]] = {}  # version -> request index -> response body
    for which in ("a", "b"):
        stores.switch(which)
        assert admin_client.post("/admin/reload", headers=AUTH).status_code == 200
        for i, (method, url, body, _) in enumerate(REQUESTS):
            r = _send(admin_client, method, url, body)
            assert r.status_code == 200, r.text
            expected.setdefault(r.json()["model_version"], {})[i] = r.json()
    versions_by_model = {model: {v for v in expected if v.startswith(f"{model}-")} for model in ("mf", "dense", "lstm")}
    assert all(len(v) == 2 for v in versions_by_model.values()), versions_by_model

    stop = threading.Event()
    seen: Counter[str] = Counter()
    problems: list[str] = []

    def load(worker: int) -> None:
        # Bounded by count and by the main thread's stop signal.
        for n in range(2000):
            if stop.is_set():
                return
            i = (worker + n) % len(REQUESTS)
            method, url, body, model = REQUESTS[i]
            r = _send(admin_client, method, url, body)
            if r.status_code != 200:
                problems.append(f"{url}: {r.status_code} {r.text[:200]}")
                continue
            answer = r.json()
            version = answer["model_version"]
            if version not in versions_by_model[model] or r.headers.get("x-model-version") != version:
                problems.append(f"{url}: version {version}, header {r.headers.get('x-model-version')}")
            elif answer != expected[version][i]:
                problems.append(f"{url}: answer does not match version {version}")
            seen[version] += 1

    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load, w) for w in range(4)]
        try:
            for n in range(6):
                stores.switch("ab"[n % 2])
                r = admin_client.post("/admin/reload", headers=AUTH)
                assert r.status_code == 200, r.text
                assert time.monotonic() < deadline
        finally:
            stop.set()
        for worker in workers:
            worker.result(timeout=30)
    assert problems == []
    # Both versions of every model answered some of the requests made during the reloads.
    assert all(seen[v] > 0 for vs in versions_by_model.values() for v in vs), seen


def test_a_request_keeps_the_registry_it_started_with(admin_client: TestClient, stores: Stores) -> None:
    """What an in-flight request holds stays usable after a swap: the old registry is never torn down."""
    holder = admin_client.app.state.registry_holder  # type: ignore[attr-defined]
    old = holder.get()
    stores.switch("b")
    assert admin_client.post("/admin/reload", headers=AUTH).status_code == 200
    assert holder.get() is not old
    answer = predict_ratings(registry=old, model="mf", user_id=101, item_ids=[1001, 1002, 1003])
    assert answer.model_version == old.models["mf"].version
    new = admin_client.post("/predict/mf", json=REQUESTS[0][2]).json()
    assert new["model_version"] != answer.model_version
