"""MovieLens-25M-sized behaviour without a download: random-weight networks at 25M's user/item counts,
synthetic random ratings, exported with the real `export_store` and served by the real server."""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.artifacts import Catalog, DatasetInfo, Item
from bench.server import LARGE_START_TIMEOUT, get_json, run_wrk, serve
from bench.training_speed import mf_loop_rate
from training.data import Interactions
from training.export import TrainedModel, export_store
from training.models import DenseConfig, LSTMConfig, MFConfig
from training.networks import DenseNet, MatrixFactorization, SequenceLSTM

N_USERS = 162_541  # MovieLens 25M
N_ITEMS = 62_423
N_RATINGS_25M = 25_000_095


def synthetic_interactions(n_ratings: int, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions(
        user_ids=rng.integers(1, N_USERS + 1, n_ratings, dtype=np.int64),
        item_ids=rng.integers(1, N_ITEMS + 1, n_ratings, dtype=np.int64),
        ratings=rng.integers(1, 6, n_ratings).astype(np.float32),
        timestamps=rng.integers(800_000_000, 1_600_000_000, n_ratings, dtype=np.int64),
        num_users=N_USERS,
        num_items=N_ITEMS,
    )


def synthetic_catalog() -> Catalog:
    """A catalog of N_ITEMS synthetic films (one genre each) for N_USERS users, raw ids = indices."""
    items = [Item(item_id=i, title=f"Synthetic film {i}", year=2000, genres=["Drama"]) for i in range(1, N_ITEMS + 1)]
    return Catalog(user_ids=list(range(1, N_USERS + 1)), items=items, genres=["Drama"])


def synthetic_dataset(ratings: Interactions) -> DatasetInfo:
    """How the manifest records the synthetic ratings."""
    return DatasetInfo(
        name="synthetic",
        split="synthetic",
        sha256=hashlib.sha256(b"synthetic-ml-25m").hexdigest(),
        n_users=ratings.num_users,
        n_items=ratings.num_items,
        n_ratings=len(ratings),
        rating_min=ratings.rating_min,
        rating_max=ratings.rating_max,
    )


def build_store(out: Path, n_ratings: int) -> dict[str, float]:
    times: dict[str, float] = {}
    t = time.perf_counter()
    train = synthetic_interactions(n_ratings)
    times["generate_s"] = time.perf_counter() - t
    torch.manual_seed(0)
    mf, dense, seq = MFConfig(), DenseConfig(), LSTMConfig()  # the shipped shapes
    lstm = SequenceLSTM(N_USERS, N_ITEMS, seq.dim, seq.hidden, seq.dropout)
    with torch.no_grad():
        lstm.user_taste.normal_(0, 0.1)  # a trained store has a taste per user; zeros would be unrealistic
    networks = {
        "mf": MatrixFactorization(N_USERS, N_ITEMS, mf.dim),
        "dense": DenseNet(N_USERS, N_ITEMS, dense.dim, dense.hidden, dense.dropout),
        "lstm": lstm,
    }
    models = [
        TrainedModel(name=n, network=net, hyperparameters={}, metrics=[], training_seconds=0.0, epochs=0)
        for n, net in networks.items()
    ]
    t = time.perf_counter()
    export_store(out, models, catalog=synthetic_catalog(), dataset=synthetic_dataset(train), train=train)
    times["export_s"] = time.perf_counter() - t
    times["store_mb"] = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    return times


def run(*, n_ratings: int, train_ratings: int, train_batches: int, duration: int, connections: int) -> dict[str, Any]:
    result: dict[str, Any] = {"n_users": N_USERS, "n_items": N_ITEMS, "n_ratings": n_ratings}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        store = Path(tmp) / "store"
        result["build"] = build_store(store, n_ratings)
        with serve(store, log_path=Path(tmp) / "server.log", timeout=LARGE_START_TIMEOUT) as server:
            result["ready_seconds"] = server.ready_seconds
            result["rss_after_load_mb"] = server.rss_after_load_mb
            ready = get_json(server.url + "/ready")
            result["registry_load_seconds"] = ready.get("load_seconds")
            routes, single = [], []
            for model in ("mf", "dense", "lstm"):
                url = f"{server.url}/recommend/1000?k=10&model={model}"
                get_json(url)
                name = f"GET /recommend/{{u}}?model={model}"
                routes.append(asdict(run_wrk(name, url, duration=duration, connections=connections)))
                # One request at a time: the latency of a request itself, without queueing behind others.
                single.append(asdict(run_wrk(name, url, duration=duration, threads=1, connections=1)))
            result["routes"] = routes
            result["routes_one_connection"] = single
    # Training throughput: the real train_mf inner loop on a fraction of 25M, a few minibatches, extrapolated.
    train = synthetic_interactions(train_ratings, seed=1)
    loop = mf_loop_rate(train, batches=train_batches)
    result["training"] = {
        "n_ratings": train_ratings,
        **loop,
        "epoch_seconds_at_25m_if_linear": N_RATINGS_25M / loop["ratings_per_s"],
    }
    return result
