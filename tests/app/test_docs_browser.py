"""/docs and /redoc render in a real headless Chromium with no internet: the assets come from this server.

A uvicorn subprocess serves the synthetic store on a free loopback port; Chromium dumps the DOM after its
JavaScript ran, and the operations Swagger UI / ReDoc render from /openapi.json must be in it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SyntheticStore

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    # `make test` installs it (scripts/system-deps.sh); without it this required test fails, never skips.
    assert os.access(CHROMIUM, os.X_OK), "chromium not installed; run scripts/system-deps.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(synthetic_store: SyntheticStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    env = {**os.environ, "RECSYS_MODELS_DIR": str(synthetic_store.path)}
    argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen([*argv, "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not become ready:\n{log.read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


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
