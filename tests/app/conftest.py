"""App fixtures: a client with the lifespan run (models loaded) on the synthetic store, and broken copies."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import SyntheticStore


@pytest.fixture(scope="session")
def client(synthetic_store: SyntheticStore) -> Iterator[TestClient]:
    """One app for the whole session: loading is the slow part, and no test mutates the app."""
    with TestClient(create_app(Settings(models_dir=synthetic_store.path))) as test_client:
        yield test_client


@pytest.fixture
def store_copy(synthetic_store: SyntheticStore, tmp_path: Path) -> Path:
    """A private copy of the synthetic store that a test may break."""
    copy = tmp_path / "store"
    shutil.copytree(synthetic_store.path, copy)
    return copy
