"""POST /predict/{model} (mf, dense) and POST /predict/lstm."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.artifacts import SEQUENCE_LENGTH
from tests.conftest import ITEM_IDS, USER_IDS, SyntheticStore

TOL = 1e-3  # responses round stars to 4 decimals


def _eager(store: SyntheticStore, name: str, method: str, *args: Any) -> Any:
    """The eager network's answer as nested lists."""
    with torch.no_grad():
        out: torch.Tensor = getattr(store.networks[name], method)(*args)
    return out.tolist()


@pytest.mark.parametrize("model", ["mf", "dense"])
def test_pair_predictions_match_the_network_at_the_mapped_indices(
    client: TestClient, synthetic_store: SyntheticStore, model: str
) -> None:
    user, items = 105, [1010, 1001, 1050, 1010]  # duplicates allowed, order kept
    r = client.post(f"/predict/{model}", json={"user_id": user, "item_ids": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model
    assert body["model_version"].startswith(f"{model}-")
    assert body["user_id"] == user
    assert [p["item_id"] for p in body["predictions"]] == items
    expected = _eager(
        synthetic_store,
        model,
        "predict",
        torch.tensor([synthetic_store.user_index(user)] * len(items)),
        torch.tensor([synthetic_store.item_index(i) for i in items]),
    )
    got = [p["rating"] for p in body["predictions"]]
    assert got == pytest.approx(expected, abs=TOL)
    assert all(1.0 <= g <= 5.0 for g in got)


def test_pair_prediction_accepts_a_full_batch_of_1000(client: TestClient) -> None:
    items = [int(ITEM_IDS[i % len(ITEM_IDS)]) for i in range(1000)]
    r = client.post("/predict/mf", json={"user_id": int(USER_IDS[0]), "item_ids": items})
    assert r.status_code == 200
    assert len(r.json()["predictions"]) == 1000


def test_unknown_model_is_404_naming_the_available_ones(client: TestClient) -> None:
    r = client.post("/predict/svd", json={"user_id": 101, "item_ids": [1001]})
    assert r.status_code == 404
    assert "svd" in r.json()["detail"]
    assert r.json()["available"] == ["mf", "dense"]


def test_unknown_user_is_404_naming_it(client: TestClient) -> None:
    # 1 is an index, not a raw id: an id-mapping mix-up would answer 200 here.
    r = client.post("/predict/mf", json={"user_id": 1, "item_ids": [1001]})
    assert r.status_code == 404
    assert r.json()["unknown_user_ids"] == [1]
    assert "1" in r.json()["detail"]


def test_unknown_items_are_404_naming_all_of_them(client: TestClient) -> None:
    r = client.post("/predict/dense", json={"user_id": 101, "item_ids": [1001, 5, 99999, 5, 1002]})
    assert r.status_code == 404
    assert r.json()["unknown_item_ids"] == [5, 99999]
    assert "5" in r.json()["detail"] and "99999" in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": 101, "item_ids": []},
        {"user_id": 101, "item_ids": [1001] * 1001},
        {"user_id": 101},
        {"item_ids": [1001]},
        {"user_id": "101", "item_ids": [1001]},
        {"user_id": 101, "item_ids": [1001.5]},
        {"user_id": 101, "item_ids": [1001.0]},
        {"user_id": 101, "item_ids": ["1001"]},
        {"user_id": 101, "item_ids": [True]},
        {"user_id": 101, "item_ids": [-3]},
        {"user_id": 101, "item_ids": [2**70]},
        {"user_id": 101, "item_ids": 1001},
        {"user_id": 101, "item_ids": [1001], "items": [1]},
        [101, 1001],
    ],
)
def test_invalid_pair_bodies_are_422(client: TestClient, body: Any) -> None:
    r = client.post("/predict/mf", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post(
        "/predict/mf",
        content=b'{"user_id": 101, "item_ids": [1001',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"]


# --- LSTM ---------------------------------------------------------------------------------------------------


def _lstm(client: TestClient, items: list[int], ratings: list[float] | None = None) -> list[float]:
    body: dict[str, Any] = {"items": items}
    if ratings is not None:
        body["ratings"] = ratings
    r = client.post("/predict/lstm", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model"] == "lstm"
    assert [p["item_id"] for p in data["predictions"]] == items
    return [p["rating"] for p in data["predictions"]]


def test_lstm_left_pads_to_the_sequence_length_with_zeros(client: TestClient, synthetic_store: SyntheticStore) -> None:
    items, ratings = [1009, 1032, 1019], [4.0, 5.0]
    got = _lstm(client, items, ratings)
    pad = SEQUENCE_LENGTH - len(items)
    index = torch.tensor([[0] * pad + [synthetic_store.item_index(i) for i in items]])
    stars = torch.tensor([[0.0] * pad + ratings + [0.0]])
    expected = _eager(synthetic_store, "lstm", "predict", index, stars)[0][pad:]
    assert got == pytest.approx(expected, abs=TOL)
    assert all(1.0 <= g <= 5.0 for g in got)


def test_lstm_without_ratings_equals_all_ratings_unknown(client: TestClient) -> None:
    items = [1003, 1004, 1005]
    assert _lstm(client, items) == _lstm(client, items, [])


def test_lstm_accepts_the_full_sequence_length(client: TestClient) -> None:
    items = [int(i) for i in ITEM_IDS[:SEQUENCE_LENGTH]]
    assert len(_lstm(client, items, [3.0] * SEQUENCE_LENGTH)) == SEQUENCE_LENGTH


def test_lstm_position_k_depends_only_on_items_up_to_k_and_ratings_before_k(client: TestClient) -> None:
    items = [1011, 1022, 1033, 1044, 1005]
    ratings = [5.0, 1.0, 4.0, 2.0]
    base = _lstm(client, items, ratings)
    for k in range(len(items)):
        # A different item at k changes nothing before k ...
        changed_item = [*items[:k], 1049 if items[k] != 1049 else 1048, *items[k + 1 :]]
        after_item = _lstm(client, changed_item, ratings)
        assert after_item[:k] == base[:k]
        # ... and a different rating at k changes nothing up to and including k.
        if k < len(ratings):
            changed_rating = [*ratings[:k], 6.0 - ratings[k], *ratings[k + 1 :]]
            after_rating = _lstm(client, items, changed_rating)
            assert after_rating[: k + 1] == base[: k + 1]
    # The model does read earlier ratings: flipping the first one moves some later prediction.
    flipped = _lstm(client, items, [1.0, *ratings[1:]])
    assert flipped[1:] != base[1:]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"items": []}, "at least 1"),
        ({"items": [1001] * (SEQUENCE_LENGTH + 1)}, "at most 10"),
        ({"items": [1001, 1002], "ratings": [4, 4, 4]}, "ratings has 3 values but items only 2"),
        ({"items": [1001], "ratings": [0]}, "greater than 0"),
        ({"items": [1001], "ratings": [0.5]}, "outside this store's scale 1-5"),  # the manifest's scale
        ({"items": [1001], "ratings": [5.5]}, "outside this store's scale 1-5"),
        ({"items": [1001], "ratings": ["4"]}, "valid number"),
        ({"items": ["x"]}, "valid integer"),
        ({"ratings": [4]}, "Field required"),
    ],
)
def test_invalid_lstm_bodies_are_422_saying_what_to_fix(client: TestClient, body: Any, fragment: str) -> None:
    r = client.post("/predict/lstm", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.text


def test_lstm_unknown_items_are_404(client: TestClient) -> None:
    r = client.post("/predict/lstm", json={"items": [1001, 7, 8]})
    assert r.status_code == 404
    assert r.json()["unknown_item_ids"] == [7, 8]


def test_a_body_that_is_not_utf8_is_422(client: TestClient) -> None:
    r = client.post("/predict/mf", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "not valid UTF-8 JSON" in r.text


def test_wrong_method_is_json(client: TestClient) -> None:
    r = client.get("/predict/mf")
    assert r.status_code == 405 and r.json()["detail"]
