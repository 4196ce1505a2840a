"""Tests for `training.export`: TorchScript round trip, the manifest contract and the atomic store switch."""

from __future__ import annotations

import copy
import hashlib
import os
import stat
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from app.artifacts import (
    LOCK_FILE,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    SEQUENCE_LENGTH,
    VERSIONS_DIR,
    Catalog,
    Manifest,
    Metrics,
)
from tests.training.conftest import jit_load, randomize, torchscript_deprecation_ignored, write_ml100k
from training.data import Interactions, MovieLens, load_movielens, validation_split
from training.evaluate import error_metrics, predict_pairs, predict_sequences
from training.export import TrainedModel, catalog, dataset_info, export_store, script
from training.models import (
    DenseConfig,
    LSTMConfig,
    MFConfig,
    hyperparameters,
    train_dense,
    train_lstm,
    train_mf,
)
from training.networks import DenseNet, MatrixFactorization, SequenceLSTM

ATOL = 1e-5
NAMES = ("mf", "dense", "lstm")
STORE_FILES = {MANIFEST_FILE, LOCK_FILE, VERSIONS_DIR}  # in every store beside the files a manifest names


@dataclass
class Fitted:
    data: MovieLens
    train: Interactions
    test: Interactions
    models: list[TrainedModel]


def _train(data: MovieLens, seed: int = 0) -> list[TrainedModel]:
    """Fit each model for two epochs with tiny configs and record held-out metrics, as the pipeline does."""
    train, test = data.split("u1")
    fit_data, val = validation_split(train, 0.1, np.random.default_rng(seed))
    recipes = {
        "mf": (train_mf, replace(MFConfig(), dim=4, batch_size=64)),
        "dense": (train_dense, replace(DenseConfig(), dim=4, hidden=[8, 4], batch_size=64)),
        "lstm": (train_lstm, replace(LSTMConfig(), dim=4, hidden=8, batch_size=64)),
    }
    models = []
    for name, (trainer, config) in recipes.items():
        network, result = trainer(fit_data, val, config, torch.Generator().manual_seed(seed), max_epochs=2)
        if name == "lstm":
            predicted = predict_sequences(network, train, test, SEQUENCE_LENGTH)
        else:
            predicted = predict_pairs(network, test)
        metrics = Metrics(split="u1.base->u1.test", n=len(test), **error_metrics(predicted, test.ratings))
        models.append(
            TrainedModel(
                name=name,
                network=network,
                hyperparameters=hyperparameters(config),
                metrics=[metrics],
                training_seconds=result.seconds,
                epochs=result.epochs,
            )
        )
    return models


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    directory = write_ml100k(
        tmp_path_factory.mktemp("data") / "ml-100k",
        user_ids=range(1, 26),
        item_ids=range(1, 31),
        n_ratings=400,
    )
    data = load_movielens(directory)
    train, test = data.split("u1")
    return Fitted(data, train, test, _train(data))


@pytest.fixture(scope="module")
def store(fitted: Fitted, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """One store, exported once per module and only read by the tests that use it."""
    out = tmp_path_factory.mktemp("store")
    return out, _export(fitted, out)


def _export(
    fitted: Fitted, out: Path, models: list[TrainedModel] | None = None, *, split: str = "u1", keep: int = 3
) -> Manifest:
    dataset = dataset_info(fitted.data, fitted.train, split)
    models = fitted.models if models is None else models
    return export_store(out, models, catalog=catalog(fitted.data), dataset=dataset, train=fitted.train, keep=keep)


def _kept_versions(out: Path) -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in (out / VERSIONS_DIR).iterdir())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _referenced(manifest: Manifest) -> set[str]:
    return {manifest.catalog.file, manifest.histories.file} | {e.file for e in manifest.models.values()}


def _network(fitted: Fitted, name: str) -> nn.Module:
    return next(m.network for m in fitted.models if m.name == name)


def _inputs(fitted: Fitted, name: str) -> dict[str, list[tuple[Tensor, ...]]]:
    """Calls of each exported method, on real rows of the training data and a few edge cases."""
    n_users, n_items = fitted.train.num_users, fitted.train.num_items
    if name == "lstm":
        items, ratings = fitted.train.to_sequence(SEQUENCE_LENGTH)
        items_t, ratings_t = torch.from_numpy(items[:64]), torch.from_numpy(ratings[:64])
        return {
            "predict": [
                (items_t, ratings_t),
                (items_t[:, -3:], ratings_t[:, -3:]),
                (items_t[:1], ratings_t[:1]),
            ],
            "score_next": [(items_t[k : k + 1], ratings_t[k : k + 1]) for k in (0, 5, 63)]  # padded and full contexts
            + [(items_t[5:6], torch.zeros(1, SEQUENCE_LENGTH))],  # no known ratings
            "score_all": [(torch.tensor([u]),) for u in range(0, n_users + 1)],
            "item_embeddings": [()],
        }
    users = torch.from_numpy(fitted.train.user_ids)
    items_p = torch.from_numpy(fitted.train.item_ids)
    every = torch.cartesian_prod(torch.arange(0, n_users + 1), torch.arange(1, n_items + 1))
    return {
        "predict": [(users, items_p), (every[:, 0], every[:, 1])],
        "score_all": [(torch.tensor([u]),) for u in range(0, n_users + 1)],
        "item_embeddings": [()],
    }


