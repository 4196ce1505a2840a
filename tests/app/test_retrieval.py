"""Approximate retrieval (app/retrieval.py): filters stay exact and paging never repeats or skips, whatever the
index returns; the service with retrieval forced on (threshold 0) on the synthetic store; exact below it."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from app.artifacts import MANIFEST_FILE
from app.errors import RegistryError
from app.main import create_app
from app.registry import ModelRegistry
from app.retrieval import RankSpace, RetrievalConfig, VectorIndex, ranked_page
from app.settings import Settings
from tests.conftest import ITEM_IDS, N_ITEMS, USER_IDS, SyntheticStore
from training.export import script

MODELS = ("mf", "dense", "lstm")
# Small depths on the 50-item store, so requests take every route: a partial shortlist, widening, and the
# exact fallback for pages past the shortlist or filters that leave too few.
FORCED = {"ann_min_items": 0, "ann_depth": 4, "ann_min_candidates": 6, "ann_widenings": 1, "ann_dims_per_code": 1}


def _config(depth: int, min_candidates: int, widenings: int) -> RetrievalConfig:
    return RetrievalConfig(
        min_items=0, depth=depth, min_candidates=min_candidates, widenings=widenings, dims_per_code=1
    )


def _all_pages(search, score, mask: np.ndarray, k: int, config: RetrievalConfig) -> list[int]:  # type: ignore[no-untyped-def]
    collected: list[int] = []
    offset = 0
    while True:
        page, scores, total = ranked_page(search, score, mask, k=k, offset=offset, config=config)
        assert total == int(mask.sum())
        assert len(page) == min(k, max(total - offset, 0))
        np.testing.assert_array_equal(scores, score(page))  # each item carries its own exact score
        collected += page.tolist()
        offset += k
        if offset >= total:
            return collected


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_paging_an_approximate_index_never_repeats_skips_or_leaks_a_filtered_item(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 30), label="n_items")
    # Few distinct scores: many ties, which must still page consistently (lower index first).
    exact = np.r_[0.0, data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))].astype(np.float32)
    # The index's own notion of order: any permutation, from exact to unrelated.
    noise = np.r_[0.0, data.draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n))]
    approximate = np.argsort(-(exact[1:] + noise[1:]), kind="stable") + 1
    mask = np.r_[False, data.draw(st.lists(st.booleans(), min_size=n, max_size=n))]
    config = _config(
        depth=data.draw(st.integers(1, 12)),
        min_candidates=data.draw(st.integers(1, 12)),
        widenings=data.draw(st.integers(0, 2)),
    )
    k = data.draw(st.integers(1, n + 2), label="k")

    def search(depth: int) -> np.ndarray:
        return approximate[:depth]

    def score(items: np.ndarray) -> np.ndarray:
        return exact[items]

    collected = _all_pages(search, score, mask, k, config)
    assert all(mask[i] for i in collected)
    assert len(collected) == len(set(collected))
    assert sorted(collected) == np.flatnonzero(mask).tolist()
    # The same order whatever the page size: it depends on the query and the filters only.
    assert _all_pages(search, score, mask, 1, config) == collected


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_an_exact_index_gives_the_exact_order(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 30))
    exact = np.r_[0.0, data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))].astype(np.float32)
    order = np.lexsort((np.arange(1, n + 1), -exact[1:])) + 1
    mask = np.r_[False, data.draw(st.lists(st.booleans(), min_size=n, max_size=n))]
    config = _config(depth=data.draw(st.integers(1, 12)), min_candidates=data.draw(st.integers(1, 12)), widenings=1)
    collected = _all_pages(lambda depth: order[:depth], lambda items: exact[items], mask, 3, config)
    assert collected == [i for i in order.tolist() if mask[i]]


def test_the_index_finds_the_largest_inner_products() -> None:
    rng = np.random.default_rng(0)
    vectors = np.vstack([np.zeros(9), rng.normal(size=(3000, 9))]).astype(np.float32)
    space = RankSpace.build("mf", vectors[:, :8], vectors[:, 8], dims_per_code=1)
    query = space.query(rng.normal(size=8).astype(np.float32))
    exact = np.argsort(-(space.vectors[1:] @ query))[:10] + 1
    found = space.index.search(query, 100)
    assert 0 not in found and len(found) == 100  # the padding row is never indexed
    assert len(set(found.tolist()) & set(exact.tolist())) >= 9
    assert len(VectorIndex(vectors, 2).search(query[:9], 10_000)) == 3000  # asks past the end: every item


@pytest.fixture(scope="module")
def forced(synthetic_store: SyntheticStore) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=synthetic_store.path, **FORCED))) as client:
        yield client


def test_retrieval_is_built_above_the_threshold_only(synthetic_store: SyntheticStore) -> None:
    def built(min_items: int) -> set[str]:
        config = RetrievalConfig(min_items=min_items, depth=4, min_candidates=6, widenings=1, dims_per_code=1)
        return set(ModelRegistry.load(synthetic_store.path, retrieval=config).retrieval)

    assert built(N_ITEMS) == set(MODELS)
    assert built(N_ITEMS + 1) == set()
    assert Settings().ann_min_items > 1682  # ML-100K's catalog stays exact by default


def test_forced_retrieval_serves_every_model(forced: TestClient) -> None:
    registry = forced.app.state.registry_holder.get()  # type: ignore[attr-defined]
    assert set(registry.retrieval) == set(MODELS)
    assert registry.retrieval["dense"].rerank and registry.retrieval["dense"].space.source == "mf"
    assert not registry.retrieval["mf"].rerank and registry.retrieval["lstm"].space.source == "lstm"


def _page_all(client: TestClient, user: int, model: str, k: int, **params: object) -> tuple[list[int], int]:
    items: list[int] = []
    offset = 0
    while True:
        body = client.get(f"/recommend/{user}", params={"model": model, "k": k, "offset": offset, **params}).json()
        assert body["offset"] == offset
        items += [i["item_id"] for i in body["items"]]
        # (Scores need not fall across pages: the shortlist comes first, then every other allowed item.)
        offset += k
        if offset >= body["total"]:
            return items, body["total"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"exclude_seen": "false"},
        {"genres": "Sci-Fi"},
        {"genres": "Action,Comedy", "exclude": "1003,1010,1020,1044"},
        {"exclude": ",".join(str(i) for i in ITEM_IDS[:40])},  # too few left for a shortlist: exact
    ],
)
def test_forced_retrieval_pages_every_allowed_item_once_and_nothing_else(
    forced: TestClient, synthetic_store: SyntheticStore, model: str, params: dict[str, str]
) -> None:
    genres = params.get("genres", "").split(",") if "genres" in params else None
    excluded = {int(i) for i in params.get("exclude", "").split(",") if i}
    frame = synthetic_store.data.items.set_index("item_id")
    for user in USER_IDS[::4].tolist():
        seen = set(synthetic_store.history(user)[0]) if params.get("exclude_seen") != "false" else set()
        allowed = {
            int(i)
            for i in ITEM_IDS
            if i not in excluded and i not in seen and (genres is None or set(genres) & set(frame.loc[i, "genres"]))
        }
        for k in (1, 3, 7):
            items, total = _page_all(forced, user, model, k, **params)
            assert total == len(allowed)
            assert len(items) == len(set(items))  # no repeats
            assert set(items) == allowed  # no skips, and nothing filtered out


@pytest.mark.parametrize("model", MODELS)
def test_forced_retrieval_with_a_deep_index_ranks_by_the_ranking_score(
    client: TestClient, synthetic_store: SyntheticStore, model: str
) -> None:
    """With a depth past the catalog the index returns everything, so the order is the exact score order:
    mf and lstm by the ranking score (``rank_all``, one inner product), dense by its predicted stars over mf's
    shortlist. Ratings are the rating head's, as in the exact path."""
    deep = {**FORCED, "ann_depth": 1000, "ann_min_candidates": 1}
    with TestClient(create_app(Settings(models_dir=synthetic_store.path, **deep))) as approximate:
        for user in USER_IDS[::3].tolist():
            exact = client.get(f"/recommend/{user}", params={"model": model, "k": N_ITEMS}).json()["items"]
            found = approximate.get(f"/recommend/{user}", params={"model": model, "k": 15}).json()["items"]
            if model == "dense":
                # mf's shortlist (here the whole catalog) re-ordered by dense's predicted stars.
                with torch.no_grad():
                    stars = synthetic_store.networks[model].score_all(torch.tensor([synthetic_store.user_index(user)]))
                score = {i["item_id"]: float(stars[synthetic_store.item_index(i["item_id"])]) for i in exact}
                expected = sorted(score, key=lambda i: (-score[i], i))[:15]
            else:
                with torch.no_grad():
                    rank = synthetic_store.networks[model].rank_all(torch.tensor([synthetic_store.user_index(user)]))
                score = {i["item_id"]: float(rank[synthetic_store.item_index(i["item_id"])]) for i in exact}
                expected = sorted(score, key=lambda i: (-score[i], i))[:15]
            assert [i["item_id"] for i in found] == expected
            rating = {i["item_id"]: i["rating"] for i in exact}
            assert [i["rating"] for i in found] == pytest.approx([rating[i["item_id"]] for i in found], abs=1e-3)


