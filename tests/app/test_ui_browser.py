"""The try-it page at / in a real headless Chromium: type a title, rate films, read each model's
recommendations, explanations and similar films off the page (issue 18)."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.app.browser import CHROMIUM, HEIGHT, WIDTH, Page, chromium, rate, serve
from tests.conftest import SyntheticStore

RATINGS = ((1007, 5), (1012, 4), (1033, 2))  # synthetic titles: "Synthetic Movie 1007 (1957)", ...


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    # `make test` installs it (scripts/system-deps.sh); without it this required test fails, never skips.
    assert os.access(CHROMIUM, os.X_OK), "chromium not installed; run scripts/system-deps.sh"


@pytest.fixture(scope="module")
def server(synthetic_store: SyntheticStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(synthetic_store.path, tmp_path_factory.mktemp("uvicorn") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with chromium(tmp_path_factory.mktemp("chromium") / "profile") as tab:
        tab.goto(f"{server}/")
        yield tab


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_typing_a_title_finds_it(page: Page) -> None:
    page.type("#search", "synthetic movie 1007")
    page.wait_for("document.querySelector('#results li[data-item-id=\"1007\"]') !== null")
    assert page.texts("#results li .title")[0] == "Synthetic Movie 1007 (1957)"


def test_rating_films_shows_every_models_recommendations(page: Page, server: str, tmp_path: Path) -> None:
    for item_id, stars in RATINGS:
        rate(page, f"movie {item_id}", item_id, stars)
    page.wait_for("document.getElementById('recommendations').dataset.state === 'ready'")
    assert page.texts("#rated li .title") == [f"Synthetic Movie {i} ({1950 + i % 50})" for i, _ in RATINGS]
    items, ratings = [i for i, _ in RATINGS], [s for _, s in RATINGS]
    for model in ("mf", "dense", "lstm"):
        shown = page.evaluate(f"[...document.querySelectorAll('#recs-{model} li')].map(e => +e.dataset.itemId)")
        expected = _post(
            f"{server}/recommend", {"items": items, "ratings": ratings, "model": model, "k": 5, "explain": True}
        )
        assert shown == [i["item_id"] for i in expected["items"]], model
        assert not set(shown) & set(items)
        assert page.texts(f"#recs-{model} li .title") == [i["title"] for i in expected["items"]]
    because = page.texts(".because")
    assert because and all(
        re.fullmatch(r"because you liked Synthetic Movie 10(07|12) \(\d{4}\)( and .+)?", b) for b in because
    )
    page.wait_for("[...document.querySelectorAll('.similar')].every(e => e.textContent.startsWith('Similar: '))")
    page.screenshot(tmp_path / "ui.png")
    png = (tmp_path / "ui.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (WIDTH, HEIGHT)


def test_the_page_and_its_assets_come_from_this_server(client: TestClient) -> None:
    html = client.get("/").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert urls and all(u.startswith("/") for u in urls), urls
    for asset in ("/static/ui/app.js", "/static/ui/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 500, asset
        assert "http://" not in r.text and "https://" not in r.text
    assert client.get("/static/docs/swagger-ui.css").status_code == 200  # the docs' assets are not shadowed


def test_the_page_is_package_data() -> None:
    from importlib.resources import files

    static = files("app") / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "app.js", "style.css"}
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'app = ["static/*"]' in pyproject
