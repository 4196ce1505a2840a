"""In-process latency of the main endpoints: the whole ASGI app (routing, validation, inference,
serialisation) through httpx's ASGITransport, without sockets or a server.

    .venv/bin/python -m bench.inprocess_latency --store /tmp/store1 --calls 300

Each scenario gets warm-up calls first, then `--calls` timed calls with users/items drawn from the catalog
by a seeded generator; prints p50/p90/p99 in milliseconds (and writes them as JSON with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.main import create_app
from app.settings import Settings

Request = tuple[str, str, dict[str, Any] | None]  # method, url, json body


def scenarios(user_ids: list[int], item_ids: list[int], rng: np.random.Generator) -> dict[str, Callable[[], Request]]:
    def user() -> int:
        return int(rng.choice(user_ids))

    def items(n: int) -> list[int]:
        return [int(i) for i in rng.choice(item_ids, size=n, replace=False)]

    return {
        "GET /health": lambda: ("GET", "/health", None),
        "POST /predict/mf (1 item)": lambda: (
            "POST",
            "/predict/mf",
            {"user_id": user(), "item_ids": items(1)},
        ),
        "POST /predict/mf (100 items)": lambda: (
            "POST",
            "/predict/mf",
            {"user_id": user(), "item_ids": items(100)},
        ),
        "POST /predict/lstm (10 items)": lambda: (
            "POST",
            "/predict/lstm",
            {"items": items(10), "ratings": [4.0] * 9},
        ),
        "GET /recommend/{user} mf": lambda: ("GET", f"/recommend/{user()}?k=10&model=mf", None),
        "GET /recommend/{user} dense": lambda: ("GET", f"/recommend/{user()}?k=10&model=dense", None),
        "GET /recommend/{user} lstm": lambda: ("GET", f"/recommend/{user()}?k=10&model=lstm", None),
        "GET /recommend/{user} mf explain": lambda: (
            "GET",
            f"/recommend/{user()}?k=10&model=mf&explain=true",
            None,
        ),
        "POST /recommend (session, lstm)": lambda: ("POST", "/recommend", {"items": items(20), "k": 10}),
        "GET /items/{id}/similar mf": lambda: ("GET", f"/items/{items(1)[0]}/similar?k=10", None),
    }


async def run(store: Path, calls: int, warmup: int, seed: int) -> dict[str, dict[str, float]]:
    app = create_app(Settings(models_dir=store))
    results: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            catalog = (await client.get("/models")).json()
            registry = app.state.registry_holder.get()
            user_ids = list(registry.catalog.user_ids)
            item_ids = [item.item_id for item in registry.catalog.items]
            rng = np.random.default_rng(seed)
            for name, make in scenarios(user_ids, item_ids, rng).items():
                timings = []
                for i in range(warmup + calls):
                    method, url, body = make()
                    start = time.perf_counter()
                    response = await client.request(method, url, json=body)
                    elapsed = time.perf_counter() - start
                    if response.status_code != 200:
                        raise SystemExit(f"{name}: {response.status_code} {response.text}")
                    if i >= warmup:
                        timings.append(elapsed * 1000)
                q = statistics.quantiles(timings, n=100)
                results[name] = {"p50_ms": statistics.median(timings), "p90_ms": q[89], "p99_ms": q[98]}
            results["_store"] = {"calls": float(calls)}
            print(f"store {store} (split {catalog['dataset']['split']})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("models_store"))
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.store, args.calls, args.warmup, args.seed))
    print(f"{'endpoint':<36} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        if not name.startswith("_"):
            print(f"{name:<36} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
