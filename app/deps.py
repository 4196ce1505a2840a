"""Typed dependencies for handlers: ``registry: RegistryDep`` is the app's current, fully loaded registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.metrics import ServiceMetrics
from app.registry import ModelRegistry, RegistryHolder
from app.schemas import CATALOG_BOUND, DECIMAL_DIGITS, DECIMAL_NOTE, MAX_ID
from app.settings import Settings

# `?k=`: how many items a list holds, shared by every route that returns a top-k list.
TopK = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_ID,
        description="How many items; at most the catalog size (`maximum`)" + DECIMAL_NOTE,
        json_schema_extra=CATALOG_BOUND,
    ),
    DECIMAL_DIGITS,
]


# Async although they do not await: FastAPI runs a sync dependency in its thread pool, a hop per request that
# costs more than these attribute lookups.
async def get_registry_holder(request: Request) -> RegistryHolder:
    holder: RegistryHolder = request.app.state.registry_holder
    return holder


async def get_registry(request: Request) -> ModelRegistry:
    """The registry being served; `NotReadyError` (503) while there is none.

    Resolved once per request (FastAPI caches a dependency within a request), so a handler and everything it
    calls use one registry even if a hot reload swaps in another meanwhile.
    """
    holder: RegistryHolder = request.app.state.registry_holder
    return holder.get()


def registry_of(request: Request) -> ModelRegistry:
    """`get_registry` called from a handler: the hot routes read the registry once, first thing, instead of
    declaring `RegistryDep`. A sub-dependency is a resolution step (and an await) per request in FastAPI's
    solver, ~15 us of a ~250 us request; the semantics are the same (one registry for the whole request)."""
    holder: RegistryHolder = request.app.state.registry_holder
    return holder.get()


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
# For endpoints that manage the service itself (reload, admin): the holder to swap, and the settings.
RegistryHolderDep = Annotated[RegistryHolder, Depends(get_registry_holder)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
