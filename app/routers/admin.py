"""POST /admin/reload and /admin/rollback: swap in a model store version, guarded by the X-API-Key header.

With no ``RECSYS_ADMIN_API_KEY`` configured the admin endpoints are off (404). The key is compared in
constant time (`secrets.compare_digest` on bytes, so any header value is compared, never a TypeError) and
never logged or echoed.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query

from app.artifacts import STORE_VERSION_PATTERN
from app.deps import MetricsDep, RegistryHolderDep, SettingsDep
from app.schemas import ErrorResponse, ReloadResponse
from app.services import admin as service

API_KEY_HEADER = "X-API-Key"


async def require_admin_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="The service's RECSYS_ADMIN_API_KEY")] = None,
) -> None:
    """404 while admin endpoints are off, 401 unless the header carries the configured key."""
    key = settings.admin_api_key
    if key is None:
        raise HTTPException(404, "admin endpoints are disabled; set RECSYS_ADMIN_API_KEY to enable them")
    given = (x_api_key or "").encode()
    if x_api_key is None or not secrets.compare_digest(given, key.get_secret_value().encode()):
        raise HTTPException(
            401,
            f"missing or wrong {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'},
        )


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses={
        401: {"model": ErrorResponse, "description": f"Missing or wrong {API_KEY_HEADER} header"},
        404: {"model": ErrorResponse, "description": "Admin endpoints are off (no RECSYS_ADMIN_API_KEY)"},
    },
)


RELOAD_FAILED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "The store version could not be loaded, is not kept, or lacks a served model (`removed`) "
        "without allow_removal; the previous models keep serving (`models`)",
    }
}
AllowRemoval = Annotated[
    bool,
    Query(description="Serve the new version even if it lacks a model being served now (which then 404s)"),
]


@router.post("/reload", responses=RELOAD_FAILED)
async def reload_models(
    holder: RegistryHolderDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    version: Annotated[
        str | None,
        Query(
            pattern=STORE_VERSION_PATTERN,
            description="A kept store version (see GET /models) to serve instead of the live manifest.json",
        ),
    ] = None,
    allow_removal: AllowRemoval = False,
) -> ReloadResponse:
    """Reload the model store from RECSYS_MODELS_DIR and serve it without dropping a request."""
    return await service.reload_models(
        holder=holder,
        directory=settings.models_dir,
        metrics=metrics,
        trigger="http",
        version=version,
        allow_removal=allow_removal,
    )


@router.post("/rollback", responses=RELOAD_FAILED)
async def rollback_models(
    holder: RegistryHolderDep, settings: SettingsDep, metrics: MetricsDep, allow_removal: AllowRemoval = False
) -> ReloadResponse:
    """Serve the kept store version before the one served now (until the next plain reload or restart)."""
    return await service.rollback_models(
        holder=holder, directory=settings.models_dir, metrics=metrics, trigger="http", allow_removal=allow_removal
    )
