"""POST /recommend/batch and `python -m app.batch`: the same answers as one GET /recommend per user, from one
batched model call where the model has a batched form (issue 18)."""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app import batch as command
from app.ranking import Filters
from app.registry import ModelRegistry
from app.services.batch import top_for_users, top_rows
from tests.conftest import N_ITEMS, N_USERS, USER_IDS, SyntheticStore

MODELS = ["mf", "dense", "lstm"]
USERS = [int(u) for u in USER_IDS]


@pytest.fixture(scope="module")
def registry(synthetic_store: SyntheticStore) -> ModelRegistry:
    return ModelRegistry.load(synthetic_store.path)


def _batch(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/recommend/batch", json={"user_ids": USERS, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "filters",
    [{"k": 5}, {"k": 4, "offset": 3, "genres": ["Comedy"]}, {"k": 6, "exclude": [1001, 1002, 1003]}],
)
def test_batch_equals_one_request_per_user(client: TestClient, model: str, filters: dict[str, Any]) -> None:
    body = _batch(client, model=model, **filters)
    assert body["method"] == ("loop" if model == "dense" else "matrix")
    assert [r["user_id"] for r in body["results"]] == USERS
    for result in body["results"]:
        single = client.get(f"/recommend/{result['user_id']}", params={"model": model, **filters}).json()
        assert result["total"] == single["total"]
        assert [i["item_id"] for i in result["items"]] == [i["item_id"] for i in single["items"]]
        for mine, theirs in zip(result["items"], single["items"], strict=True):
            assert mine["score"] == pytest.approx(theirs["score"], abs=2e-3)
            assert mine["rating"] == pytest.approx(theirs["rating"], abs=2e-3)


def test_batch_can_include_seen_items(client: TestClient) -> None:
    body = _batch(client, k=N_ITEMS, exclude_seen=False)
    assert all(r["total"] == N_ITEMS and len(r["items"]) == N_ITEMS for r in body["results"])


class _NoPerUserCalls:
    def score_all(self, user: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the batched path called score_all")


@pytest.mark.parametrize("model", ["mf", "lstm"])
def test_linear_models_score_a_batch_without_calling_the_module_per_user(registry: ModelRegistry, model: str) -> None:
    loaded = registry.models[model]
    expected = top_for_users(registry, loaded, np.arange(1, N_USERS + 1), Filters(k=5))
    silent = copy.copy(loaded)  # the same handler, its module replaced by one that fails on a per-user call
    silent.module = _NoPerUserCalls()  # type: ignore[assignment]
    top = top_for_users(registry, silent, np.arange(1, N_USERS + 1), Filters(k=5))
    assert top.method == "matrix"
    np.testing.assert_array_equal(top.items, expected.items)


def test_top_rows_breaks_ties_by_lower_index_like_a_stable_sort() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 300)).astype(np.float32)  # many ties, runs longer than the margin
    scores[:5] = 1.0
    scores[7, ::3] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(top_rows(scores, 10), expected)


def test_unknown_users_fail_the_batch_naming_each(client: TestClient) -> None:
    r = client.post("/recommend/batch", json={"user_ids": [USERS[0], 99999, 88888, 99999]})
    assert r.status_code == 404 and r.json()["unknown_user_ids"] == [99999, 88888]


@pytest.mark.parametrize(
    "body",
    [
        {"user_ids": []},
        {"user_ids": list(range(1, 1002))},
        {"user_ids": [USERS[0]], "k": 0},
        {"user_ids": [USERS[0]], "diversity": 2},
        {"user_ids": [USERS[0]], "model": "svd"},
        {"user_ids": ["101"]},
    ],
)
def test_invalid_batches_are_refused(client: TestClient, body: dict[str, Any]) -> None:
    assert client.post("/recommend/batch", json=body).status_code == 422


def test_a_thousand_users_are_accepted(client: TestClient) -> None:
    r = client.post("/recommend/batch", json={"user_ids": (USERS * 50)[:1000], "k": 2})
    assert r.status_code == 200 and len(r.json()["results"]) == 1000


@pytest.mark.parametrize("model", MODELS)
def test_the_command_writes_every_users_top_k(
    client: TestClient, synthetic_store: SyntheticStore, tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "recs.csv"
    argv = ["--store", str(synthetic_store.path), "--model", model, "--k", "3", "--out", str(out), "--genres", "Drama"]
    assert command.main(argv) == 0
    captured = capsys.readouterr()
    assert "100%" in captured.err and f"of {N_USERS} users" in captured.out  # the progress bar, the summary
    with out.open() as f:
        rows = list(csv.DictReader(f))
    expected = _batch(client, model=model, k=3, genres=["Drama"])
    written = [(int(r["user_id"]), int(r["rank"]), int(r["item_id"])) for r in rows]
    assert written == [
        (res["user_id"], rank, item["item_id"])
        for res in expected["results"]
        for rank, item in enumerate(res["items"], start=1)
    ]
    assert {int(r["user_id"]) for r in rows} == set(USERS)


def test_the_command_reports_bad_arguments(synthetic_store: SyntheticStore, tmp_path: Path) -> None:
    out = str(tmp_path / "x.csv")
    assert command.main(["--store", str(synthetic_store.path), "--out", out, "--genres", "Western"]) == 1
    assert command.main(["--store", str(tmp_path / "none"), "--out", out]) == 1
    assert command.main(["--store", str(synthetic_store.path), "--out", out, "--diversity", "3"]) == 2


def test_reading_the_batch_path_is_method_not_allowed_not_a_user_named_batch(client: TestClient) -> None:
    r = client.get("/recommend/batch")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
