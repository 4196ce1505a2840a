"""GET /items?q=: title search, case- and accent-insensitive, by match then popularity (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.services.search import match_tier, normalise, title_forms
from tests.conftest import N_ITEMS, SyntheticStore


def test_normalise_drops_case_accents_and_punctuation() -> None:
    assert normalise("Amélie") == normalise("AMELIE") == "amelie"
    assert normalise("  L.A. Confidential ") == "l a confidential"
    assert normalise("Á köldum klaka") == "a koldum klaka"


def test_trailing_articles_match_either_way_round() -> None:
    assert title_forms("Empire Strikes Back, The (1980)") == ("empire strikes back the", "the empire strikes back")
    assert "les miserables" in title_forms("Misérables, Les (1995)")
    assert title_forms("Star Wars (1977)") == ("star wars",)


def test_match_tiers_order_exact_prefix_word_words_substring() -> None:
    form = "star wars"
    assert match_tier("star wars", ["star", "wars"], form) == 0
    assert match_tier("star", ["star"], form) == 1
    assert match_tier("wars", ["wars"], form) == 2
    assert match_tier("wars star", ["wars", "star"], form) == 3
    assert match_tier("tar w", ["tar", "w"], form) == 4
    assert match_tier("trek", ["trek"], form) == 5


def test_search_ranks_by_match_then_popularity(client: TestClient, synthetic_store: SyntheticStore) -> None:
    r = client.get("/items", params={"q": "SYNTHETIC movie", "limit": 100})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == N_ITEMS and len(body["items"]) == N_ITEMS
    counts = [i["n_ratings"] for i in body["items"]]
    assert counts == sorted(counts, reverse=True)  # every title matches the same way: most rated first
    expected = np.bincount(synthetic_store.train.item_ids, minlength=N_ITEMS + 1)
    assert all(i["n_ratings"] == expected[synthetic_store.item_index(i["item_id"])] for i in body["items"])


def test_an_exact_title_comes_first(client: TestClient) -> None:
    body = client.get("/items", params={"q": "synthetic movie 1010", "limit": 3}).json()
    assert body["items"][0]["item_id"] == 1010 and body["total"] == 1
    assert client.get("/items", params={"q": "movie 1010"}).json()["items"][0]["item_id"] == 1010


def test_limit_and_no_match(client: TestClient) -> None:
    assert len(client.get("/items", params={"q": "synthetic", "limit": 4}).json()["items"]) == 4
    body = client.get("/items", params={"q": "star wars"}).json()
    assert body == {"query": "star wars", "total": 0, "items": []}


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": 0}, {"q": "a", "limit": 101}])
def test_invalid_searches_are_refused(client: TestClient, params: dict[str, object]) -> None:
    assert client.get("/items", params=params).status_code == 422


def test_item_lookup_still_works_beside_search(client: TestClient) -> None:
    assert client.get("/items/1001").json()["item_id"] == 1001
