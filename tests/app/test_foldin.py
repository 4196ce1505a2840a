"""New users from a few ratings: the linear views built at load, POST /recommend and POST /predict/{mf,dense}
for a visitor (issue 18)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app import foldin
from app.foldin import LinearView
from app.main import create_app
from app.registry import ModelRegistry
from app.settings import Settings
from tests.conftest import ITEM_IDS, N_ITEMS, N_USERS, USER_IDS, SyntheticStore

PAIR = ["mf", "dense"]
RATED = [int(i) for i in ITEM_IDS[[3, 8, 15, 22, 40]]]
STARS = [5.0, 4.0, 1.0, 5.0, 2.0]


@pytest.fixture(scope="module")
def registry(synthetic_store: SyntheticStore) -> ModelRegistry:
    return ModelRegistry.load(synthetic_store.path)


def _score_all(store: SyntheticStore, model: str, user: int) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(store.networks[model].score_all(torch.tensor([user])).tolist())  # type: ignore[operator]


@pytest.mark.parametrize("model", ["mf", "lstm"])
def test_the_view_of_a_linear_model_reproduces_score_all_for_every_user(
    registry: ModelRegistry, synthetic_store: SyntheticStore, model: str
) -> None:
    view = registry.views[model]
    assert view.exact and view.max_error < 2e-3
    stars = view.stars(np.arange(1, N_USERS + 1))
    for user in range(1, N_USERS + 1):
        np.testing.assert_allclose(stars[user - 1, 1:], _score_all(synthetic_store, model, user)[1:], atol=2e-3)


def test_the_dense_view_is_an_approximation_and_says_so(registry: ModelRegistry) -> None:
    view = registry.views["dense"]
    assert not view.exact and view.max_error > 0


@pytest.mark.parametrize("model", ["mf", "lstm", "dense"])
def test_folding_in_a_known_users_own_predictions_with_little_noise_recovers_that_user(
    registry: ModelRegistry, model: str
) -> None:
    # Given a user's predicted stars for every item and near-certain ratings, the posterior mean is that user.
    view: LinearView = dataclasses.replace(registry.views[model], noise=1e-8)
    user = 7
    assert view.coef is not None
    target = np.clip(view.basis @ view.coef[user] + view.offset, 1, 5)
    items = np.flatnonzero((target > 1.01) & (target < 4.99))
    coef = view.fold_in(items, target[items])
    np.testing.assert_allclose(view.stars_of(coef)[1:], target[1:], atol=1e-3)


def test_no_ratings_fold_in_to_the_average_known_user(registry: ModelRegistry) -> None:
    view = registry.views["mf"]
    coef = view.fold_in(np.zeros(0, dtype=np.int64), np.zeros(0))
    assert view.coef is not None
    np.testing.assert_allclose(coef, view.coef[1:].mean(axis=0))


def test_a_store_too_large_to_score_whole_at_load_fits_its_view_on_a_sample_of_users(
    synthetic_store: SyntheticStore, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 25M-sized store's users x items (10 G stars) cannot be scored at load; here 8 of the 20 users fit the view.
    monkeypatch.setattr(foldin, "MAX_VIEW_CELLS", 8 * N_ITEMS)
    sampled = ModelRegistry.load(synthetic_store.path)
    for model in ("mf", "lstm", "dense"):
        view, whole = sampled.views[model], registry.views[model]
        assert view.coef is None and not view.exact, "a sampled view never stands in for score_all"
        assert view.rank is None or view.rank.users.shape == whole.rank.users.shape  # type: ignore[union-attr]
        # Folding in a visitor still works, and a linear model's offset and basis are the exact ones.
        stars = view.stars_of(view.fold_in(np.array([4, 9]), np.array([5.0, 1.0])))
        assert stars.shape == (N_ITEMS + 1,) and np.all((stars[1:] >= 1) & (stars[1:] <= 5))
        if model != "dense":
            np.testing.assert_allclose(view.basis, whole.basis)
            np.testing.assert_allclose(view.offset, whole.offset, atol=1e-3)  # stars, float32 noise
    # Batch scoring of known users falls back to the module, with the same answers.
    with TestClient(create_app(Settings(models_dir=synthetic_store.path))) as client:
        assert client.app.state.registry_holder.get().views["mf"].coef is None  # type: ignore[attr-defined]
        _same_batch_as_single_requests(client)


def _same_batch_as_single_requests(client: TestClient) -> None:
    r = client.post("/recommend/batch", json={"user_ids": [int(u) for u in USER_IDS[:3]], "model": "mf", "k": 5})
    assert r.status_code == 200 and r.json()["method"] == "loop", r.text
    for result in r.json()["results"]:
        single = client.get(f"/recommend/{result['user_id']}", params={"model": "mf", "k": 5}).json()
        assert [i["item_id"] for i in result["items"]] == [i["item_id"] for i in single["items"]]


def _visitor(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/recommend", json={"items": RATED, "ratings": STARS, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", PAIR)
def test_a_visitor_gets_a_folded_in_ranking_from_a_pair_model(
    client: TestClient, registry: ModelRegistry, model: str
) -> None:
    body = _visitor(client, model=model, k=N_ITEMS - len(RATED))
    assert body["strategy"] == "fold-in" and body["model"] == model and body["user_id"] is None
    returned = [i["item_id"] for i in body["items"]]
    assert not set(returned) & set(RATED) and len(returned) == body["total"] == N_ITEMS - len(RATED)
    # The ranking is the folded-in stars plus the model's popularity blend, best first.
    view = registry.views[model]
    stars = view.stars_of(view.fold_in(np.array([i - 1000 for i in RATED]), np.array(STARS)))
    for item in body["items"]:
        assert item["rating"] == pytest.approx(stars[item["item_id"] - 1000], abs=1e-3)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("model", PAIR)
def test_rating_a_film_higher_raises_its_own_predicted_stars(client: TestClient, model: str) -> None:
    def predicted(stars: float) -> float:
        body = {"items": RATED, "ratings": [stars, *STARS[1:]], "item_ids": [RATED[0]]}
        r = client.post(f"/predict/{model}", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["folded_in"] == len(RATED) and "user_id" not in r.json()
        return float(r.json()["predictions"][0]["rating"])

    assert predicted(5.0) > predicted(1.0)


def test_different_ratings_give_different_recommendations(client: TestClient) -> None:
    fans = _visitor(client, model="mf", k=10)
    critics = _visitor(client, model="mf", k=10, ratings=[6 - s for s in STARS])
    assert [i["item_id"] for i in fans["items"]] != [i["item_id"] for i in critics["items"]]


def test_unrated_items_are_left_out_but_do_not_change_the_user(client: TestClient) -> None:
    extra = int(ITEM_IDS[30])
    plain = _visitor(client, model="mf", k=N_ITEMS - len(RATED) - 1, exclude=[extra])
    with_unrated = _visitor(client, model="mf", k=N_ITEMS - len(RATED) - 1, items=[*RATED, extra])
    assert with_unrated["items"] == plain["items"]


def test_visitor_explanations_name_films_rated_four_or_more(client: TestClient) -> None:
    body = _visitor(client, model="dense", k=5, explain=True)
    liked = {i for i, s in zip(RATED, STARS, strict=True) if s >= 4}
    assert all(b["item_id"] in liked for item in body["items"] for b in item["because"])
    assert any(item["because"] for item in body["items"])


def test_the_lstm_still_reads_the_items_as_a_session(client: TestClient) -> None:
    assert _visitor(client, k=3)["strategy"] == "session"
    assert _visitor(client, k=3, model="lstm")["strategy"] == "session"


def test_known_user_prediction_is_unchanged(client: TestClient, synthetic_store: SyntheticStore) -> None:
    r = client.post("/predict/mf", json={"user_id": 105, "item_ids": [1003]})
    assert r.status_code == 200 and r.json()["user_id"] == 105
    expected = _score_all(synthetic_store, "mf", synthetic_store.user_index(105))[3]
    assert r.json()["predictions"][0]["rating"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/predict/mf", {"items": [1001, 1002], "ratings": [5], "item_ids": [1003]}, 422),  # one rating each
        ("/predict/mf", {"items": [1001], "ratings": [5], "item_ids": [99]}, 404),
        ("/predict/mf", {"items": [1001], "ratings": [6], "item_ids": [1003]}, 422),
        ("/predict/lstm", {"items": [1001], "ratings": [5], "item_ids": [1003]}, 422),
        ("/recommend", {"items": [1001], "ratings": [5], "model": "svd"}, 422),
        ("/recommend", {"items": [99], "ratings": [5], "model": "mf"}, 404),
    ],
)
def test_invalid_visitors_are_refused(client: TestClient, path: str, body: dict[str, Any], status: int) -> None:
    assert client.post(path, json=body).status_code == status
