"""GET /items/{item_id}, GET /items/{item_id}/similar, GET /models, GET /models/{model}, /health, /ready."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.artifacts import MANIFEST_FILE
from app.main import create_app
from app.settings import Settings
from tests.conftest import N_ITEMS, RANK_WEIGHT, SyntheticStore


def test_item_metadata(client: TestClient, synthetic_store: SyntheticStore) -> None:
    r = client.get("/items/1010")
    assert r.status_code == 200
    row = synthetic_store.data.items.set_index("item_id").loc[1010]
    count = int(np.sum(synthetic_store.train.item_ids == synthetic_store.item_index(1010)))
    assert r.json() == {
        "item_id": 1010,
        "title": row["title"],
        "year": int(row["year"]),
        "genres": list(row["genres"]),
        "n_ratings": count,
    }
    assert client.get("/items/1050").json()["year"] is None


@pytest.mark.parametrize(("path", "status"), [("/items/10", 404), ("/items/abc", 422), ("/items/0", 422)])
def test_bad_item_ids(client: TestClient, path: str, status: int) -> None:
    r = client.get(path)
    assert r.status_code == status
    if status == 404:
        assert r.json()["unknown_item_ids"] == [10]


@pytest.mark.parametrize("model", ["mf", "dense", "lstm"])
def test_similar_items_are_nearest_by_cosine(client: TestClient, synthetic_store: SyntheticStore, model: str) -> None:
    with torch.no_grad():
        embeddings = synthetic_store.networks[model].item_embeddings().numpy()  # type: ignore[operator]
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    source = synthetic_store.item_index(1020)
    sims = unit[1:] @ unit[source]
    expected = [i + 1 for i in np.argsort(-sims, kind="stable") if i + 1 != source][:5]
    r = client.get("/items/1020/similar", params={"k": 5, "model": model})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == 1020 and body["model"] == model and body["title"].startswith("Synthetic")
    assert [i["item_id"] for i in body["items"]] == [synthetic_store.item_raw(i) for i in expected]
    assert [i["similarity"] for i in body["items"]] == pytest.approx([sims[i - 1] for i in expected], abs=1e-3)


def test_similar_items_never_include_the_item_itself(client: TestClient) -> None:
    body = client.get("/items/1020/similar", params={"k": N_ITEMS}).json()
    assert len(body["items"]) == N_ITEMS - 1
    assert 1020 not in {i["item_id"] for i in body["items"]}


@pytest.mark.parametrize(
    ("params", "status"),
    [({"model": "svd"}, 404), ({"k": 0}, 422), ({"k": N_ITEMS + 1}, 422), ({"k": "x"}, 422)],
)
def test_bad_similar_parameters(client: TestClient, params: dict[str, str | int], status: int) -> None:
    assert client.get("/items/1020/similar", params=params).status_code == status


def test_models_report_versions_checksums_and_metrics(client: TestClient, synthetic_store: SyntheticStore) -> None:
    manifest = json.loads((synthetic_store.path / MANIFEST_FILE).read_text())
    r = client.get("/models")
    assert r.status_code == 200
    body = r.json()
    assert body["schema_version"] == manifest["schema_version"]
    assert body["dataset"]["split"] == "synthetic"
    assert [m["name"] for m in body["models"]] == ["mf", "dense", "lstm"]
    for model in body["models"]:
        entry = manifest["models"][model["name"]]
        digest = hashlib.sha256((synthetic_store.path / entry["file"]).read_bytes()).hexdigest()
        assert model["sha256"] == entry["sha256"] == digest
        assert model["version"] == entry["version"]
        assert model["rank_weight"] == RANK_WEIGHT[model["name"]]
        assert model["metrics"][0]["split"] == "synthetic.base->synthetic.test"
        assert model["n_parameters"] > 0 and model["hyperparameters"] == {"dim": 8}
        assert client.get(f"/models/{model['name']}").json() == model


def test_unknown_model_info_is_404(client: TestClient) -> None:
    r = client.get("/models/svd")
    assert r.status_code == 404 and r.json()["available"] == ["mf", "dense", "lstm"]


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert set(ready.json()["models"]) == {"mf", "dense", "lstm"}


def test_not_ready_until_the_lifespan_has_loaded_the_models(synthetic_store: SyntheticStore) -> None:
    # Without `with`, TestClient does not run the lifespan: the app serves, but has no registry.
    client = TestClient(create_app(Settings(models_dir=synthetic_store.path)))
    assert client.get("/health").status_code == 200
    r = client.get("/ready")
    assert r.status_code == 503 and "not been loaded" in r.json()["detail"]
    assert client.post("/predict/mf", json={"user_id": 101, "item_ids": [1001]}).status_code == 503
