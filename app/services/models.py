"""What is loaded: each model's version, checksum, training record and held-out metrics."""

from __future__ import annotations

from app.registry import LoadedModel, ModelRegistry
from app.schemas import ModelInfo, ModelsResponse


def list_models(*, registry: ModelRegistry) -> ModelsResponse:
    """Every loaded model, with the data set they were trained on."""
    manifest = registry.manifest
    return ModelsResponse(
        schema_version=manifest.schema_version,
        dataset=manifest.dataset,
        models=[_info(m) for m in registry.models.values()],
    )


def get_model(*, registry: ModelRegistry, model: str) -> ModelInfo:
    """One loaded model; `UnknownModelError` names the loaded ones."""
    return _info(registry.model(model))


def _info(loaded: LoadedModel) -> ModelInfo:
    # ModelInfo is the manifest entry plus how the model scores.
    return ModelInfo(kind=loaded.kind, **loaded.entry.model_dump())
