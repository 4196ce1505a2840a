"""GET /health (the process serves) and GET /ready (every model loaded and warmed)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import RegistryDep
from app.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def get_health() -> HealthResponse:
    """Report that the process is up (liveness)."""
    return HealthResponse()


@router.get(
    "/ready",
    responses={503: {"model": ErrorResponse, "description": "Models not loaded; detail says why"}},
)
async def get_readiness(registry: RegistryDep) -> ReadyResponse:
    """Report whether every model is loaded and warmed (readiness); 503 with the reason if not."""
    return ReadyResponse(
        models={name: m.version for name, m in registry.models.items()},
        dataset_split=registry.manifest.dataset.split,
        load_seconds=round(registry.load_seconds, 3),
    )
