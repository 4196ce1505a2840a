"""Request validation as properties: for any input the answer is exactly the expected 200, 404 or 422, never a
5xx; and every size limit (lists, k, ids, LSTM length, body bytes) answers 4xx JSON with a `detail`.

The expected status is computed independently of the service from the documented rules: shape and ranges
first (422), then known ids (404).
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.artifacts import SEQUENCE_LENGTH
from app.schemas import MAX_EXCLUDE, MAX_GENRES, MAX_ID, MAX_PAIR_ITEMS
from tests.conftest import ITEM_IDS, N_ITEMS, USER_IDS

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KNOWN_ITEMS = [int(i) for i in ITEM_IDS]
EDGE_INTS = [0, -1, 1, MAX_ID, MAX_ID + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]
ids = st.one_of(
    st.sampled_from(KNOWN_ITEMS),
    st.sampled_from(EDGE_INTS),
    st.integers(-(2**70), 2**70),
    st.integers(1, 2000),
)
stars = st.one_of(
    st.sampled_from([1, 5, 3.5, 0, 0.999, 5.001, 6, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _in_range(i: int) -> bool:
    return 1 <= i <= MAX_ID


def _post(client: TestClient, url: str, value: Any) -> Any:
    # allow_nan: NaN and Infinity are sent as the (non-standard) literals a careless client would send.
    body = json.dumps(value, allow_nan=True).encode()
    return client.post(url, content=body, headers={"content-type": "application/json"})


def _check(r: Any, expected: int) -> None:
    assert r.status_code == expected, (expected, r.status_code, r.text[:500])
    assert r.headers["content-type"] == "application/json"
    assert "detail" in r.json() or expected == 200


@PROPERTY
@given(user=st.one_of(st.sampled_from([int(u) for u in USER_IDS]), ids), items=st.lists(ids, max_size=12))
def test_pair_predictions_for_any_list_of_ints(client: TestClient, user: int, items: list[int]) -> None:
    r = _post(client, "/predict/mf", {"user_id": user, "item_ids": items})
    if not (_in_range(user) and 1 <= len(items) <= MAX_PAIR_ITEMS and all(map(_in_range, items))):
        _check(r, 422)
    elif user not in USER_IDS or not set(items) <= set(KNOWN_ITEMS):
        _check(r, 404)
        body = r.json()
        assert body.get("unknown_user_ids") or body.get("unknown_item_ids")
    else:
        _check(r, 200)
        predictions = r.json()["predictions"]
        assert [p["item_id"] for p in predictions] == items
        assert all(1 <= p["rating"] <= 5 for p in predictions)


@PROPERTY
@given(
    items=st.lists(st.one_of(st.sampled_from(KNOWN_ITEMS), ids), max_size=SEQUENCE_LENGTH + 2),
    ratings=st.one_of(st.none(), st.lists(stars, max_size=SEQUENCE_LENGTH + 2)),
)
def test_lstm_predictions_for_any_lengths_of_items_and_ratings(
    client: TestClient, items: list[int], ratings: list[float] | None
) -> None:
    body: dict[str, Any] = {"items": items} if ratings is None else {"items": items, "ratings": ratings}
    r = _post(client, "/predict/lstm", body)
    valid_ratings = ratings is None or (
        len(ratings) <= len(items) and all(math.isfinite(s) and 1 <= s <= 5 for s in ratings)
    )
    if not (1 <= len(items) <= SEQUENCE_LENGTH and all(map(_in_range, items)) and valid_ratings):
        _check(r, 422)
    elif not set(items) <= set(KNOWN_ITEMS):
        _check(r, 404)
    else:
        _check(r, 200)
        assert [p["item_id"] for p in r.json()["predictions"]] == items


@PROPERTY
@given(
    n_items=st.sampled_from([0, 1, 9, 10, 11, 50]),
    k=st.one_of(st.sampled_from([0, 1, N_ITEMS, N_ITEMS + 1]), st.sampled_from(EDGE_INTS)),
    offset=st.sampled_from([0, 3, -1, MAX_ID, MAX_ID + 1, 2**64]),
    exclude=st.one_of(st.none(), st.lists(ids, max_size=3)),
)
def test_session_recommendations_for_any_sizes(
    client: TestClient, n_items: int, k: int, offset: int, exclude: list[int] | None
) -> None:
    items = [KNOWN_ITEMS[i % N_ITEMS] for i in range(n_items)]
    r = _post(client, "/recommend", {"items": items, "k": k, "offset": offset, "exclude": exclude})
    shape_ok = n_items >= 1 and _in_range(k) and 0 <= offset <= MAX_ID
    if not (shape_ok and all(map(_in_range, exclude or []))):
        _check(r, 422)
    elif k > N_ITEMS:
        _check(r, 422)
        assert r.json()["max_k"] == N_ITEMS
    elif not set(exclude or []) <= set(KNOWN_ITEMS):
        _check(r, 404)
    else:
        _check(r, 200)
        assert len(r.json()["items"]) <= k


query_values = st.one_of(
    st.text(max_size=30),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["", "1e3", "0x10", "١٢", "1,2", "true", "9" * 5000]),
)


@PROPERTY
@given(
    user=query_values,
    k=query_values,
    offset=query_values,
    exclude=query_values,
    genres=query_values,
    model=st.sampled_from(["mf", "dense", "lstm", "svd", ""]),
)
def test_recommend_query_strings_are_never_a_server_error(
    client: TestClient, user: str, k: str, offset: str, exclude: str, genres: str, model: str
) -> None:
    params = {"k": k, "offset": offset, "exclude": exclude, "genres": genres, "model": model}
    r = client.get(f"/recommend/{quote(user, safe='')}", params=params)
    assert r.status_code in {200, 404, 405, 422} or (r.status_code == 307 and not user), r.text[:300]
    if r.status_code != 307:
        assert r.headers["content-type"] == "application/json"


@PROPERTY
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_are_never_a_server_error(client: TestClient, body: bytes) -> None:
    for url in ("/predict/mf", "/predict/lstm", "/recommend"):
        r = client.post(url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (url, body, r.text[:300])


# --- explicit limits ----------------------------------------------------------------------------------------


def test_integers_too_long_to_parse_are_422(client: TestClient) -> None:
    huge = "9" * 5000  # past Python's int parsing limit of 4300 digits
    headers = {"content-type": "application/json"}
    r = client.post("/predict/mf", content=f'{{"user_id": {huge}, "item_ids": [1001]}}', headers=headers)
    _check(r, 422)
    r = client.get("/recommend/101", params={"exclude": f"1001,{huge}"})
    _check(r, 422)
    assert "(1 to 2147483647)" in r.json()["detail"][0]["msg"] and len(r.text) < 2000
    _check(client.get(f"/recommend/{huge}"), 422)
    _check(client.get("/recommend/101", params={"k": huge}), 422)


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/predict/lstm", b'{"items": [1001], "ratings": [NaN]}'),
        ("/predict/lstm", b'{"items": [1001, 1002], "ratings": [1, 2, Infinity]}'),
        ("/predict/mf", b'{"user_id": -Infinity, "item_ids": [1001]}'),
        ("/recommend", b'{"items": [1001], "k": NaN}'),
    ],
)
def test_nan_and_infinity_are_not_json(client: TestClient, url: str, body: bytes) -> None:
    # Python's parser accepts them; the strict one (app.strict_json) rejects them as the invalid JSON they are.
    r = client.post(url, content=body, headers={"content-type": "application/json"})
    _check(r, 422)
    [issue] = r.json()["detail"]
    assert issue["type"] == "json_invalid" and "is not JSON" in issue["ctx"]["error"], r.text


def test_list_sizes_are_bounded(client: TestClient) -> None:
    many = ",".join(["1001"] * (MAX_EXCLUDE + 1))
    r = client.get("/recommend/101", params={"exclude": many})
    _check(r, 422)
    assert f"at most {MAX_EXCLUDE}" in r.json()["detail"][0]["msg"]
    r = client.get("/recommend/101", params={"genres": ",".join(["Drama"] * (MAX_GENRES + 1))})
    _check(r, 422)
    r = client.get("/recommend/101", params={"genres": "x" * 65})
    _check(r, 422)
    session = {"items": [1001], "exclude": [1002] * (MAX_EXCLUDE + 1)}
    _check(client.post("/recommend", json=session), 422)
    _check(client.post("/recommend", json={"items": [1001], "genres": ["Drama"] * (MAX_GENRES + 1)}), 422)
    _check(client.post("/recommend", json={"items": [1001], "genres": [""]}), 422)


def test_k_and_ids_out_of_range_say_what_is_allowed(client: TestClient) -> None:
    r = client.get("/recommend/101", params={"k": N_ITEMS + 1})
    _check(r, 422)
    assert (
        r.json()["detail"] == f"k={N_ITEMS + 1} is larger than the catalog ({N_ITEMS} items); ask for at most {N_ITEMS}"
    )
    for k in (0, -1, 2**63):
        _check(client.get("/recommend/101", params={"k": k}), 422)
    for user in (-1, 0, 2**63, 2**64):
        r = client.post("/predict/mf", json={"user_id": user, "item_ids": [1001]})
        _check(r, 422)
        assert r.json()["detail"][0]["loc"] == ["body", "user_id"]
    for item in (-5, 2**64):
        _check(client.get(f"/items/{item}"), 422)
        _check(client.post("/predict/lstm", json={"items": [item]}), 422)
