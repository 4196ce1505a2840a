"""GET /: a page to try the service — search films, rate a few, see each model's recommendations.

Plain HTML, CSS and JavaScript from the package's ``static/`` directory (package data, no build step, no CDN):
the page calls the public API only (`GET /items?q=`, `POST /recommend`, `GET /items/{id}/similar`).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
STATIC = files("app") / "static"


@router.get("/", response_class=HTMLResponse)
async def get_page() -> HTMLResponse:
    """The try-it page."""
    return HTMLResponse(STATIC.joinpath("index.html").read_text(encoding="utf-8"))


def mount_static(app: FastAPI) -> None:
    """Serve ``app/static`` at ``/static/ui`` (beside the offline docs assets at ``/static/docs``)."""
    app.mount("/static/ui", StaticFiles(packages=[("app", "static")]), name="ui-static")
