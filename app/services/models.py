"""What is loaded: each model's version, checksum, training record and held-out metrics; the kept versions."""

from __future__ import annotations

import anyio.to_thread

from app import store
from app.handlers import ModelHandler
from app.registry import ModelRegistry
from app.schemas import ModelInfo, ModelsResponse, StoreVersionInfo


async def list_models(*, registry: ModelRegistry) -> ModelsResponse:
    """Every loaded model, with the data set they were trained on, and the store versions kept on disk."""
    manifest = registry.manifest
    # Read at request time, not at load: an export after the load adds a version a reload can then target.
    kept, live = await anyio.to_thread.run_sync(_on_disk, registry)
    versions = [
        StoreVersionInfo(
            id=v.id,
            created_at=None if v.manifest is None else v.manifest.created_at,
            models={} if v.manifest is None else {n: e.version for n, e in v.manifest.models.items()},
            live=v.id == live,
            serving=v.id == registry.store_version,
            problem=v.problem,
        )
        for v in reversed(kept)
    ]
    return ModelsResponse(
        schema_version=manifest.schema_version,
        store_version=registry.store_version,
        dataset=manifest.dataset,
        models=[_info(m) for m in registry.models.values()],
        versions=versions,
    )


def get_model(*, registry: ModelRegistry, model: str) -> ModelInfo:
    """One loaded model; `UnknownModelError` names the loaded ones."""
    return _info(registry.model(model))


def _on_disk(registry: ModelRegistry) -> tuple[list[store.StoreVersion], str | None]:
    return store.list_versions(registry.directory), store.live_version_id(registry.directory)


def _info(loaded: ModelHandler) -> ModelInfo:
    # ModelInfo derives from the manifest entry: every field of it, the kind included.
    return ModelInfo(**loaded.entry.model_dump())
