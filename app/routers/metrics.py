"""GET /metrics: Prometheus text format (request counts and latencies, model versions, process)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import MetricsDep

router = APIRouter(tags=["health"])


# Not in the OpenAPI document: it is for the scraper, not for API clients, and is not JSON.
@router.get("/metrics", include_in_schema=False)
async def get_metrics(metrics: MetricsDep) -> Response:
    """Expose the service's Prometheus metrics."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
