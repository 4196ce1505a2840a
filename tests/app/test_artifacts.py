"""The artifact contract (app/artifacts.py): its helpers are what training computes, its manifest fields are what
the service serves by, and each entry's kind decides the serving handler."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.artifacts import (
    HISTORY_ARRAYS,
    MANIFEST_FILE,
    MODEL_NAMES,
    MODELS,
    SEQUENCE_LENGTH,
    Manifest,
    ModelEntry,
    context_length,
    latest_context,
    left_pad,
    popularity_prior,
)
from app.errors import RegistryError
from app.handlers import HANDLERS, PairHandler, SequenceHandler
from app.registry import ModelRegistry
from tests.conftest import SyntheticStore
from training.baselines import item_popularity
from training.data import validation_split
from training.export import histories
from training.rank_heads import popularity_bias
from training.ranking import RankingTask, latest_contexts


def _manifest(store: Path) -> dict[str, Any]:
    return json.loads((store / MANIFEST_FILE).read_text())  # type: ignore[no-any-return]


def _edit_entry(store: Path, name: str, **fields: Any) -> None:
    manifest = _manifest(store)
    manifest["models"][name].update(fields)
    (store / MANIFEST_FILE).write_text(json.dumps(manifest))


# --- numpy helpers: one definition, the same numbers on both sides ---------------------------------------------


def test_popularity_prior_is_what_training_ranks_and_biases_with(synthetic_store: SyntheticStore) -> None:
    train = synthetic_store.train
    fit, heldout = validation_split(train, 0.2, np.random.default_rng(0))
    served = ModelRegistry.load(synthetic_store.path).popularity  # the counts the store ships
    np.testing.assert_array_equal(served, item_popularity(train))
    expected = popularity_prior(item_popularity(fit))
    # The ranking evaluation's prior (choose_weight's grid over p) and the bias folded into rank_item_bias.
    np.testing.assert_array_equal(RankingTask.build(fit, heldout).popularity, expected)
    bias = popularity_bias(fit, 2.0)
    assert bias.dtype == torch.float32
    np.testing.assert_array_equal(bias.numpy(), (2.0 * expected).astype(np.float32))


def test_popularity_prior_values() -> None:
    counts = np.array([0, 1, 9, 99])
    prior = popularity_prior(counts)
    assert prior.dtype == np.float64
    assert prior == pytest.approx([0.0, np.log(2) / np.log(100), 0.5, 1.0])
    assert popularity_prior(np.zeros(3, dtype=np.int64)).tolist() == [0.0, 0.0, 0.0]


def test_left_pad_is_how_training_lays_out_each_window(synthetic_store: SyntheticStore) -> None:
    train = synthetic_store.train
    windows, window_ratings = train.to_sequence(SEQUENCE_LENGTH)
    order = train.time_order()
    users = train.user_ids[order]
    for row in range(len(order)):
        mine = np.flatnonzero(users[: row + 1] == users[row])  # this user's interactions up to this one
        items, ratings = left_pad(train.item_ids[order][mine], train.ratings[order][mine], SEQUENCE_LENGTH)
        np.testing.assert_array_equal(windows[row], items)
        np.testing.assert_array_equal(window_ratings[row], ratings)


def test_latest_context_is_the_context_training_evaluates_sessions_with(synthetic_store: SyntheticStore) -> None:
    train = synthetic_store.train
    users = np.arange(1, train.num_users + 1)
    items, ratings = latest_contexts(train, users, context_length(SEQUENCE_LENGTH))
    registry = ModelRegistry.load(synthetic_store.path)
    for row, user in enumerate(users.tolist()):
        served = latest_context(*registry.history(user), SEQUENCE_LENGTH)
        np.testing.assert_array_equal(items[row], served[0])
        np.testing.assert_array_equal(ratings[row], served[1])
    assert items.shape[1] == SEQUENCE_LENGTH - 1  # score_next appends the predicted position


def test_histories_hold_exactly_the_contract_arrays(synthetic_store: SyntheticStore) -> None:
    assert sorted(histories(synthetic_store.train)) == sorted(HISTORY_ARRAYS)


def test_a_store_without_timestamps_is_refused(store_copy: Path) -> None:
    manifest = Manifest.model_validate(_manifest(store_copy))
    path = store_copy / manifest.histories.file
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files if name != "timestamps"}
    np.savez(path, **arrays)  # type: ignore[arg-type]
    raw = _manifest(store_copy)
    raw["histories"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (store_copy / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(RegistryError, match="missing arrays timestamps"):
        ModelRegistry.load(store_copy)


# --- manifest entries: kind and sequence length -----------------------------------------------------------------


def test_export_records_each_models_kind_and_sequence_length(synthetic_store: SyntheticStore) -> None:
    manifest = Manifest.model_validate(_manifest(synthetic_store.path))
    assert tuple(manifest.models) == MODEL_NAMES
    for name, entry in manifest.models.items():
        assert (entry.kind, entry.sequence_length) == (MODELS[name].kind, MODELS[name].sequence_length)
    assert manifest.models["lstm"].sequence_length == SEQUENCE_LENGTH
    assert manifest.models["mf"].sequence_length is None


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("lstm", {"kind": "pair", "sequence_length": None}, "lstm is a sequence model, not pair"),
        ("mf", {"kind": "sequence", "sequence_length": 10}, "mf is a pair model, not sequence"),
        ("mf", {"sequence_length": 10}, "sequence_length is set for a sequence model and only for one"),
        ("lstm", {"sequence_length": None}, "sequence_length is set for a sequence model and only for one"),
    ],
)
def test_an_entry_must_declare_its_models_kind(
    store_copy: Path, name: str, fields: dict[str, Any], message: str
) -> None:
    raw = _manifest(store_copy)["models"][name] | fields
    with pytest.raises(ValidationError, match=message):
        ModelEntry.model_validate(raw)
    _edit_entry(store_copy, name, **fields)
    with pytest.raises(RegistryError, match="does not match the manifest schema"):
        ModelRegistry.load(store_copy)


@pytest.mark.parametrize("field", ["kind", "sequence_length"])
def test_an_entry_without_kind_or_sequence_length_is_refused(store_copy: Path, field: str) -> None:
    manifest = _manifest(store_copy)
    del manifest["models"]["lstm"][field]
    (store_copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(RegistryError, match=f"models.lstm.{field}: Field required"):
        ModelRegistry.load(store_copy)


def test_the_entrys_kind_picks_the_handler_and_its_sequence_length_the_window(store_copy: Path) -> None:
    _edit_entry(store_copy, "lstm", sequence_length=SEQUENCE_LENGTH + 5)
    registry = ModelRegistry.load(store_copy)
    assert {"pair": PairHandler, "sequence": SequenceHandler} == HANDLERS
    assert [type(registry.models[name]) for name in MODEL_NAMES] == [PairHandler, PairHandler, SequenceHandler]
    lstm = registry.sequence_model("lstm")
    assert lstm.sequence_length == SEQUENCE_LENGTH + 5 and lstm.context_length == SEQUENCE_LENGTH + 4
    stars = lstm.predict_sequence(np.array([1, 2, 3]), np.array([4.0], dtype=np.float32))
    items = torch.zeros((1, SEQUENCE_LENGTH + 5), dtype=torch.int64)
    items[0, -3:] = torch.tensor([1, 2, 3])
    ratings = torch.zeros((1, SEQUENCE_LENGTH + 5))
    ratings[0, -3] = 4.0
    with torch.inference_mode():
        expected = lstm.module.predict(items, ratings)[0, -3:].numpy()
    np.testing.assert_array_equal(stars, expected)


def test_a_window_shorter_than_the_requests_is_refused(store_copy: Path) -> None:
    _edit_entry(store_copy, "lstm", sequence_length=SEQUENCE_LENGTH - 1)
    with pytest.raises(RegistryError, match=f"sequence_length {SEQUENCE_LENGTH - 1} is shorter"):
        ModelRegistry.load(store_copy)


# --- GET /models shows every field of the entry ---------------------------------------------------------------


def test_model_info_shows_every_field_of_the_manifest_entry(
    client: TestClient, synthetic_store: SyntheticStore
) -> None:
    manifest = _manifest(synthetic_store.path)
    for name in MODEL_NAMES:
        body = client.get(f"/models/{name}").json()
        assert set(body) == set(ModelEntry.model_fields)
        entry = manifest["models"][name]
        assert {k: body[k] for k in entry if k != "trained_at"} == {k: v for k, v in entry.items() if k != "trained_at"}
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ModelInfo"]
    assert set(schema["properties"]) == set(ModelEntry.model_fields)
