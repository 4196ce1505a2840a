"""Hot reload: load the model store again and swap it in while requests keep being served.

Called by ``POST /admin/reload`` and on SIGHUP. The new registry is loaded, verified and warmed in a worker
thread (`RegistryHolder.reload`); only a complete one is swapped in, in one assignment. Requests already
running finish on the registry they started with. A store that fails to load changes nothing: the previous
models keep serving, ``/ready`` stays 200, and the caller gets `ReloadFailedError` with the reason.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from app.errors import RegistryError, ReloadFailedError
from app.metrics import ServiceMetrics
from app.registry import ModelRegistry, RegistryHolder
from app.schemas import ReloadResponse

log = logging.getLogger(__name__)


async def reload_models(
    *, holder: RegistryHolder, directory: Path, metrics: ServiceMetrics, trigger: str
) -> ReloadResponse:
    """Load the store in `directory` and serve it from now on; `ReloadFailedError` if it cannot be loaded."""
    log.info("reloading model store", extra={"trigger": trigger, "directory": str(directory)})
    try:
        previous, registry = await holder.reload(directory)
    except RegistryError as e:
        metrics.reloads.labels("failure").inc()
        serving = versions(holder.registry)
        log.error(
            "reload failed, still serving the previous models: %s",
            e.message,
            extra={"trigger": trigger, "models": _joined(serving)},
        )
        raise ReloadFailedError(
            f"reload failed; still serving the previous models: {e.message}", models=serving
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
            "models": _joined(after),
            "changed": ",".join(changed) or "none",
            "load_seconds": round(registry.load_seconds, 3),
        },
    )
    return ReloadResponse(previous=before, models=after, changed=changed, load_seconds=round(registry.load_seconds, 3))


def versions(registry: ModelRegistry | None) -> dict[str, str]:
    """Model name -> version of `registry` (empty for none)."""
    return {} if registry is None else {name: m.version for name, m in registry.models.items()}


def _joined(models: dict[str, str]) -> str:
    return ",".join(models.values())
