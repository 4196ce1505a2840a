"""A store over several exports: models kept across retraining, store versions, overlapping exports.

Each test here reproduces a way the store used to lose data: a partial retrain on another split dropping the
other models, two overlapping exports deleting each other's files, a server starting while an export cleans up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path

import pytest
import torch

import training.export as export
from app import store
from app.artifacts import MANIFEST_FILE, VERSIONS_DIR, Manifest, Metrics
from app.registry import ModelRegistry
from tests.training.conftest import REPO, write_ml100k
from training.__main__ import main
from training.data import MovieLens, load_movielens
from training.export import ExportError, TrainedModel, catalog, check_export, dataset_info, export_store
from training.networks import DenseNet, MatrixFactorization, SequenceLSTM

pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:DeprecationWarning")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    directory = write_ml100k(
        tmp_path_factory.mktemp("data") / "ml-100k", user_ids=range(1, 13), item_ids=range(1, 16), n_ratings=120
    )
    return load_movielens(directory)


def _models(data: MovieLens, seed: int, names: tuple[str, ...] = ("mf", "dense", "lstm")) -> list[TrainedModel]:
    """Networks of the data set's shape with weights from `seed` (untrained: export does not care)."""
    n_users, n_items = len(data.user_raw_ids), len(data.item_raw_ids)
    torch.manual_seed(seed)
    networks = {
        "mf": MatrixFactorization(n_users, n_items, dim=4),
        "dense": DenseNet(n_users, n_items, dim=4, hidden=[8], dropout=0.0),
        "lstm": SequenceLSTM(n_users, n_items, dim=4, hidden=8),
    }
    metrics = [Metrics(split="u1.base->u1.test", n=1, rmse=1.0, mae=1.0, rmse_scaled=0.25, mae_scaled=0.25)]
    return [
        TrainedModel(name, networks[name].eval(), {"dim": 4}, metrics, training_seconds=0.1, epochs=1) for name in names
    ]


def _export(
    data: MovieLens,
    out: Path,
    seed: int,
    names: tuple[str, ...] = ("mf", "dense", "lstm"),
    *,
    split: str = "u1",
    keep: int = 3,
) -> Manifest:
    train, _ = data.split(split)
    dataset = dataset_info(data, train, split)
    return export_store(out, _models(data, seed, names), catalog=catalog(data), dataset=dataset, train=train, keep=keep)


def _live(out: Path) -> Manifest:
    return Manifest.model_validate_json((out / MANIFEST_FILE).read_bytes())


def _all_files_present(out: Path) -> None:
    """The live manifest and every kept version name only files that are there, with their checksums."""
    for manifest in [_live(out), *(v.manifest for v in store.list_versions(out))]:
        assert manifest is not None
        for ref in [manifest.catalog, manifest.histories, *manifest.models.values()]:
            store.read_verified(out, ref)


# --- retraining some models ---------------------------------------------------------------------------------


def test_retraining_one_model_on_another_split_keeps_the_others(data: MovieLens, tmp_path: Path) -> None:
    # The case: a store trained on `full`, then `--split u1 --models mf`. It used to keep mf alone.
    first = _export(data, tmp_path, seed=0, split="full")
    second = _export(data, tmp_path, seed=1, names=("mf",), split="u1")
    assert list(second.models) == ["mf", "dense", "lstm"]
    assert second.models["mf"].dataset.split == "u1"
    assert second.models["mf"].sha256 != first.models["mf"].sha256
    for name in ("dense", "lstm"):
        assert second.models[name] == first.models[name]
        assert second.models[name].dataset.split == "full"  # each entry says what it was trained on
    assert second.dataset.split == "u1"  # the store's histories are the latest export's training data
    registry = ModelRegistry.load(tmp_path)
    assert set(registry.models) == {"mf", "dense", "lstm"}


def test_the_cli_retraining_mf_on_u1_keeps_dense_and_lstm_trained_on_full(tmp_path: Path) -> None:
    tiny = write_ml100k(tmp_path / "ml-100k")
    out = tmp_path / "store"
    common = ["--data", str(tiny), "--no-download", "--epochs", "1", "--out", str(out)]
    assert main([*common, "--split", "full"]) == 0
    assert main([*common, "--split", "u1", "--models", "mf"]) == 0
    manifest = _live(out)
    assert {name: e.dataset.split for name, e in manifest.models.items()} == {
        "mf": "u1",
        "dense": "full",
        "lstm": "full",
    }
    assert set(ModelRegistry.load(out).models) == {"mf", "dense", "lstm"}


