"""/docs and /redoc render in a real headless Chromium with no internet: the assets come from this server.

A uvicorn subprocess serves the synthetic store on a free loopback port; Chromium dumps the DOM after its
JavaScript ran, and the operations Swagger UI / ReDoc render from /openapi.json must be in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.browser import serve
from tests.conftest import SyntheticStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    # `make test` installs it (scripts/system-deps.sh); without it this required test fails, never skips.
    assert os.access(CHROMIUM, os.X_OK), "chromium not installed; run scripts/system-deps.sh"


@pytest.fixture(scope="module")
def server(synthetic_store: SyntheticStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(synthetic_store.path, tmp_path_factory.mktemp("uvicorn") / "server.log") as url:
        yield url


def _rendered_dom(url: str, tmp_path: Path) -> str:
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_swagger_ui_renders_every_operation(server: str, tmp_path: Path) -> None:
    dom = _rendered_dom(f"{server}/docs", tmp_path)
    assert "opblock" in dom, dom[:2000]
    for path in (
        "/predict/{model}",
        "/predict/lstm",
        "/recommend/{user_id}",
        "/recommend",
        "/items/{item_id}/similar",
    ):
        assert f'data-path="{path}"' in dom, path
    assert "Unable to render this definition" not in dom


def test_redoc_renders_every_operation(server: str, tmp_path: Path) -> None:
    dom = _rendered_dom(f"{server}/redoc", tmp_path)
    for text in (
        "/predict/{model}",
        "/recommend/{user_id}",
        "/items/{item_id}/similar",
        "Movie recommendations",
    ):
        assert text in dom, text
