"""GET /models and GET /models/{model}: what is loaded and how well it did on held-out data."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import RegistryDep
from app.schemas import ERROR_RESPONSES, ModelInfo, ModelsResponse
from app.services import models as service

router = APIRouter(prefix="/models", tags=["models"], responses={404: ERROR_RESPONSES[404]})


@router.get("")
async def list_models(registry: RegistryDep) -> ModelsResponse:
    """List the loaded models (versions, checksums, training data, metrics) and the kept store versions."""
    return await service.list_models(registry=registry)


@router.get("/{model}")
async def get_model(model: str, registry: RegistryDep) -> ModelInfo:
    """Get one loaded model's version, checksum, hyperparameters and metrics."""
    return service.get_model(registry=registry, model=model)