def _call_all(module: nn.Module | torch.jit.ScriptModule, calls: dict[str, list[tuple[Tensor, ...]]]) -> dict:
    with torch.inference_mode():
        return {method: [getattr(module, method)(*args) for args in argsets] for method, argsets in calls.items()}


# --- round trip ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_matches_the_eager_model(fitted: Fitted, store: tuple[Path, Manifest], name: str) -> None:
    out, manifest = store
    loaded = jit_load(out / manifest.models[name].file)
    calls = _inputs(fitted, name)
    eager, scripted = _call_all(_network(fitted, name), calls), _call_all(loaded, calls)
    for method, results in eager.items():
        for expected, actual in zip(results, scripted[method], strict=True):
            assert actual.shape == expected.shape, method
            torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0, msg=f"{name}.{method}")


def test_round_trip_of_random_networks_through_script(tmp_path: Path) -> None:
    # Beyond the trained tiny models: large random weights, so the clamp to [1, 5] is exercised too.
    networks = {
        "mf": randomize(MatrixFactorization(6, 9, 3), seed=1),
        "dense": randomize(DenseNet(6, 9, 3, [5, 4], 0.5), seed=2),
        "lstm": randomize(SequenceLSTM(n_users=6, n_items=9, dim=3, hidden=4), seed=3),
    }
    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 7, (50,), generator=g), torch.randint(1, 10, (50,), generator=g)
    seq_items, seq_ratings = (
        torch.randint(0, 10, (20, 10), generator=g),
        torch.randint(0, 6, (20, 10), generator=g),
    )
    for name, net in networks.items():
        path = tmp_path / f"{name}.pt"
        with torchscript_deprecation_ignored():
            torch.jit.save(script(net), str(path))
        loaded = jit_load(path)
        with torch.inference_mode():
            if name == "lstm":
                pairs = [(net.predict, loaded.predict, (seq_items, seq_ratings.float()))]
                pairs.append((net.score_next, loaded.score_next, (seq_items[:1], seq_ratings[:1].float())))
            else:
                pairs = [(net.predict, loaded.predict, (users, items))]
                pairs.append((net.score_all, loaded.score_all, (torch.tensor([2]),)))
            pairs.append((net.item_embeddings, loaded.item_embeddings, ()))
            for eager, scripted, args in pairs:
                torch.testing.assert_close(scripted(*args), eager(*args), atol=ATOL, rtol=0)


