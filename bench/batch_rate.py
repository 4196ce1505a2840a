"""`python -m bench.batch_rate`: users per second, one request per user against the batch paths.

In one process on the committed store, interleaved and repeated (`--repeats`, the median kept): the
per-request rate (``GET /recommend/{user}`` through FastAPI's TestClient, one user after another, as a client
looping over users would, without network), the same service function called directly per user (no HTTP: the
floor of any per-request client), `POST /recommend/batch` with 1,000 users, and the batch command's
scoring-and-writing loop (`app.batch.write_recommendations`, every user of the store to CSV). Loading the store
is left out of every figure (the command loads it once, the server at start-up).

    .venv/bin/python -m bench.batch_rate --store models_store
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from fastapi.testclient import TestClient

from app.batch import write_recommendations
from app.main import create_app
from app.services.recommend import Filters, recommend_for_user
from app.settings import Settings
from bench.server import REPO

MODELS = ("mf", "dense", "lstm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_rate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO / "models_store")
    parser.add_argument("--requests", type=int, default=300, help="single requests timed per model and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.disable(logging.INFO)
    settings = Settings(models_dir=args.store.resolve(), access_log=False)
    kinds = ("request", "service", "endpoint", "command")
    rates: dict[str, dict[str, list[float]]] = {m: {k: [] for k in kinds} for m in MODELS}
    with TestClient(create_app(settings)) as client, tempfile.TemporaryDirectory() as tmp:
        registry = client.app.state.registry_holder.get()  # type: ignore[attr-defined]
        users = list(registry.catalog.user_ids)
        for _ in range(args.repeats):
            for model in MODELS:
                for user in users[:20]:  # warm the route
                    client.get(f"/recommend/{user}", params={"model": model})
                started = time.perf_counter()
                for user in users[: args.requests]:
                    assert client.get(f"/recommend/{user}", params={"model": model}).status_code == 200
                rates[model]["request"].append(args.requests / (time.perf_counter() - started))
                started = time.perf_counter()
                for user in users[: args.requests]:
                    recommend_for_user(registry=registry, user_id=user, model=model, filters=Filters(k=10))
                rates[model]["service"].append(args.requests / (time.perf_counter() - started))
                batch = users[:1000]
                started = time.perf_counter()
                r = client.post("/recommend/batch", json={"user_ids": batch, "model": model})
                assert r.status_code == 200
                rates[model]["endpoint"].append(len(batch) / (time.perf_counter() - started))
                n, seconds = write_recommendations(
                    registry, model=model, filters=Filters(k=10), out=Path(tmp) / f"{model}.csv", progress=False
                )
                rates[model]["command"].append(n / seconds)
    print(
        "| model | one request per user | one service call per user (no HTTP) | POST /recommend/batch "
        "| python -m app.batch | command / per-request | command / service call |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model in MODELS:
        request, service, endpoint, command = (statistics.median(rates[model][k]) for k in kinds)
        print(
            f"| {model} | {request:,.0f} | {service:,.0f} | {endpoint:,.0f} | {command:,.0f} "
            f"| {command / request:.1f}x | {command / service:.1f}x |"
        )
    print(f"\nusers/s, median of {args.repeats} interleaved repeats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
