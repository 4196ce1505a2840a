"""Unit tests of the vectorised helpers behind the endpoints."""

from __future__ import annotations

import numpy as np
import pytest

from app.artifacts import left_pad
from app.metrics import ServiceMetrics
from app.ranking import top_page
from app.registry import IdIndex, RegistryHolder


def test_id_index_maps_raw_ids_of_an_unsorted_catalog() -> None:
    ids = IdIndex([30, 10, 20])  # index 1 is raw 30, index 2 raw 10, index 3 raw 20
    found = ids.indices([10, 20, 30, 40, 2**70, -1])
    assert found.tolist() == [2, 3, 1, 0, 0, 0] and found.dtype == np.int64
    assert ids.indices([]).shape == (0,) and ids.index(30) == 1 and ids.index(31) == 0


def test_top_page_orders_ties_by_index_and_pages_consistently() -> None:
    scores = np.array([9.0, 1.0, 3.0, 3.0, 5.0, 3.0, 0.0])
    mask = np.array([False, True, True, True, True, True, True])
    page, total = top_page(scores, mask, k=10, offset=0)
    assert total == 6 and page.tolist() == [4, 2, 3, 5, 1, 6]
    pages = [top_page(scores, mask, k=2, offset=o)[0].tolist() for o in (0, 2, 4, 6)]
    assert pages == [[4, 2], [3, 5], [1, 6], []]


def test_top_page_never_returns_a_masked_item_even_below_every_candidate() -> None:
    scores = np.array([0.0, -np.inf, 1.0, 2.0], dtype=np.float32)  # a candidate at -inf; index 0 masked
    mask = np.array([False, True, True, False])
    page, total = top_page(scores, mask, k=5, offset=0)
    assert total == 2 and page.tolist() == [2, 1]


def test_metric_series_are_cached_per_label_set_with_unknown_methods_as_other() -> None:
    metrics = ServiceMetrics(RegistryHolder())
    for method in ("BREW", "WHEN", "GET", "GET"):
        metrics.observe(method, "/health", 200, 0.001, None)
    metrics.observe("GET", "/predict/{model}", 404, 0.001, "mf")  # a failure credits no model
    assert len(metrics._series) == 3
    assert (
        metrics.registry.get_sample_value(
            "recsys_http_requests_total", {"method": "other", "route": "/health", "status": "200"}
        )
        == 2
    )
    assert (
        metrics.registry.get_sample_value("recsys_model_requests_total", {"route": "/predict/{model}", "model": "mf"})
        is None
    )


def test_left_pad_keeps_the_last_items_and_aligns_their_ratings() -> None:
    items, ratings = left_pad(np.array([5, 6, 7]), np.array([4.0], dtype=np.float32), 5)
    assert items.tolist() == [0, 0, 5, 6, 7] and ratings.tolist() == [0, 0, 4, 0, 0]
    items, ratings = left_pad(np.arange(1, 13), np.arange(1, 12, dtype=np.float32) % 5 + 1, 9)
    assert items.tolist() == list(range(4, 13))
    assert ratings.tolist()[-1] == 0.0 and ratings.tolist()[0] == (4 % 5) + 1


def test_latency_buckets_are_inclusive_cumulative_and_counted_like_prometheus_client() -> None:
    metrics = ServiceMetrics(RegistryHolder())
    for seconds in (0.001, 0.0011, 3.0):  # on a bound, just past it, past every bound
        metrics.observe("GET", "/health", 200, seconds, None)
    labels = {"method": "GET", "route": "/health", "status": "200"}
    sample = metrics.registry.get_sample_value
    name = "recsys_http_request_duration_seconds"
    assert sample(f"{name}_bucket", {**labels, "le": "0.0005"}) == 0
    assert sample(f"{name}_bucket", {**labels, "le": "0.001"}) == 1
    assert sample(f"{name}_bucket", {**labels, "le": "0.002"}) == 2
    assert sample(f"{name}_bucket", {**labels, "le": "2.5"}) == 2
    assert sample(f"{name}_bucket", {**labels, "le": "+Inf"}) == sample(f"{name}_count", labels) == 3
    assert sample(f"{name}_sum", labels) == pytest.approx(3.0021)
    assert sample("recsys_http_requests_total", labels) == 3
    assert sample("recsys_http_requests_created", labels) is not None
    metrics.in_flight = 2
    assert sample("recsys_http_requests_in_progress") == 2
