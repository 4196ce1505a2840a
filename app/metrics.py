"""Prometheus metrics of one app instance, served at ``GET /metrics``.

Every app gets its own `CollectorRegistry` (tests build many apps in one process; the global registry would
refuse the second). Labels are bounded sets: the route *template* (``/recommend/{user_id}``, never the raw
path), a known method or ``other``, the status code, a model name. Loaded versions are read from the
`RegistryHolder` at scrape time, so a scrape never sees a half-updated set during a reload.

With several uvicorn workers each process keeps its own numbers; see docs/service.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from app.registry import RegistryHolder

# Requests take ~1 ms; the tail of interest is 1-100 ms, anything past a second is an incident.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
UNMATCHED_ROUTE = "<unmatched>"  # every path no route matched: one label value, not one per path


class ServiceMetrics:
    """The metric objects the middleware, the handlers and a reload update."""

    def __init__(self, holder: RegistryHolder) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        self.requests = Counter(
            "recsys_http_requests",
            "HTTP requests answered, by route template, method and status",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Time from receiving a request to sending its last byte",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge("recsys_http_requests_in_progress", "Requests being served", registry=self.registry)
        self.model_requests = Counter(
            "recsys_model_requests",
            "Successful predict/recommend/similar answers, by route template and the model that ranked "
            "them ('popular' for the cold-start fallback)",
            ("route", "model"),
            registry=self.registry,
        )
        self.model_latency = Histogram(
            "recsys_model_request_duration_seconds",
            "Latency of successful predict/recommend/similar answers, by route template and model",
            ("route", "model"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reloads = Counter(
            "recsys_reloads",
            "Model store reloads (POST /admin/reload or SIGHUP), by result: success or failure",
            ("result",),
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self._series: dict[tuple[str, str, int, str | None], list[tuple[Counter, Histogram]]] = {}
        self.registry.register(_RegistryCollector(holder))
        # Resident memory, CPU seconds, open files, GC: what a soak test or a leak hunt looks at first.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float, model: str | None) -> None:
        # Normalised first, so that the cache has one entry per label set: bounded, as the labels are.
        method = method if method in METHODS else "other"
        model = model if 200 <= status < 300 else None
        key = (method, route, status, model)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._series_for(*key)
        for counter, histogram in series:
            counter.inc()
            histogram.observe(seconds)

    def _series_for(self, method: str, route: str, status: int, model: str | None) -> list[tuple[Counter, Histogram]]:
        """The labelled children one kind of request updates; looked up once per label combination, which
        are bounded sets, instead of on every request."""
        code = str(status)
        series = [(self.requests.labels(method, route, code), self.latency.labels(method, route, code))]
        if model is not None:
            series.append((self.model_requests.labels(route, model), self.model_latency.labels(route, model)))
        return series


class _RegistryCollector:
    """What is loaded right now, read from the holder at scrape time."""

    def __init__(self, holder: RegistryHolder) -> None:
        self.holder = holder

    def collect(self) -> Iterable[Metric]:
        registry = self.holder.registry  # read once: the models, load time and readiness agree
        info = GaugeMetricFamily(
            "recsys_model_info", "1 per (model, version) currently served", labels=("model", "version")
        )
        ready = GaugeMetricFamily("recsys_ready", "1 while a loaded and warmed registry is installed, else 0")
        loaded_at = GaugeMetricFamily(
            "recsys_models_loaded_timestamp_seconds", "Unix time the serving registry finished loading"
        )
        load_seconds = GaugeMetricFamily(
            "recsys_models_load_seconds", "How long loading, verifying and warming the serving registry took"
        )
        ready.add_metric([], 0.0 if registry is None else 1.0)
        if registry is not None:
            for name, model in registry.models.items():
                info.add_metric([name, model.version], 1.0)
            loaded_at.add_metric([], registry.loaded_at)
            load_seconds.add_metric([], registry.load_seconds)
        return [info, ready, loaded_at, load_seconds]
