"""Load-time checks that do not take the manifest's word: versions tied to checksums, the model inside the
archive, every table finite, regular files inside the store only, and manifests that are not manifests."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.artifacts import MANIFEST_FILE
from app.errors import RegistryError, ReloadFailedError
from app.main import create_app
from app.registry import ModelRegistry
from app.services.admin import reload_models
from app.settings import Settings
from tests.app.test_startup import _edit_manifest, _load_fails, _manifest, _replace_file, _saved
from tests.conftest import N_ITEMS, N_USERS, SyntheticStore
from training.export import script
from training.networks import MatrixFactorization, SequenceLSTM

KEY = "test-admin-key-0123456789"
AUTH = {"X-API-Key": KEY}


# --- versions and the model inside the archive --------------------------------------------------------------


def test_a_version_not_derived_from_the_checksum_is_refused(store_copy: Path) -> None:
    _edit_manifest(store_copy, lambda m: m["models"]["dense"].update(version="dense-000000000000"))
    _load_fails(store_copy, "'dense'", "dense-000000000000", "SHA-256 makes them")


def test_a_file_name_not_derived_from_the_checksum_is_refused(store_copy: Path) -> None:
    entry = _manifest(store_copy)["models"]["mf"]
    shutil.copy(store_copy / entry["file"], store_copy / "mf-latest.pt")
    _edit_manifest(store_copy, lambda m: m["models"]["mf"].update(file="mf-latest.pt"))
    _load_fails(store_copy, "'mf-latest.pt'", "SHA-256 makes them")


def test_a_dense_entry_cannot_serve_mf_weights(store_copy: Path) -> None:
    # Consistent name, checksum and version, all of the mf file: it used to be served as "dense".
    mf = _manifest(store_copy)["models"]["mf"]
    data = (store_copy / mf["file"]).read_bytes()
    path = _replace_file(store_copy, lambda m: m["models"]["dense"], data)
    assert path.name.startswith("dense-")
    _load_fails(store_copy, path.name, "holds a 'mf' model", "lists it as 'dense'")


def test_a_module_that_does_not_name_its_model_is_refused(store_copy: Path) -> None:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.jit.save(script(MatrixFactorization(N_USERS, N_ITEMS, 4)), buffer)  # no recsys.json inside
    path = _replace_file(store_copy, lambda m: m["models"]["mf"], buffer.getvalue())
    _load_fails(store_copy, path.name, "carries no recsys.json")


# --- every row finite ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "table"),
    [("mf", "user_bias"), ("mf", "item_bias"), ("lstm", "user_taste")],
)
def test_a_nan_in_one_users_or_items_row_is_refused(
    store_copy: Path, synthetic_store: SyntheticStore, name: str, table: str
) -> None:
    # Row 5: neither the first nor the last index, which the warm-up calls. Such a model used to load and then
    # answer that user (or item) with "rating": null and empty recommendation pages.
    network = copy.deepcopy(synthetic_store.networks[name])
    tensor = getattr(network, table)
    target = tensor.weight if isinstance(tensor, torch.nn.Embedding) else tensor
    with torch.no_grad():
        target[5] = float("nan")
    path = _replace_file(store_copy, lambda m: m["models"][name], _saved(network, name))
    _load_fails(store_copy, path.name, "contain NaN or infinity")


def test_the_tables_exist_where_the_nan_test_puts_them(synthetic_store: SyntheticStore) -> None:
    # Guards the test above: it must break a real per-user / per-item table, not add a stray attribute.
    mf, lstm = synthetic_store.networks["mf"], synthetic_store.networks["lstm"]
    assert isinstance(mf, MatrixFactorization) and isinstance(lstm, SequenceLSTM)
    for network, table, rows in (
        (mf, "user_bias", N_USERS + 1),
        (mf, "item_bias", N_ITEMS + 1),
        (lstm, "user_taste", N_USERS + 1),
    ):
        tensor = getattr(network, table)
        target = tensor.weight if isinstance(tensor, torch.nn.Embedding) else tensor
        assert target.shape[0] == rows


# --- regular files inside the store only --------------------------------------------------------------------


def test_a_symlink_out_of_the_store_is_not_followed(store_copy: Path, tmp_path: Path) -> None:
    # Even when the target has exactly the bytes the manifest expects: a store holds its own files.
    catalog = _manifest(store_copy)["catalog"]["file"]
    outside = tmp_path / "outside.json"
    shutil.move(store_copy / catalog, outside)
    (store_copy / catalog).symlink_to(outside)
    _load_fails(store_copy, catalog, "is a symlink")


def test_a_symlinked_manifest_is_refused(store_copy: Path, tmp_path: Path) -> None:
    shutil.move(store_copy / MANIFEST_FILE, tmp_path / "elsewhere.json")
    (store_copy / MANIFEST_FILE).symlink_to(tmp_path / "elsewhere.json")
    _load_fails(store_copy, MANIFEST_FILE, "is a symlink")


@pytest.mark.parametrize("which", ["histories", "manifest"])
def test_a_fifo_is_refused_without_blocking(store_copy: Path, which: str) -> None:
    # Opening a FIFO for reading blocks until a writer comes: the reload used to hang forever, holding its lock.
    if which == "manifest":
        path = store_copy / MANIFEST_FILE
    else:
        path = store_copy / _manifest(store_copy)["histories"]["file"]
    path.unlink()
    os.mkfifo(path)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            ModelRegistry.load(store_copy)
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():  # unblock the reader so the test process can finish
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(20)
        pytest.fail(f"loading a store whose {which} is a FIFO blocked")
    [error] = outcome
    assert isinstance(error, RegistryError), error
    assert "not a regular file" in str(error)


def test_a_directory_in_place_of_a_file_is_refused(store_copy: Path) -> None:
    path = store_copy / _manifest(store_copy)["catalog"]["file"]
    path.unlink()
    path.mkdir()
    _load_fails(store_copy, path.name, "not a regular file")


# --- manifests that are not manifests -----------------------------------------------------------------------

DEEP = 100_000


def _deep(store: Path) -> None:
    text = '{"schema_version": 2, "models": ' + "[" * DEEP + "]" * DEEP + "}"
    (store / MANIFEST_FILE).write_text(text)


def test_a_deeply_nested_manifest_is_a_registry_error(store_copy: Path) -> None:
    _deep(store_copy)
    _load_fails(store_copy, MANIFEST_FILE, "nested too deeply")


def test_a_deeply_nested_manifest_at_start_up_is_one_clear_line(
    store_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _deep(store_copy)
    app = create_app(Settings(models_dir=store_copy))
    with pytest.raises(RegistryError, match="nested too deeply"), TestClient(app):
        pass
    [line] = [r for r in caplog.records if "refusing to start" in r.getMessage()]
    assert "nested too deeply" in line.getMessage() and line.exc_info is None


@pytest.fixture
def admin_client(store_copy: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=store_copy, admin_api_key=KEY))) as client:
        yield client


def test_a_deeply_nested_manifest_on_reload_is_409_and_keeps_serving(
    admin_client: TestClient, store_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = admin_client.get("/ready").json()["models"]
    _deep(store_copy)
    with caplog.at_level(logging.ERROR):
        r = admin_client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 409, r.text
    assert "nested too deeply" in r.json()["detail"]
    assert r.json()["models"] == before
    assert admin_client.get("/ready").json()["models"] == before
    assert not any(rec.exc_info for rec in caplog.records)


def test_an_oversized_manifest_is_refused_unread(store_copy: Path) -> None:
    with (store_copy / MANIFEST_FILE).open("r+b") as f:
        f.truncate(17 * 1024 * 1024)  # sparse: cheap to make, and refused on its size
    _load_fails(store_copy, MANIFEST_FILE, "more than the")


# --- a reload that would serve fewer models ------------------------------------------------------------------


def _only(models: list[str]) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        manifest["models"] = {k: v for k, v in manifest["models"].items() if k in models}

    return edit


def test_a_reload_that_removes_a_served_model_needs_allow_removal(admin_client: TestClient, store_copy: Path) -> None:
    before = admin_client.get("/ready").json()["models"]
    _edit_manifest(store_copy, _only(["mf"]))
    r = admin_client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["removed"] == ["dense", "lstm"] and "allow_removal=true" in body["detail"]
    assert admin_client.get("/ready").json()["models"] == before
    assert admin_client.post("/predict/lstm", json={"items": [1001]}).status_code == 200
    r = admin_client.post("/admin/reload", headers=AUTH, params={"allow_removal": "true"})
    assert r.status_code == 200, r.text
    assert list(r.json()["models"]) == ["mf"]
    assert admin_client.post("/predict/lstm", json={"items": [1001]}).status_code == 404


def test_a_reload_adding_models_needs_no_flag(store_copy: Path) -> None:
    full = (store_copy / MANIFEST_FILE).read_text()
    _edit_manifest(store_copy, _only(["mf", "dense"]))
    with TestClient(create_app(Settings(models_dir=store_copy, admin_api_key=KEY))) as client:
        (store_copy / MANIFEST_FILE).write_text(full)
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["changed"] == ["lstm"]


def test_sighup_reload_never_removes_a_model(store_copy: Path) -> None:
    app = create_app(Settings(models_dir=store_copy, admin_api_key=KEY))
    with TestClient(app) as client:
        _edit_manifest(store_copy, _only(["dense"]))
        with pytest.raises(ReloadFailedError, match="lacks lstm, mf"):
            asyncio.run(
                reload_models(
                    holder=app.state.registry_holder,
                    directory=store_copy,
                    metrics=app.state.metrics,
                    trigger="SIGHUP",
                )
            )
        assert set(client.get("/ready").json()["models"]) == {"mf", "dense", "lstm"}


def test_checksums_still_guard_the_catalog(store_copy: Path) -> None:
    # The version checks are for models; catalog and histories keep their SHA-256 check.
    ref = _manifest(store_copy)["catalog"]
    data = (store_copy / ref["file"]).read_bytes()
    (store_copy / ref["file"]).write_bytes(data[:-1] + b" ")
    assert hashlib.sha256((store_copy / ref["file"]).read_bytes()).hexdigest() != ref["sha256"]
    _load_fails(store_copy, ref["file"], "SHA-256 mismatch")
    assert json.loads(data)  # the original was valid
