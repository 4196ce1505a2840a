"""`diversity` on the recommend endpoints: maximal marginal relevance over the model's item embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.diversity import intra_list_diversity, mmr_order
from tests.conftest import N_ITEMS, SyntheticStore

USER = 108


def _ids(body: dict[str, Any]) -> list[int]:
    return [i["item_id"] for i in body["items"]]


def _get(client: TestClient, **params: Any) -> dict[str, Any]:
    r = client.get(f"/recommend/{USER}", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_mmr_trades_relevance_for_distance_between_clusters() -> None:
    # Items 0-4 are near-duplicates with the best scores; 5-9 point elsewhere with lower ones.
    unit = np.zeros((10, 2))
    unit[:5] = [1.0, 0.0]
    unit[5:] = [0.0, 1.0]
    relevance = np.array([10, 9.9, 9.8, 9.7, 9.6, 5, 4.9, 4.8, 4.7, 4.6])
    assert mmr_order(relevance, unit, 4, 0.0).tolist() == [0, 1, 2, 3]
    # Once both clusters are represented, every candidate is as close to the list: relevance decides again.
    assert mmr_order(relevance, unit, 4, 0.6).tolist() == [0, 5, 1, 2]
    assert mmr_order(relevance, unit, 3, 1.0)[:2].tolist() == [0, 5]


def test_intra_list_diversity_is_mean_pairwise_cosine_distance() -> None:
    unit = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert intra_list_diversity(unit, np.array([[1, 3]])) == pytest.approx(0.0)
    assert intra_list_diversity(unit, np.array([[1, 2]])) == pytest.approx(1.0)
    assert intra_list_diversity(unit, np.array([[1, 2, 3]])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("model", ["mf", "dense", "lstm"])
def test_zero_diversity_is_the_plain_ranking(client: TestClient, model: str) -> None:
    assert _get(client, model=model, k=8, diversity=0) == _get(client, model=model, k=8)


@pytest.mark.parametrize("model", ["mf", "dense", "lstm"])
def test_diversity_reranks_the_same_candidates_and_spreads_the_list(
    client: TestClient, synthetic_store: SyntheticStore, model: str
) -> None:
    from app.registry import ModelRegistry

    plain = _get(client, model=model, k=8)
    diverse = _get(client, model=model, k=8, diversity=0.8)
    assert diverse["total"] == plain["total"] and len(diverse["items"]) == 8
    assert _ids(diverse)[0] == _ids(plain)[0]  # the first pick is the most relevant
    assert _ids(diverse) != _ids(plain)
    seen = set(synthetic_store.history(USER)[0])
    assert not set(_ids(diverse)) & seen and len(set(_ids(diverse))) == 8
    unit = ModelRegistry.load(synthetic_store.path).models[model].unit_embeddings
    index = [[synthetic_store.item_index(i) for i in _ids(body)] for body in (plain, diverse)]
    assert intra_list_diversity(unit, np.array([index[1]])) > intra_list_diversity(unit, np.array([index[0]]))


def test_diverse_pages_continue_one_another(client: TestClient) -> None:
    whole = _ids(_get(client, k=10, diversity=0.5))
    assert _ids(_get(client, k=5, diversity=0.5)) + _ids(_get(client, k=5, offset=5, diversity=0.5)) == whole


def test_diversity_on_sessions_visitors_and_batches(client: TestClient) -> None:
    session = {"items": [1004, 1010, 1020], "ratings": [5, 4, 2], "k": 6}
    for model in ("lstm", "mf", "dense"):
        plain = client.post("/recommend", json={**session, "model": model}).json()
        diverse = client.post("/recommend", json={**session, "model": model, "diversity": 0.9}).json()
        assert _ids(diverse)[0] == _ids(plain)[0] and _ids(diverse) != _ids(plain)
    batch = client.post("/recommend/batch", json={"user_ids": [USER], "k": 8, "diversity": 0.8}).json()
    assert [i["item_id"] for i in batch["results"][0]["items"]] == _ids(_get(client, k=8, diversity=0.8))


@pytest.mark.parametrize("value", [-0.1, 1.01, "x"])
def test_diversity_outside_zero_to_one_is_refused(client: TestClient, value: object) -> None:
    assert client.get(f"/recommend/{USER}", params={"diversity": value}).status_code == 422
    assert client.post("/recommend", json={"items": [1001], "diversity": value}).status_code == 422


def test_full_diversity_still_returns_every_candidate_once(client: TestClient, synthetic_store: SyntheticStore) -> None:
    body = _get(client, k=N_ITEMS, diversity=1.0)
    assert len(_ids(body)) == body["total"] == len(set(_ids(body)))