def test_forced_retrieval_for_sessions_filters_and_pages(forced: TestClient, client: TestClient) -> None:
    session = [1001, 1002, 1030, 1040]
    body = {"items": session, "ratings": [5, 1], "genres": ["Drama", "Action"], "exclude": [1009]}
    whole = client.post("/recommend", json={**body, "k": N_ITEMS}).json()
    items: list[int] = []
    for offset in range(0, whole["total"], 4):
        page = forced.post("/recommend", json={**body, "k": 4, "offset": offset}).json()
        assert page["total"] == whole["total"] and page["strategy"] == "session"
        items += [i["item_id"] for i in page["items"]]
    assert sorted(items) == sorted(i["item_id"] for i in whole["items"])
    assert not set(items) & {*session, 1009}
    # Ratings of the approximate path are the model's next-item predictions, as in the exact path.
    exact = {i["item_id"]: i["rating"] for i in whole["items"]}
    first = forced.post("/recommend", json={**body, "k": 5}).json()["items"]
    assert [i["rating"] for i in first] == pytest.approx([exact[i["item_id"]] for i in first], abs=1e-3)


@pytest.mark.parametrize("model", MODELS)
def test_forced_retrieval_of_similar_items(forced: TestClient, client: TestClient, model: str) -> None:
    for item in (1001, 1020, 1050):
        exact = client.get(f"/items/{item}/similar", params={"k": N_ITEMS - 1, "model": model}).json()["items"]
        for k in (3, 10, N_ITEMS - 1):
            found = forced.get(f"/items/{item}/similar", params={"k": k, "model": model}).json()["items"]
            ids = [i["item_id"] for i in found]
            assert len(ids) == len(set(ids)) == k and item not in ids
        # Asked for the whole catalog, every other item comes back, exactly scored.
        assert {i["item_id"]: i["similarity"] for i in found} == pytest.approx(
            {i["item_id"]: i["similarity"] for i in exact}, abs=1e-3
        )


