"""Hot reload and rollback: load a model store version and swap it in while requests keep being served.

Called by ``POST /admin/reload``, ``POST /admin/rollback`` and on SIGHUP. The new registry is loaded, verified
and warmed in a worker thread (`RegistryHolder.reload`); only a complete one is swapped in, in one assignment.
Requests already running finish on the registry they started with. A store that fails to load changes nothing:
the previous models keep serving, ``/ready`` stays 200, and the caller gets `ReloadFailedError` with the reason.

Which version: a plain reload (and SIGHUP, and start-up) serves the store's live ``manifest.json``; a reload
naming a kept ``version``, or a rollback (the newest kept version older than the one served), serves that one
in this process until the next plain reload. The service never writes to the store (it may be mounted
read-only); making a rollback survive restarts is the store's job (``python -m training.export activate``).

Never silently fewer models: a reload whose store lacks a model being served is refused unless the caller
allows the removal (``allow_removal``).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import anyio.to_thread

from app import store
from app.errors import RegistryError, ReloadFailedError
from app.metrics import ServiceMetrics
from app.registry import ModelRegistry, RegistryHolder
from app.schemas import ReloadResponse

log = logging.getLogger(__name__)


async def reload_models(
    *,
    holder: RegistryHolder,
    directory: Path,
    metrics: ServiceMetrics,
    trigger: str,
    version: str | None = None,
    allow_removal: bool = False,
) -> ReloadResponse:
    """Load the live store in `directory` (or its kept `version`) and serve it from now on; `ReloadFailedError`
    if it cannot be loaded or would remove a served model without `allow_removal`."""
    log.info(
        "reloading model store",
        extra={"trigger": trigger, "directory": str(directory), "store_version": version or "live"},
    )

    def accept(current: ModelRegistry | None, new: ModelRegistry) -> None:
        removed = sorted(set(versions(current)) - set(new.models))
        if removed and not allow_removal:
            raise RegistryError(
                f"store version {new.store_version} lacks {', '.join(removed)}, which are being served; "
                "reload with allow_removal=true to serve without them",
                removed=removed,
            )

    try:
        previous, registry = await holder.reload(directory, version=version, accept=accept)
    except RegistryError as e:
        metrics.reloads.labels("failure").inc()
        serving = versions(holder.registry)
        log.error(
            "reload failed, still serving the previous models: %s",
            e.message,
            extra={"trigger": trigger, "models": _joined(serving)},
        )
        raise ReloadFailedError(
            f"reload failed; still serving the previous models: {e.message}", models=serving, **e.extra
        ) from None
    except Exception:
        metrics.reloads.labels("failure").inc()
        raise
    metrics.reloads.labels("success").inc()
    gc.freeze()  # the new registry joins the startup objects the garbage collector skips (see app.main)
    before, after = versions(previous), versions(registry)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    log.info(
        "reloaded model store",
        extra={
            "trigger": trigger,
            "store_version": registry.store_version,
            "models": _joined(after),
            "changed": ",".join(changed) or "none",
            "load_seconds": round(registry.load_seconds, 3),
        },
    )
    return ReloadResponse(
        previous=before,
        models=after,
        changed=changed,
        load_seconds=round(registry.load_seconds, 3),
        previous_store_version=None if previous is None else previous.store_version,
        store_version=registry.store_version,
    )


async def rollback_models(
    *, holder: RegistryHolder, directory: Path, metrics: ServiceMetrics, trigger: str, allow_removal: bool = False
) -> ReloadResponse:
    """Serve the newest kept store version older than the one served now; `ReloadFailedError` if none is
    kept or it cannot be loaded."""
    current = holder.get().store_version
    try:
        target = await anyio.to_thread.run_sync(store.previous_version_id, directory, current)
    except RegistryError as e:
        metrics.reloads.labels("failure").inc()
        raise ReloadFailedError(
            f"rollback failed; still serving the previous models: {e.message}", models=versions(holder.registry)
        ) from None
    return await reload_models(
        holder=holder,
        directory=directory,
        metrics=metrics,
        trigger=trigger,
        version=target,
        allow_removal=allow_removal,
    )


def versions(registry: ModelRegistry | None) -> dict[str, str]:
    """Model name -> version of `registry` (empty for none)."""
    return {} if registry is None else {name: m.version for name, m in registry.models.items()}


def _joined(models: dict[str, str]) -> str:
    return ",".join(models.values())