_LOAD_ALONE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch

    store, calls_file, results_file = map(Path, sys.argv[1:])
    manifest = json.loads((store / "manifest.json").read_text())
    calls = torch.load(calls_file)
    results = {}
    for name, entry in manifest["models"].items():
        module = torch.jit.load(str(store / entry["file"]))
        with torch.inference_mode():
            results[name] = {
                method: [getattr(module, method)(*args) for args in argsets]
                for method, argsets in calls[name].items()
            }
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in {"training", "app", "tests"})
    assert not leaked, leaked
    torch.save(results, results_file)
    """
)


def test_exported_files_load_with_torch_alone(fitted: Fitted, store: tuple[Path, Manifest], tmp_path: Path) -> None:
    # A fresh interpreter that imports torch and nothing of this project, as the service's worker would.
    out, _ = store
    calls = {name: _inputs(fitted, name) for name in NAMES}
    torch.save(calls, tmp_path / "calls.pt")
    subprocess.run(
        [
            sys.executable,
            "-c",
            _LOAD_ALONE,
            str(out),
            str(tmp_path / "calls.pt"),
            str(tmp_path / "results.pt"),
        ],
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    results = torch.load(tmp_path / "results.pt")
    for name in NAMES:
        eager = _call_all(_network(fitted, name), calls[name])
        for method, expected in eager.items():
            for e, a in zip(expected, results[name][method], strict=True):
                torch.testing.assert_close(a, e, atol=ATOL, rtol=0, msg=f"{name}.{method}")


# --- the manifest and the files it names --------------------------------------------------------------------


def test_manifest_validates_and_describes_the_store(fitted: Fitted, store: tuple[Path, Manifest]) -> None:
    out, returned = store
    manifest = Manifest.model_validate_json((out / MANIFEST_FILE).read_text())
    assert manifest == returned
    assert manifest.schema_version == SCHEMA_VERSION
    d = manifest.dataset
    assert (d.name, d.split, d.sha256) == ("ml-100k", "u1", fitted.data.sha256)
    assert (d.n_users, d.n_items, d.n_ratings) == (25, 30, len(fitted.train))
    assert set(manifest.models) == set(NAMES)
    for m in fitted.models:
        entry = manifest.models[m.name]
        assert entry.name == m.name
        assert entry.file == f"{m.name}-{entry.sha256[:12]}.pt"
        assert entry.version == f"{m.name}-{entry.sha256[:12]}"
        assert entry.metrics == m.metrics
        assert entry.hyperparameters == m.hyperparameters
        assert entry.epochs == m.epochs
        assert entry.torch_version == torch.__version__
        assert entry.n_parameters == sum(p.numel() for p in m.network.parameters())
        assert entry.trained_at.tzinfo is not None


def test_every_file_matches_its_sha256(store: tuple[Path, Manifest]) -> None:
    out, manifest = store
    refs = [manifest.catalog, manifest.histories, *manifest.models.values()]
    for ref in refs:
        assert _sha256(out / ref.file) == ref.sha256, ref.file
        assert ref.file.rpartition("-")[2].startswith(ref.sha256[:12])
    # Nothing else is left in the store: no temporary files, no strays.
    assert {p.name for p in out.iterdir()} == _referenced(manifest) | STORE_FILES
    # The live manifest is a copy of the one version kept so far.
    assert [p.name for p in (out / VERSIONS_DIR).iterdir()] == [f"{manifest.store_version}.json"]
    assert (out / VERSIONS_DIR / f"{manifest.store_version}.json").read_bytes() == (out / MANIFEST_FILE).read_bytes()


def test_catalog_maps_indices_to_raw_ids(fitted: Fitted, store: tuple[Path, Manifest]) -> None:
    out, manifest = store
    catalog = Catalog.model_validate_json((out / manifest.catalog.file).read_text())
    assert catalog.user_ids == list(range(1, 26))
    assert [i.item_id for i in catalog.items] == list(range(1, 31))
    assert catalog.items[0].title == "Toy Story (1995)"
    assert catalog.items[0].year == 1995
    assert catalog.items[0].genres == ["Action", "Comedy"]
    assert catalog.items[-1].year is None
    assert catalog.genres == fitted.data.genres


def test_histories_are_each_users_training_ratings_in_time_order(fitted: Fitted, store: tuple[Path, Manifest]) -> None:
    out, manifest = store
    train = fitted.train
    with np.load(out / manifest.histories.file, allow_pickle=False) as h:
        indptr, items, ratings, times, popularity = (
            h[k] for k in ("indptr", "items", "ratings", "timestamps", "popularity")
        )
    assert indptr.shape == (train.num_users + 2,)
    assert len(items) == len(ratings) == len(times) == len(train)
    np.testing.assert_array_equal(popularity, np.bincount(train.item_ids, minlength=train.num_items + 1))
    for user in range(1, train.num_users + 1):
        mine = train.user_ids == user
        span = slice(indptr[user], indptr[user + 1])
        order = np.argsort(train.timestamps[mine], kind="stable")
        np.testing.assert_array_equal(items[span], train.item_ids[mine][order])
        np.testing.assert_array_equal(ratings[span], train.ratings[mine][order])
        assert (np.diff(times[span]) >= 0).all()


def test_files_are_world_readable_whatever_the_umask(fitted: Fitted, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        manifest = _export(fitted, tmp_path / "store")
    finally:
        os.umask(old)
    for name in _referenced(manifest) | {MANIFEST_FILE}:
        mode = stat.S_IMODE((tmp_path / "store" / name).stat().st_mode)
        assert mode == 0o644, f"{name}: {mode:o}"


# --- replacing a store --------------------------------------------------------------------------------------


def _perturbed(model: TrainedModel) -> TrainedModel:
    """The same model with different weights, hence a different file."""
    network = copy.deepcopy(model.network)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.01)
    return replace(model, network=network)


def test_second_export_replaces_the_manifest_and_keeps_the_first_as_a_version(fitted: Fitted, tmp_path: Path) -> None:
    out = tmp_path / "store"
    first = _export(fitted, out)
    second = _export(fitted, out, [_perturbed(m) for m in fitted.models])
    assert Manifest.model_validate_json((out / MANIFEST_FILE).read_text()) == second
    assert second.store_version > first.store_version
    assert all(second.models[name].file != first.models[name].file for name in NAMES)
    # Both versions are kept (for a rollback), with every file they name.
    assert _kept_versions(out) == [first.store_version, second.store_version]
    assert {p.name for p in out.iterdir()} == _referenced(first) | _referenced(second) | STORE_FILES
    # Unchanged inputs give byte-identical catalog and histories: the same names, kept.
    assert second.catalog == first.catalog
    assert second.histories == first.histories


def test_versions_beyond_keep_are_removed_with_the_files_only_they_name(fitted: Fitted, tmp_path: Path) -> None:
    out = tmp_path / "store"
    manifests = [_export(fitted, out, keep=2)]
    models = fitted.models
    for _ in range(2):
        models = [_perturbed(m) for m in models]
        manifests.append(_export(fitted, out, models, keep=2))
    first, second, third = manifests
    assert _kept_versions(out) == [second.store_version, third.store_version]
    assert {p.name for p in out.iterdir()} == _referenced(second) | _referenced(third) | STORE_FILES
    for name in NAMES:
        assert not (out / first.models[name].file).exists()
    # keep=1: only the live version and its files are left.
    _export(fitted, out, keep=1)
    live = Manifest.model_validate_json((out / MANIFEST_FILE).read_text())
    assert _kept_versions(out) == [live.store_version]
    assert {p.name for p in out.iterdir()} == _referenced(live) | STORE_FILES


def test_export_creates_missing_parent_directories(fitted: Fitted, tmp_path: Path) -> None:
    manifest = _export(fitted, tmp_path / "a" / "b" / "store", fitted.models[:1])
    assert (tmp_path / "a" / "b" / "store" / manifest.models["mf"].file).is_file()


def test_interrupted_export_leaves_the_old_store_valid(
    fitted: Fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "store"
    old = _export(fitted, out)
    old_text = (out / MANIFEST_FILE).read_text()
    real_save = torch.jit.save
    saves = 0

    def save_then_fail(module: torch.jit.ScriptModule, f: object, **kwargs: object) -> None:
        nonlocal saves
        saves += 1
        if saves > 1:
            raise OSError("No space left on device")
        real_save(module, f, **kwargs)

    monkeypatch.setattr(torch.jit, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        _export(fitted, out, [_perturbed(m) for m in fitted.models])
    assert saves == 2  # the first new model was written, the second failed
    # The old manifest is untouched, still valid, and every file it names is there with its checksum.
    assert (out / MANIFEST_FILE).read_text() == old_text
    manifest = Manifest.model_validate_json(old_text)
    assert manifest == old
    for ref in [manifest.catalog, manifest.histories, *manifest.models.values()]:
        assert _sha256(out / ref.file) == ref.sha256
    assert not list(out.glob(".*.tmp"))  # the failed write cleaned up after itself
    monkeypatch.undo()
    # The next complete export sweeps up what the interrupted one left behind.
    final = _export(fitted, out)
    assert {p.name for p in out.iterdir()} == _referenced(old) | _referenced(final) | STORE_FILES


# --- warnings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_script_lets_no_deprecation_warning_escape(fitted: Fitted, name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        script(_network(fitted, name))
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in caught]


def test_export_store_lets_no_torchscript_deprecation_warning_escape(fitted: Fitted, tmp_path: Path) -> None:
    # TorchScript is the required artifact format (see `script`): writing it should not warn every run either.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _export(fitted, tmp_path / "store")
    deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert not deprecations


def test_script_leaves_the_network_in_eval_mode(fitted: Fitted) -> None:
    network = _network(fitted, "dense")
    network.train()
    scripted = script(network)
    assert not network.training
    assert not scripted.training


def test_retraining_one_model_keeps_the_others(fitted: Fitted, tmp_path: Path) -> None:
    first = _export(fitted, tmp_path)
    mf = next(m for m in fitted.models if m.name == "mf")
    second = _export(fitted, tmp_path, [_perturbed(mf)])
    assert list(second.models) == ["mf", "dense", "lstm"]
    assert second.models["mf"].sha256 != first.models["mf"].sha256
    for name in ("dense", "lstm"):
        assert second.models[name] == first.models[name]
        assert (tmp_path / first.models[name].file).is_file()


def test_export_removes_only_files_it_wrote(fitted: Fitted, tmp_path: Path) -> None:
    foreign = [tmp_path / "quality.json", tmp_path / "notes.pt", tmp_path / "mf-final.pt"]
    for path in foreign:
        path.write_text("not ours")
    _export(fitted, tmp_path)
    _export(fitted, tmp_path, [_perturbed(m) for m in fitted.models])
    assert all(path.read_text() == "not ours" for path in foreign)


def test_export_refuses_a_dataset_record_that_is_not_the_histories_it_writes(fitted: Fitted, tmp_path: Path) -> None:
    # export_store takes the dataset record and the training data separately: they must describe the same data.
    other = dataset_info(fitted.data, fitted.test, "u1")
    with pytest.raises(ValueError, match="dataset records"):
        export_store(tmp_path / "store", fitted.models, catalog=catalog(fitted.data), dataset=other, train=fitted.train)
    assert not (tmp_path / "store").exists()