class _RatingsOnly(nn.Module):
    """An mf artifact from before the ranking contract: the rating methods only."""

    def __init__(self, mf: nn.Module) -> None:
        super().__init__()
        self.mf = mf

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self.mf.predict(users, items)

    @torch.jit.export
    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        return self.mf.predict(users, items)

    @torch.jit.export
    def score_all(self, user: Tensor) -> Tensor:
        return self.mf.score_all(user)

    @torch.jit.export
    def item_embeddings(self) -> Tensor:
        return self.mf.item_embeddings()


def test_retrieval_refuses_a_model_without_the_ranking_contract(
    synthetic_store: SyntheticStore, store_copy: Path
) -> None:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is the artifact format; its deprecation notice is not news
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        torch.jit.save(script(_RatingsOnly(synthetic_store.networks["mf"])), buffer)  # type: ignore[no-untyped-call]
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    manifest = json.loads((store_copy / MANIFEST_FILE).read_text())
    (store_copy / manifest["models"]["mf"]["file"]).unlink()
    (store_copy / f"mf-{sha[:12]}.pt").write_bytes(data)
    manifest["models"]["mf"].update(file=f"mf-{sha[:12]}.pt", sha256=sha, version=f"mf-{sha[:12]}")
    (store_copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    # The ranking methods are the contract (schema 3): refused whether or not retrieval is on.
    config = RetrievalConfig(min_items=0, depth=4, min_candidates=6, widenings=1, dims_per_code=1)
    for retrieval in (None, config):
        with pytest.raises(RegistryError, match=r"mf-.*\.pt: a mf module must export rank_all"):
            ModelRegistry.load(store_copy, retrieval=retrieval)