def test_models_of_another_data_set_are_never_dropped(data: MovieLens, tmp_path: Path) -> None:
    _export(data, tmp_path / "store", seed=0)
    before = (tmp_path / "store" / MANIFEST_FILE).read_bytes()
    other_dir = write_ml100k(tmp_path / "other", user_ids=range(1, 13), item_ids=range(1, 16), n_ratings=120, seed=7)
    other = load_movielens(other_dir)
    with pytest.raises(ExportError, match=r"holds dense, lstm trained on another data set.*--models mf,dense,lstm"):
        check_export(
            tmp_path / "store", catalog=catalog(other), dataset=dataset_info(other, other.ratings, "u1"), models=("mf",)
        )
    with pytest.raises(ExportError, match="another data set"):
        _export(other, tmp_path / "store", seed=1, names=("mf",))
    assert (tmp_path / "store" / MANIFEST_FILE).read_bytes() == before
    # Retraining every model replaces them all: nothing is dropped, so that is allowed.
    assert set(_export(other, tmp_path / "store", seed=1).models) == {"mf", "dense", "lstm"}


def test_the_cli_refuses_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "store"
    common = ["--no-download", "--epochs", "1", "--out", str(out)]
    assert main(["--data", str(write_ml100k(tmp_path / "a")), *common, "--models", "mf,dense,lstm"]) == 0
    before = (out / MANIFEST_FILE).read_bytes()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained although the export was bound to be refused")

    monkeypatch.setattr("training.pipeline.train_one", no_training)
    other = write_ml100k(tmp_path / "b", seed=3)
    assert main(["--data", str(other), *common, "--models", "mf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "dense, lstm" in err and "Traceback" not in err
    assert (out / MANIFEST_FILE).read_bytes() == before


def test_a_schema_1_store_is_carried_over(data: MovieLens, tmp_path: Path) -> None:
    # The committed store before schema 2: one manifest, entries without their own dataset, no versions/.
    first = _export(data, tmp_path, seed=0)
    old = json.loads((tmp_path / MANIFEST_FILE).read_text())
    old["schema_version"] = 1
    del old["store_version"]
    for entry in old["models"].values():
        del entry["dataset"]
    shutil.rmtree(tmp_path / VERSIONS_DIR)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(old))
    second = _export(data, tmp_path, seed=1, names=("mf",))
    assert second.models["dense"].file == first.models["dense"].file
    assert second.models["dense"].dataset == first.dataset
    ModelRegistry.load(tmp_path)


# --- overlapping exports ------------------------------------------------------------------------------------

_EXPORT_C = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from tests.training.test_store_versions import _export
from training.data import load_movielens
_export(load_movielens(Path(sys.argv[1])), Path(sys.argv[2]), seed=2)
"""


@pytest.fixture
def paused_after_first_model() -> Iterator[tuple[threading.Event, threading.Event]]:
    """Export threads named "B" stop right after renaming their first model file into the store, until
    released: (paused, release)."""
    paused, release = threading.Event(), threading.Event()
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        if threading.current_thread().name == "B" and str(dst).endswith(".pt") and not paused.is_set():
            paused.set()
            assert release.wait(60)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(export.os, "replace", replace)
        yield paused, release


def test_overlapping_exports_leave_a_complete_store(
    data: MovieLens, tmp_path: Path, paused_after_first_model: tuple[threading.Event, threading.Event]
) -> None:
    # Export B stops after writing its first model; export C, another process, runs meanwhile; B resumes.
    # Each export used to delete every file its own manifest did not name: C removed B's new files, and the
    # store ended with no model file at all.
    paused, release = paused_after_first_model
    out = tmp_path / "store"
    _export(data, out, seed=0)
    failures: list[BaseException] = []

    def run_b() -> None:
        try:
            _export(data, out, seed=1)
        except BaseException as e:
            failures.append(e)

    b = threading.Thread(target=run_b, name="B")
    b.start()
    assert paused.wait(60)
    c = subprocess.Popen([sys.executable, "-c", _EXPORT_C, str(data.directory), str(out), str(REPO)], cwd=REPO)
    try:
        time.sleep(3)
        assert c.poll() is None, "export C ran while export B held the store"
        release.set()
        b.join(60)
        assert c.wait(120) == 0
    finally:
        release.set()
        c.kill()
    assert not failures, failures
    _all_files_present(out)
    # C finished last, so it is live; B's version is kept beside it, complete.
    live = _live(out)
    assert [v.id for v in store.list_versions(out)][-1] == live.store_version
    assert len(store.list_versions(out)) == 3
    assert set(ModelRegistry.load(out).models) == {"mf", "dense", "lstm"}


# --- a reader during an export's clean-up -------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 3])
def test_a_server_starting_during_an_export_still_loads(
    data: MovieLens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: int
) -> None:
    # The server reads the live manifest; an export completes (switch and clean-up) before the server reads
    # the files that manifest names. They used to be deleted by then, and the server refused to start.
    first = _export(data, tmp_path, seed=0)
    read_manifest, exported = store.read_manifest, threading.Event()

    def read_then_export(directory: Path, version: str | None = None) -> Manifest:
        manifest = read_manifest(directory, version)
        if not exported.is_set():
            exported.set()
            _export(data, tmp_path, seed=1, keep=keep)
        return manifest

    monkeypatch.setattr(store, "read_manifest", read_then_export)
    registry = ModelRegistry.load(tmp_path)
    assert exported.is_set()
    assert set(registry.models) == {"mf", "dense", "lstm"}
    if keep == 1:
        # The first version's files are gone: the load moved on to the version that replaced it.
        assert registry.store_version != first.store_version
        assert not (tmp_path / first.models["mf"].file).exists()
    else:
        assert registry.store_version == first.store_version


def test_keep_must_be_positive(data: MovieLens, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="at least 1"):
        _export(data, tmp_path, seed=0, keep=0)
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_the_manifest_is_world_readable_and_fsynced_like_the_other_files(data: MovieLens, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        manifest = _export(data, tmp_path, seed=0)
    finally:
        os.umask(old)
    for path in (tmp_path / MANIFEST_FILE, tmp_path / VERSIONS_DIR / f"{manifest.store_version}.json"):
        assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / VERSIONS_DIR).glob(".*"))
    version_file = tmp_path / VERSIONS_DIR / f"{manifest.store_version}.json"
    assert (tmp_path / MANIFEST_FILE).read_bytes() == version_file.read_bytes()


# --- a lasting rollback on the store's side -----------------------------------------------------------------


def test_activate_points_the_live_manifest_at_a_kept_version(
    data: MovieLens, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _export(data, tmp_path, seed=0)
    second = _export(data, tmp_path, seed=1)
    assert export.main(["list", "--out", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listed] == [
        ["*", second.store_version],
        [first.store_version, "mf-" + first.models["mf"].sha256[:12]],
    ]
    assert export.main(["activate", "--out", str(tmp_path), first.store_version]) == 0
    assert _live(tmp_path) == first
    assert ModelRegistry.load(tmp_path).store_version == first.store_version
    # The next export is newer than both and carries over from the activated version.
    third = _export(data, tmp_path, seed=2, names=("mf",))
    assert third.models["dense"] == first.models["dense"]


def test_activate_refuses_an_unknown_or_incomplete_version(
    data: MovieLens, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _export(data, tmp_path, seed=0)
    second = _export(data, tmp_path, seed=1)
    assert export.main(["activate", "--out", str(tmp_path), "20000101T000000000000Z-00000000"]) == 2
    assert "is not kept" in capsys.readouterr().err
    (tmp_path / first.models["lstm"].file).unlink()
    assert export.main(["activate", "--out", str(tmp_path), first.store_version]) == 2
    assert first.models["lstm"].file in capsys.readouterr().err
    assert _live(tmp_path) == second


def test_version_ids_keep_their_order_when_the_clock_goes_back(
    data: MovieLens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _export(data, tmp_path, seed=0)

    class Earlier(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Earlier:  # type: ignore[override]
            return cls(2000, 1, 1, tzinfo=tz)

    monkeypatch.setattr(export, "datetime", Earlier)
    second = _export(data, tmp_path, seed=1)
    assert second.store_version > first.store_version
    assert [v.id for v in store.list_versions(tmp_path)] == [first.store_version, second.store_version]
    assert store.previous_version_id(tmp_path, second.store_version) == first.store_version
