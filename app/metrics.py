"""Prometheus metrics of one app instance, served at ``GET /metrics``.

Every app gets its own `CollectorRegistry` (tests build many apps in one process; the global registry would
refuse the second). Labels are bounded sets: the route *template* (``/recommend/{user_id}``, never the raw
path), a known method or ``other``, the status code, a model name. Loaded versions are read from the
`RegistryHolder` at scrape time, so a scrape never sees a half-updated set during a reload.

With several uvicorn workers each process keeps its own numbers; see docs/service.md.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

from app.registry import RegistryHolder

# Requests take ~1 ms; the tail of interest is 1-100 ms, anything past a second is an incident.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
UNMATCHED_ROUTE = "<unmatched>"  # every path no route matched: one label value, not one per path


class _Series:
    """One label set's request count, latency sum and latency histogram, as plain numbers.

    Updated without a lock: only the event loop's thread observes requests (every handler is ``async def``),
    and a scrape (``GET /metrics``, also on that thread) reads them between two requests. prometheus_client's
    own Counter and Histogram take a lock per update, ~10 us per request for the four series a request
    touches; this is ~1 us and exports the same samples.
    """

    __slots__ = ("buckets", "count", "created", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le is inclusive, as Prometheus's


class _SeriesFamily:
    """A counter (``<counter>_total``) and a latency histogram over the same labels, fed by `_Series`."""

    def __init__(self, counter: str, counter_doc: str, histogram: str, histogram_doc: str, labels: tuple[str, ...]):
        self.names = (counter, histogram)
        self.docs = (counter_doc, histogram_doc)
        self.labels = labels
        self.series: dict[tuple[str, ...], _Series] = {}

    def get(self, values: tuple[str, ...]) -> _Series:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = _Series()
        return series

    def collect(self) -> Iterable[Metric]:
        counter = CounterMetricFamily(self.names[0], self.docs[0], labels=self.labels)
        histogram = HistogramMetricFamily(self.names[1], self.docs[1], labels=self.labels)
        bounds = [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]  # as prometheus_client spells them
        for values, series in list(self.series.items()):
            counter.add_metric(values, series.count, created=series.created)
            cumulative = list(itertools.accumulate(series.buckets))
            histogram.add_metric(values, list(zip(bounds, cumulative, strict=True)), series.sum)
            labels = dict(zip(self.labels, values, strict=True))
            histogram.samples.append(Sample(self.names[1] + "_created", labels, series.created, None, None))
        return [counter, histogram]


class ServiceMetrics:
    """The metric objects the middleware, the handlers and a reload update."""

    def __init__(self, holder: RegistryHolder) -> None:
        self.registry = CollectorRegistry()
        self.http = _SeriesFamily(
            "recsys_http_requests",
            "HTTP requests answered, by route template, method and status",
            "recsys_http_request_duration_seconds",
            "Time from receiving a request to sending its last byte",
            ("method", "route", "status"),
        )
        self.by_model = _SeriesFamily(
            "recsys_model_requests",
            "Successful predict/recommend/similar answers, by route template and the model that ranked "
            "them ('popular' for the cold-start fallback)",
            "recsys_model_request_duration_seconds",
            "Latency of successful predict/recommend/similar answers, by route template and model",
            ("route", "model"),
        )
        self.registry.register(_FamiliesCollector((self.http, self.by_model)))
        self.in_flight = 0  # requests being served: a plain int the middleware updates, read at scrape time
        self.in_progress = Gauge("recsys_http_requests_in_progress", "Requests being served", registry=self.registry)
        self.in_progress.set_function(lambda: self.in_flight)
        self.reloads = Counter(
            "recsys_reloads",
            "Model store reloads (POST /admin/reload or SIGHUP), by result: success or failure",
            ("result",),
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self._series: dict[tuple[str, str, int, str | None], tuple[_Series, ...]] = {}
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
        for one in series:
            one.observe(seconds)

    def _series_for(self, method: str, route: str, status: int, model: str | None) -> tuple[_Series, ...]:
        """The series one kind of request updates; looked up once per label combination, which are bounded
        sets, instead of on every request."""
        http = self.http.get((method, route, str(status)))
        return (http,) if model is None else (http, self.by_model.get((route, model)))


class _FamiliesCollector:
    def __init__(self, families: tuple[_SeriesFamily, ...]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        for family in self.families:
            yield from family.collect()


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
