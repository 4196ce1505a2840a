"""Issue 18's features against the committed model store (real ML-100K models): title search finds real films,
a visitor folded in from a few real ratings looks like the user who gave them, batch agrees with single calls.

RECSYS_COMMITTED_STORE points these tests at another store, as in test_committed_store.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.registry import ModelRegistry
from app.settings import Settings
from tests.app.test_committed_store import STORE


@pytest.fixture(scope="module")
def store_client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=STORE))) as client:
        yield client


@pytest.fixture(scope="module")
def registry(store_client: TestClient) -> ModelRegistry:
    return store_client.app.state.registry_holder.get()  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("star wars", "Star Wars (1977)"),
        ("STAR WARS", "Star Wars (1977)"),
        ("the empire strikes", "Empire Strikes Back, The (1980)"),
        ("les miserables", "Misérables, Les (1995)"),
        ("ceremonie", "Cérémonie, La (1995)"),
        ("toy", "Toy Story (1995)"),  # prefix of the most rated "toy" title
    ],
)
def test_search_finds_real_titles(store_client: TestClient, query: str, first: str) -> None:
    body = store_client.get("/items", params={"q": query, "limit": 10}).json()
    assert body["items"][0]["title"] == first, body


def test_star_wars_search_lists_the_trilogy_by_popularity(store_client: TestClient) -> None:
    body = store_client.get("/items", params={"q": "star wars", "limit": 10}).json()
    assert [i["item_id"] for i in body["items"]][:1] == [50]


@pytest.mark.parametrize("model", ["mf", "lstm"])
def test_linear_views_of_the_real_models_are_exact(registry: ModelRegistry, model: str) -> None:
    view = registry.views[model]
    assert view.exact and view.max_error < 2e-3


@pytest.mark.parametrize("model", ["mf", "dense"])
def test_ten_real_ratings_fold_in_to_a_user_like_the_trained_one(registry: ModelRegistry, model: str) -> None:
    view = registry.views[model]
    loaded = registry.models[model]
    folded_corr, average_corr, folded_error, average_error = [], [], [], []
    for user_id in (196, 186, 22, 244, 166):
        user = registry.user_index(user_id)
        items, ratings = registry.history(user)
        folded = view.stars_of(view.fold_in(items[:10], ratings[:10]))[1:]
        average = view.stars_of(view.fold_in(items[:0], ratings[:0]))[1:]  # no ratings: the average known user
        with torch.inference_mode():
            trained = loaded.module.score_all(torch.tensor([user])).numpy()[1:]
        folded_corr.append(np.corrcoef(folded, trained)[0, 1])
        average_corr.append(np.corrcoef(average, trained)[0, 1])
        folded_error.append(np.abs(folded - trained).mean())
        average_error.append(np.abs(average - trained).mean())
    # Ten ratings order the catalog like the trained user, for each user better than the average user does.
    assert all(f > a for f, a in zip(folded_corr, average_corr, strict=True)), (folded_corr, average_corr)
    assert np.mean(folded_corr) > 0.9 and np.mean(folded_error) < np.mean(average_error)


def test_a_star_wars_fan_gets_personal_lists_from_every_model(store_client: TestClient) -> None:
    body = {"items": [50, 172, 181, 1, 127], "ratings": [5, 5, 4, 3, 5], "k": 5, "explain": True}
    for model in ("mf", "dense", "lstm"):
        r = store_client.post("/recommend", json={**body, "model": model})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 5 and not {i["item_id"] for i in items} & set(body["items"])
        assert all(i["because"] for i in items)


def test_batch_agrees_with_single_requests_on_real_users(store_client: TestClient) -> None:
    users = [196, 186, 22, 244, 166, 298, 115, 253, 305, 6]
    for model in ("mf", "dense", "lstm"):
        batch = store_client.post("/recommend/batch", json={"user_ids": users, "k": 10, "model": model}).json()
        for result in batch["results"]:
            single = store_client.get(f"/recommend/{result['user_id']}", params={"k": 10, "model": model}).json()
            assert [i["item_id"] for i in result["items"]] == [i["item_id"] for i in single["items"]], model
