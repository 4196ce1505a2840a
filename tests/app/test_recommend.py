"""GET /recommend/{user_id} and POST /recommend: ranking, exclusions, filters, paging, explanations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.artifacts import SEQUENCE_LENGTH, context_length
from tests.conftest import ITEM_IDS, N_ITEMS, SyntheticStore

CONTEXT_LENGTH = context_length(SEQUENCE_LENGTH)  # the LSTM's context in a session

MODELS = ["mf", "dense", "lstm"]
# A user with more training ratings than the LSTM's context, so "the latest 9" is a real choice.
USER = 108


def _get(client: TestClient, user: int = USER, **params: Any) -> dict[str, Any]:
    r = client.get(f"/recommend/{user}", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _expected_stars(store: SyntheticStore, model: str, user: int) -> np.ndarray:
    """Stars for every item index, computed from the eager network and the raw training data."""
    network = store.networks[model]
    with torch.no_grad():
        # Every model scores a known user with score_all; the LSTM's from its taste after the whole history.
        out = network.score_all(torch.tensor([store.user_index(user)]))  # type: ignore[operator]
    return np.asarray(out.tolist())


def _expected_scores(store: SyntheticStore, model: str, user: int) -> np.ndarray:
    """Ranking scores for every item index, from the eager network."""
    network = store.networks[model]
    with torch.no_grad():
        out = network.rank_all(torch.tensor([store.user_index(user)]))  # type: ignore[operator]
    return np.asarray(out.tolist())


def test_the_test_user_has_a_long_history(synthetic_store: SyntheticStore) -> None:
    assert len(synthetic_store.history(USER)[0]) > CONTEXT_LENGTH


@pytest.mark.parametrize("model", MODELS)
def test_ranking_is_by_the_ranking_score_best_first_with_stars_beside(
    client: TestClient, synthetic_store: SyntheticStore, model: str
) -> None:
    body = _get(client, model=model, k=N_ITEMS)
    assert body["user_id"] == USER and body["model"] == model and body["strategy"] == "personalized"
    assert body["model_version"].startswith(model)
    seen = set(synthetic_store.history(USER)[0])
    assert body["total"] == N_ITEMS - len(seen)
    returned = body["items"]
    assert len(returned) == body["total"]
    stars = _expected_stars(synthetic_store, model, USER)
    expected = _expected_scores(synthetic_store, model, USER)
    for item in returned:
        index = synthetic_store.item_index(item["item_id"])
        assert item["rating"] == pytest.approx(stars[index], abs=1e-3)
        assert item["score"] == pytest.approx(expected[index], abs=1e-3)
    scores = [item["score"] for item in returned]
    assert scores == sorted(scores, reverse=True)
    # And it is the true top: nothing excluded scores above the last item returned.
    best = sorted((expected[i], -i) for i in range(1, N_ITEMS + 1) if synthetic_store.item_raw(i) not in seen)[::-1]
    assert [synthetic_store.item_raw(-i) for _, i in best[:5]] == [item["item_id"] for item in returned[:5]]


@pytest.mark.parametrize("model", MODELS)
def test_seen_items_are_excluded_unless_asked(client: TestClient, synthetic_store: SyntheticStore, model: str) -> None:
    seen = set(synthetic_store.history(USER)[0])
    excluded = _get(client, model=model, k=N_ITEMS)
    assert not seen & {i["item_id"] for i in excluded["items"]}
    everything = _get(client, model=model, k=N_ITEMS, exclude_seen=False)
    assert everything["total"] == N_ITEMS
    assert {i["item_id"] for i in everything["items"]} == set(ITEM_IDS.tolist())


def test_item_fields_come_from_the_catalog(client: TestClient, synthetic_store: SyntheticStore) -> None:
    items = _get(client, k=N_ITEMS, exclude_seen=False)["items"]
    frame = synthetic_store.data.items.set_index("item_id")
    for item in items:
        row = frame.loc[item["item_id"]]
        assert item["title"] == row["title"]
        assert item["genres"] == list(row["genres"])
        assert item["year"] == (None if item["item_id"] == 1050 else int(row["year"]))
        assert item["because"] is None


def test_genres_filter_keeps_items_with_any_of_them(client: TestClient, synthetic_store: SyntheticStore) -> None:
    frame = synthetic_store.data.items
    wanted = {"Comedy", "Sci-Fi"}
    matching = {int(r.item_id) for r in frame.itertuples() if wanted & set(r.genres)}
    body = _get(client, k=N_ITEMS, exclude_seen=False, genres="comedy,Sci-Fi")
    assert body["total"] == len(matching)
    assert {i["item_id"] for i in body["items"]} == matching
    # Repeated parameters mean the same as a comma-separated list.
    repeated = client.get(
        f"/recommend/{USER}",
        params=[("genres", "Comedy"), ("genres", "Sci-Fi"), ("k", "5"), ("exclude_seen", "false")],
    )
    assert [i["item_id"] for i in repeated.json()["items"]] == [i["item_id"] for i in body["items"][:5]]


def test_exclude_removes_those_items_and_counts(client: TestClient) -> None:
    full = _get(client, k=5, exclude_seen=False)
    top_two = [i["item_id"] for i in full["items"][:2]]
    body = _get(client, k=5, exclude_seen=False, exclude=",".join(map(str, top_two)))
    assert body["total"] == full["total"] - 2
    assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in full["items"][2:]] + [
        i["item_id"] for i in _get(client, k=7, exclude_seen=False)["items"][5:7]
    ]


def test_offset_pages_through_the_ranking_without_gaps_or_repeats(client: TestClient) -> None:
    for model in MODELS:
        whole = [i["item_id"] for i in _get(client, model=model, k=N_ITEMS)["items"]]
        paged: list[int] = []
        for offset in range(0, len(whole) + 7, 7):
            page = _get(client, model=model, k=7, offset=offset)
            assert page["offset"] == offset and page["total"] == len(whole)
            paged += [i["item_id"] for i in page["items"]]
        assert paged == whole


def test_offset_past_the_end_is_an_empty_page(client: TestClient) -> None:
    body = _get(client, k=3, offset=10_000)
    assert body["items"] == [] and body["total"] > 0


def test_explain_names_similar_highly_rated_training_items(client: TestClient, synthetic_store: SyntheticStore) -> None:
    items, ratings = synthetic_store.history(USER)
    liked = {i for i, r in zip(items, ratings, strict=True) if r >= 4}
    assert liked, "the synthetic user needs some 4+ ratings"
    network = synthetic_store.networks["mf"]
    with torch.no_grad():
        embeddings = network.item_embeddings().numpy()  # type: ignore[operator]
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    body = _get(client, model="mf", k=5, explain=True)
    for item in body["items"]:
        because = item["because"]
        assert 1 <= len(because) <= 3
        assert {b["item_id"] for b in because} <= liked
        rec = unit[synthetic_store.item_index(item["item_id"])]
        sims = sorted((float(unit[synthetic_store.item_index(i)] @ rec), i) for i in liked if i != item["item_id"])[
            ::-1
        ]
        assert [b["item_id"] for b in because] == [i for _, i in sims[: len(because)]]
        for b, (sim, _) in zip(because, sims, strict=False):
            assert b["similarity"] == pytest.approx(sim, abs=1e-3)
            assert b["title"].startswith("Synthetic Movie")


def test_explain_never_explains_an_item_by_itself(client: TestClient) -> None:
    body = _get(client, k=N_ITEMS, exclude_seen=False, explain=True)
    for item in body["items"]:
        assert item["item_id"] not in {b["item_id"] for b in item["because"]}


def test_unknown_user_is_404_unless_popular_fallback(client: TestClient, synthetic_store: SyntheticStore) -> None:
    r = client.get("/recommend/5")  # an index, not a raw id
    assert r.status_code == 404 and r.json()["unknown_user_ids"] == [5]
    body = _get(client, user=5, fallback="popular", k=N_ITEMS)
    assert body["strategy"] == "popular" and body["model_version"] is None and body["total"] == N_ITEMS
    counts = np.bincount(synthetic_store.train.item_ids, minlength=N_ITEMS + 1)
    expected = sorted(range(1, N_ITEMS + 1), key=lambda i: (-counts[i], i))
    assert [i["item_id"] for i in body["items"]] == [synthetic_store.item_raw(i) for i in expected]
    assert [i["score"] for i in body["items"]] == [float(counts[i]) for i in expected]
    assert all(i["rating"] is None for i in body["items"])


def test_popular_fallback_applies_filters_and_paging(client: TestClient) -> None:
    whole = _get(client, user=5, fallback="popular", k=N_ITEMS, genres="Drama", exclude="1001")
    page = _get(client, user=5, fallback="popular", k=3, offset=2, genres="Drama", exclude="1001")
    assert page["total"] == whole["total"]
    assert [i["item_id"] for i in page["items"]] == [i["item_id"] for i in whole["items"][2:5]]
    assert 1001 not in {i["item_id"] for i in whole["items"]}
    assert all("Drama" in i["genres"] for i in whole["items"])


def test_fallback_does_not_change_a_known_users_recommendations(client: TestClient) -> None:
    assert _get(client, fallback="popular") == _get(client)


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"model": "svd"}, 404, "available: mf, dense, lstm"),
        ({"k": 0}, 422, "greater than or equal to 1"),
        ({"k": -1}, 422, "greater than or equal to 1"),
        ({"k": N_ITEMS + 1}, 422, f"larger than the catalog ({N_ITEMS} items)"),
        ({"k": "ten"}, 422, "valid integer"),
        ({"offset": -1}, 422, "greater than or equal to 0"),
        ({"genres": "Comedy,Western"}, 422, "valid genres: unknown, Action, Comedy, Drama, Sci-Fi"),
        ({"exclude": "1001,abc"}, 422, "not ids: 'abc'"),
        ({"exclude": "1001,-4"}, 422, "not ids: '-4'"),
        ({"exclude": "1001,77,78"}, 404, "unknown item ids: 77, 78"),
        ({"fallback": "random"}, 422, "popular"),
        ({"exclude_seen": "maybe"}, 422, "valid boolean"),
    ],
)
def test_bad_recommend_parameters(client: TestClient, params: dict[str, Any], status: int, fragment: str) -> None:
    r = client.get(f"/recommend/{USER}", params=params)
    assert r.status_code == status, r.text
    assert fragment in r.text


@pytest.mark.parametrize("user", ["abc", "1.5", "0", "-3", str(2**64)])
def test_bad_user_ids_are_422(client: TestClient, user: str) -> None:
    assert client.get(f"/recommend/{user}").status_code == 422


# --- anonymous sessions -------------------------------------------------------------------------------------


def test_session_uses_the_last_nine_items_as_context(client: TestClient) -> None:
    tail = [1010, 1011, 1012, 1013, 1014, 1015, 1016, 1017, 1018]
    short = client.post("/recommend", json={"items": tail, "k": 5, "exclude": [1001, 1002]}).json()
    longer = client.post("/recommend", json={"items": [1001, 1002, *tail], "k": 5}).json()
    # Same context, same candidates (1001 and 1002 excluded either way): same answer.
    assert short["items"] == longer["items"]


def test_session_items_are_never_recommended_and_filters_apply(client: TestClient) -> None:
    session = [1003, 1005, 1007]
    body = client.post(
        "/recommend", json={"items": session, "k": N_ITEMS - 3, "genres": ["Drama"], "exclude": [1009]}
    ).json()
    returned = {i["item_id"] for i in body["items"]}
    assert not returned & {*session, 1009}
    assert all("Drama" in i["genres"] for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    page = client.post(
        "/recommend", json={"items": session, "k": 2, "offset": 3, "genres": ["Drama"], "exclude": [1009]}
    )
    assert [i["item_id"] for i in page.json()["items"]] == [i["item_id"] for i in body["items"][3:5]]


def test_session_ranks_by_rank_next_with_score_next_stars(client: TestClient, synthetic_store: SyntheticStore) -> None:
    session, ratings = [1003, 1005, 1007], [5.0, 2.0]
    body = client.post("/recommend", json={"items": session, "ratings": ratings, "k": 6}).json()
    assert body["strategy"] == "session"
    items = torch.zeros((1, CONTEXT_LENGTH), dtype=torch.int64)
    items[0, -3:] = torch.tensor([synthetic_store.item_index(i) for i in session])
    known = torch.zeros((1, CONTEXT_LENGTH))
    known[0, -3:-1] = torch.tensor(ratings)
    network = synthetic_store.networks["lstm"]
    with torch.no_grad():
        scores = network.rank_next(items, known).tolist()  # type: ignore[operator]
        stars = network.score_next(items, known).tolist()  # type: ignore[operator]
    for item in body["items"]:
        index = synthetic_store.item_index(item["item_id"])
        assert item["score"] == pytest.approx(scores[index], abs=1e-3)
        assert item["rating"] == pytest.approx(stars[index], abs=1e-3)
    best = sorted(
        ((scores[i], -i) for i in range(1, N_ITEMS + 1) if synthetic_store.item_raw(i) not in session), reverse=True
    )
    assert [item["item_id"] for item in body["items"]] == [synthetic_store.item_raw(-i) for _, i in best[:6]]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"items": [1001], "model": "svd"}, 422, "'lstm'"),  # mf and dense fold a visitor in
        ({"items": []}, 422, "at least 1"),
        ({"items": [1001], "ratings": [4, 4]}, 422, "ratings has 2 values but items only 1"),
        ({"items": [1001], "k": 0}, 422, "greater than or equal to 1"),
        ({"items": [1001], "k": N_ITEMS + 1}, 422, "larger than the catalog"),
        ({"items": [1001], "offset": -1}, 422, "greater than or equal to 0"),
        ({"items": [1001], "genres": ["Noir"]}, 422, "valid genres"),
        ({"items": [1001, 3]}, 404, "unknown item id: 3"),
        ({"items": [1001], "exclude": [4]}, 404, "unknown item id: 4"),
    ],
)
def test_bad_session_requests(client: TestClient, body: dict[str, Any], status: int, fragment: str) -> None:
    r = client.post("/recommend", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.text


def test_scores_are_finite_numbers(client: TestClient) -> None:
    for model in MODELS:
        for item in _get(client, model=model, k=N_ITEMS, exclude_seen=False)["items"]:
            assert math.isfinite(item["score"]) and 1.0 <= item["rating"] <= 5.0
