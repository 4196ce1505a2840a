"""POST /admin/reload: swap in a freshly loaded model store, guarded by the X-API-Key header.

With no ``RECSYS_ADMIN_API_KEY`` configured the admin endpoints are off (404). The key is compared in
constant time (`secrets.compare_digest` on bytes, so any header value is compared, never a TypeError) and
never logged or echoed.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException

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


@router.post(
    "/reload",
    responses={
        409: {
            "model": ErrorResponse,
            "description": "The store could not be loaded; the previous models keep serving (`models`)",
        }
    },
)
async def reload_models(holder: RegistryHolderDep, settings: SettingsDep, metrics: MetricsDep) -> ReloadResponse:
    """Reload the model store from RECSYS_MODELS_DIR and serve it without dropping a request."""
    return await service.reload_models(holder=holder, directory=settings.models_dir, metrics=metrics, trigger="http")
