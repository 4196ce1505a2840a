"""Loading the model store: each way it can break is refused at start-up, naming the file and the fault."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.artifacts import MANIFEST_FILE, SCHEMA_VERSION
from app.errors import RegistryError
from app.main import create_app
from app.registry import ModelRegistry
from app.settings import Settings
from tests.conftest import N_ITEMS, N_USERS
from training.export import save_module, script
from training.networks import MatrixFactorization

REPO = Path(__file__).resolve().parents[2]


def _manifest(store: Path) -> dict[str, Any]:
    return json.loads((store / MANIFEST_FILE).read_text())  # type: ignore[no-any-return]


def _edit_manifest(store: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = _manifest(store)
    edit(manifest)
    (store / MANIFEST_FILE).write_text(json.dumps(manifest))


def _replace_file(store: Path, ref: Callable[[dict[str, Any]], dict[str, Any]], data: bytes) -> Path:
    """Overwrite a referenced file with `data` and record its true checksum (and, for a model, the version and
    file name derived from it), so only its content is wrong."""
    manifest = _manifest(store)
    entry = ref(manifest)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    if "version" in entry:
        entry["version"] = f"{entry['name']}-{entry['sha256'][:12]}"
        (store / entry["file"]).unlink()
        entry["file"] = f"{entry['version']}.pt"
    path: Path = store / entry["file"]
    path.write_bytes(data)
    (store / MANIFEST_FILE).write_text(json.dumps(manifest))
    return path


def _saved(network: torch.nn.Module, name: str = "mf") -> bytes:
    """`network` as export writes it, naming itself the model `name`."""
    buffer = io.BytesIO()
    save_module(script(network), buffer, name=name)
    return buffer.getvalue()


def _load_fails(store: Path, *fragments: str) -> str:
    with pytest.raises(RegistryError) as info:
        ModelRegistry.load(store)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_intact_store_loads(store_copy: Path) -> None:
    registry = ModelRegistry.load(store_copy)
    assert set(registry.models) == {"mf", "dense", "lstm"}
    assert registry.n_users == N_USERS and registry.n_items == N_ITEMS


def test_missing_store_directory(tmp_path: Path) -> None:
    _load_fails(tmp_path / "nowhere", str(tmp_path / "nowhere"), "does not exist", "RECSYS_MODELS_DIR")


def test_directory_without_manifest(tmp_path: Path) -> None:
    _load_fails(tmp_path, str(tmp_path / MANIFEST_FILE), "not found")


def test_manifest_that_is_not_json(store_copy: Path) -> None:
    (store_copy / MANIFEST_FILE).write_text("{not json")
    _load_fails(store_copy, MANIFEST_FILE, "JSON")


@pytest.mark.parametrize(("version", "hint"), [(SCHEMA_VERSION + 1, "upgrade the service"), (0, "re-export")])
def test_other_schema_versions_are_refused(store_copy: Path, version: int, hint: str) -> None:
    _edit_manifest(store_copy, lambda m: m.update(schema_version=version))
    _load_fails(store_copy, f"schema_version {version}", f"reads schema {SCHEMA_VERSION}", hint)


def test_manifest_with_missing_fields(store_copy: Path) -> None:
    _edit_manifest(store_copy, lambda m: m["models"]["mf"].pop("sha256"))
    _load_fails(store_copy, MANIFEST_FILE, "models.mf.sha256")


@pytest.mark.parametrize("which", ["catalog", "histories", "models.mf", "models.lstm"])
def test_a_missing_file_is_named(store_copy: Path, which: str) -> None:
    entry = _manifest(store_copy)
    for key in which.split("."):
        entry = entry[key]
    (store_copy / entry["file"]).unlink()
    _load_fails(store_copy, str(store_copy / entry["file"]), "listed in manifest.json but missing")


def test_truncated_catalog_even_with_a_matching_checksum(store_copy: Path) -> None:
    data = (store_copy / _manifest(store_copy)["catalog"]["file"]).read_bytes()[:500]
    path = _replace_file(store_copy, lambda m: m["catalog"], data)
    _load_fails(store_copy, path.name, "does not match the catalog schema")


@pytest.mark.parametrize("which", ["mf", "dense", "lstm"])
def test_checksum_mismatch_is_refused_before_loading(store_copy: Path, which: str) -> None:
    name = _manifest(store_copy)["models"][which]["file"]
    data = bytearray((store_copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (store_copy / name).write_bytes(bytes(data))
    _load_fails(store_copy, name, "SHA-256 mismatch", "re-export")


def test_truncated_model_with_its_old_checksum(store_copy: Path) -> None:
    name = _manifest(store_copy)["models"]["lstm"]["file"]
    path = store_copy / name
    path.write_bytes(path.read_bytes()[:1000])
    _load_fails(store_copy, name, "SHA-256 mismatch", "1000 bytes")


def test_truncated_model_even_with_a_matching_checksum(store_copy: Path) -> None:
    data = (store_copy / _manifest(store_copy)["models"]["mf"]["file"]).read_bytes()[:2000]
    path = _replace_file(store_copy, lambda m: m["models"]["mf"], data)
    _load_fails(store_copy, path.name, "torch.jit.load failed")


def test_a_model_of_the_wrong_kind(store_copy: Path) -> None:
    data = (store_copy / _manifest(store_copy)["models"]["mf"]["file"]).read_bytes()
    path = _replace_file(store_copy, lambda m: m["models"]["lstm"], data)
    _load_fails(store_copy, path.name, "must export score_next")


def test_a_model_built_for_another_catalog(store_copy: Path) -> None:
    path = _replace_file(store_copy, lambda m: m["models"]["mf"], _saved(MatrixFactorization(N_USERS, N_ITEMS - 10, 4)))
    _load_fails(store_copy, path.name, "warm-up call failed")


def test_a_model_that_answers_nan(store_copy: Path) -> None:
    network = MatrixFactorization(N_USERS, N_ITEMS, dim=4)
    with torch.no_grad():
        network.global_bias.fill_(float("nan"))
    path = _replace_file(store_copy, lambda m: m["models"]["mf"], _saved(network))
    _load_fails(store_copy, path.name, "global_bias", "NaN or infinity")


def test_catalog_that_disagrees_with_the_manifest(store_copy: Path) -> None:
    _edit_manifest(store_copy, lambda m: m["dataset"].update(n_items=N_ITEMS + 1))
    _load_fails(store_copy, "catalog", f"{N_ITEMS} items", f"says {N_USERS} and {N_ITEMS + 1}")


def test_histories_with_pickled_objects_are_never_unpickled(store_copy: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, indptr=np.zeros(N_USERS + 2, dtype=np.int64), items=np.array([{"x": 1}], dtype=object))
    path = _replace_file(store_copy, lambda m: m["histories"], buffer.getvalue())
    _load_fails(store_copy, path.name, "allow_pickle=False")


def test_histories_missing_an_array(store_copy: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, indptr=np.zeros(N_USERS + 2, dtype=np.int64))
    path = _replace_file(store_copy, lambda m: m["histories"], buffer.getvalue())
    _load_fails(store_copy, path.name, "missing arrays items, ratings, popularity")


def test_file_names_may_not_leave_the_store(store_copy: Path) -> None:
    _edit_manifest(store_copy, lambda m: m["catalog"].update(file="../catalog.json"))
    _load_fails(store_copy, "'../catalog.json' is not a plain file name")


def test_the_app_refuses_to_start_on_a_broken_store(store_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    _edit_manifest(store_copy, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    app = create_app(Settings(models_dir=store_copy))
    with pytest.raises(RegistryError, match="schema_version"), TestClient(app):
        pass
    assert any("refusing to start" in r.getMessage() and "schema_version" in r.getMessage() for r in caplog.records)
    # Nothing half-loaded is left behind to serve from.
    assert app.state.registry_holder.registry is None
    assert "schema_version" in app.state.registry_holder.reason


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_uvicorn_exits_non_zero_with_a_clear_message(store_copy: Path) -> None:
    name = _manifest(store_copy)["models"]["dense"]["file"]
    (store_copy / name).write_bytes(b"not a model")
    env = {**os.environ, "RECSYS_MODELS_DIR": str(store_copy)}
    argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(_free_port())]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"refusing to start: {store_copy / name}: SHA-256 mismatch" in done.stderr, done.stderr


def test_uvicorn_serves_ready_on_the_intact_store(store_copy: Path) -> None:
    port = _free_port()
    env = {**os.environ, "RECSYS_MODELS_DIR": str(store_copy)}
    argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(port)]
    server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=20)
