"""Store versions in the service: GET /models lists them, POST /admin/reload?version= and /admin/rollback
serve a kept one, and each model says what it was trained on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.artifacts import MANIFEST_FILE, VERSIONS_DIR, Manifest
from app.main import create_app
from app.settings import Settings
from tests.conftest import synthetic_data, synthetic_networks, write_synthetic_store, write_synthetic_store_with_seed
from training.export import TrainedModel, catalog, dataset_info, export_store

KEY = "test-admin-key-0123456789"
AUTH = {"X-API-Key": KEY}


@dataclass
class Versions:
    path: Path
    first: Manifest
    second: Manifest


def _live(path: Path) -> Manifest:
    return Manifest.model_validate_json((path / MANIFEST_FILE).read_bytes())


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    """One store directory exported twice (other weights the second time): two kept versions."""
    path = tmp_path_factory.mktemp("versioned")
    write_synthetic_store(path)
    first = _live(path)
    write_synthetic_store_with_seed(path, seed=1)
    return Versions(path, first, _live(path))


@pytest.fixture
def client(versions: Versions) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=versions.path, admin_api_key=KEY))) as test_client:
        yield test_client


def _models(manifest: Manifest) -> dict[str, str]:
    return {name: e.version for name, e in manifest.models.items()}


def _serving(client: TestClient) -> dict[str, str]:
    return client.get("/ready").json()["models"]  # type: ignore[no-any-return]


def test_models_lists_the_kept_versions_newest_first(client: TestClient, versions: Versions) -> None:
    body = client.get("/models").json()
    assert body["store_version"] == versions.second.store_version
    listed = body["versions"]
    assert [v["id"] for v in listed] == [versions.second.store_version, versions.first.store_version]
    assert [(v["live"], v["serving"]) for v in listed] == [(True, True), (False, False)]
    assert listed[1]["models"] == _models(versions.first)
    assert all(v["problem"] is None for v in listed)


def test_rollback_serves_the_previous_version_until_a_plain_reload(client: TestClient, versions: Versions) -> None:
    answer = client.post("/predict/mf", json={"user_id": 101, "item_ids": [1001]}).json()
    r = client.post("/admin/rollback", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["previous_store_version"], body["store_version"]) == (
        versions.second.store_version,
        versions.first.store_version,
    )
    assert body["models"] == _models(versions.first) and body["changed"] == ["dense", "lstm", "mf"]
    assert _serving(client) == _models(versions.first)
    rolled = client.post("/predict/mf", json={"user_id": 101, "item_ids": [1001]}).json()
    assert rolled["model_version"] == versions.first.models["mf"].version != answer["model_version"]
    listed = {v["id"]: v for v in client.get("/models").json()["versions"]}
    assert listed[versions.first.store_version]["serving"] and not listed[versions.first.store_version]["live"]
    # Nothing older is kept: a second rollback is refused and changes nothing.
    again = client.post("/admin/rollback", headers=AUTH)
    assert again.status_code == 409 and "no store version older than" in again.json()["detail"]
    assert _serving(client) == _models(versions.first)
    # A plain reload goes back to the live manifest; the service never rewrote it.
    assert _live(versions.path) == versions.second
    assert client.post("/admin/reload", headers=AUTH).json()["store_version"] == versions.second.store_version


def test_reload_can_target_a_kept_version(client: TestClient, versions: Versions) -> None:
    r = client.post("/admin/reload", headers=AUTH, params={"version": versions.first.store_version})
    assert r.status_code == 200, r.text
    assert _serving(client) == _models(versions.first)
    r = client.post("/admin/reload", headers=AUTH, params={"version": versions.second.store_version})
    assert _serving(client) == _models(versions.second)


def test_an_unknown_version_is_409_and_a_malformed_one_422(client: TestClient, versions: Versions) -> None:
    unknown = "20000101T000000000000Z-00000000"
    r = client.post("/admin/reload", headers=AUTH, params={"version": unknown})
    assert r.status_code == 409
    assert unknown in r.json()["detail"] and versions.first.store_version in r.json()["detail"]
    for bad in ("../manifest", "latest", versions.first.store_version + "x"):
        assert client.post("/admin/reload", headers=AUTH, params={"version": bad}).status_code == 422, bad
    assert _serving(client) == _models(versions.second)


def test_rollback_needs_the_admin_key(client: TestClient, versions: Versions) -> None:
    assert client.post("/admin/rollback").status_code == 401
    assert client.post("/admin/rollback", headers={"X-API-Key": "wrong-wrong-wrong-wrong"}).status_code == 401
    assert _serving(client) == _models(versions.second)


def test_rollback_is_off_without_a_key(versions: Versions) -> None:
    with TestClient(create_app(Settings(models_dir=versions.path))) as client:
        assert client.post("/admin/rollback").status_code == 404


def test_a_kept_version_that_is_broken_is_listed_with_its_problem(versions: Versions, tmp_path: Path) -> None:
    path = tmp_path / "store"
    shutil.copytree(versions.path, path)
    (path / VERSIONS_DIR / f"{versions.first.store_version}.json").write_text("{")
    with TestClient(create_app(Settings(models_dir=path, admin_api_key=KEY))) as client:
        listed = client.get("/models").json()["versions"]
        assert listed[1]["id"] == versions.first.store_version
        assert listed[1]["models"] == {} and "cannot read it as JSON" in listed[1]["problem"]
        assert client.post("/admin/rollback", headers=AUTH).status_code == 409
        assert _serving(client) == _models(versions.second)


def test_each_model_says_what_it_was_trained_on(tmp_path: Path) -> None:
    # mf retrained on another split of the same data: kept beside dense and lstm, each naming its own split.
    write_synthetic_store(tmp_path)
    data, train = synthetic_data()
    mf = TrainedModel("mf", synthetic_networks(seed=3)["mf"], {"dim": 8}, [], training_seconds=0.1, epochs=1)
    export_store(tmp_path, [mf], catalog=catalog(data), dataset=dataset_info(data, train, "synthetic-2"), train=train)
    with TestClient(create_app(Settings(models_dir=tmp_path))) as client:
        body = client.get("/models").json()
        assert {m["name"]: m["dataset"]["split"] for m in body["models"]} == {
            "mf": "synthetic-2",
            "dense": "synthetic",
            "lstm": "synthetic",
        }
        assert body["dataset"]["split"] == "synthetic-2"
        assert client.get("/models/dense").json()["dataset"]["split"] == "synthetic"
