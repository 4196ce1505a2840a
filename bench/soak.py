"""Soak test: the real server under a bounded, mixed load for minutes. Does it stay up, correct and flat?

    .venv/bin/python -m bench.soak                      # 180 s, 16 concurrent requests, every route
    .venv/bin/python -m bench.soak --duration 30 --json bench/out/soak.json

Starts the server as the Dockerfile runs it (`bench.server.serve`), on a free loopback port, serving ``--store``,
else ``models_store/`` if it holds a manifest, else a store the real training CLI trains (one epoch) on a small
synthetic data set (`bench.scale_data.generate`, 20,000 ratings) in a temporary directory. Then, for
``--duration`` seconds (and at most ``--max-requests``), ``--concurrency`` asyncio workers send a weighted mix
over every route, including requests meant to be 404 (unknown user, unknown item) and, every
``--reload-every`` seconds, an authenticated ``POST /admin/reload``. The server's resident memory is sampled
every 5 s from /proc.

Reports: requests sent, throughput, errors (anything but 2xx, except the intended 404s; transport errors),
RSS first/last/max, p50/p99 latency overall and per route, tracebacks in the server log. Exits 1 on any error.
The load generator shares the machine's cores with the server, so throughput here is a floor, not a capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.scale_data import generate
from bench.server import REPO, rss_mb, serve

RSS_EVERY = 5.0  # seconds between memory samples
SYNTHETIC_RATINGS = 20_000  # a store in ~20 s; the soak is about staying up, not about the model

Request = tuple[str, str, dict[str, Any] | None, bool]  # method, url, JSON body, expected 404


@dataclass
class Catalog:
    users: list[int]
    items: list[int]
    genres: list[str]
    unknown_user: int
    unknown_item: int


@dataclass
class SoakResult:
    store: str
    duration_s: float
    concurrency: int
    requests: int
    requests_per_s: float
    errors: int
    intended_404: int
    reloads: int
    rss_mb_first: float
    rss_mb_last: float
    rss_mb_max: float
    p50_ms: float
    p99_ms: float
    server_tracebacks: int
    error_examples: list[str] = field(default_factory=list)
    per_route: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_samples_mb: list[float] = field(default_factory=list)


# --- the workload -------------------------------------------------------------------------------------------


def workload(catalog: Catalog) -> list[tuple[str, float, Callable[[random.Random], Request]]]:
    """(route, weight, request factory): mostly predictions and recommendations, some of everything else."""
    models = ["mf", "dense", "lstm"]

    def items(rng: random.Random, lo: int, hi: int) -> list[int]:
        return rng.sample(catalog.items, rng.randint(lo, hi))

    def recommend_user(rng: random.Random) -> Request:
        params = f"k={rng.choice([5, 10, 20])}&model={rng.choice(models)}"
        if rng.random() < 0.3:
            params += "&explain=true"
        if rng.random() < 0.3:
            params += f"&genres={','.join(rng.sample(catalog.genres, 2))}"
        if rng.random() < 0.2:
            params += f"&exclude={','.join(map(str, items(rng, 1, 5)))}"
        if rng.random() < 0.2:
            params += f"&offset={rng.randint(1, 50)}"
        return ("GET", f"/recommend/{rng.choice(catalog.users)}?{params}", None, False)

    def session(rng: random.Random) -> Request:
        seen = items(rng, 1, 20)
        ratings = [rng.randint(1, 5) for _ in range(rng.randint(0, len(seen)))]
        body = {"items": seen, "ratings": ratings, "k": 10, "explain": rng.random() < 0.3}
        return ("POST", "/recommend", body, False)

    def lstm(rng: random.Random) -> Request:
        seen = items(rng, 1, 10)
        return ("POST", "/predict/lstm", {"items": seen, "ratings": [4] * rng.randint(0, len(seen))}, False)

    def pair(rng: random.Random) -> Request:
        body = {"user_id": rng.choice(catalog.users), "item_ids": items(rng, 1, 50)}
        return ("POST", f"/predict/{rng.choice(['mf', 'dense'])}", body, False)

    def similar(rng: random.Random) -> Request:
        return (
            "GET",
            f"/items/{rng.choice(catalog.items)}/similar?k=10&model={rng.choice(models)}",
            None,
            False,
        )

    def get(*urls: str, expect_404: bool = False) -> Callable[[random.Random], Request]:
        return lambda rng: ("GET", rng.choice(urls), None, expect_404)

    return [
        ("POST /predict/{model}", 5, pair),
        ("POST /predict/lstm", 2, lstm),
        ("GET /recommend/{user_id}", 5, recommend_user),
        ("POST /recommend", 2, session),
        ("GET /items/{item_id}", 1, lambda rng: ("GET", f"/items/{rng.choice(catalog.items)}", None, False)),
        ("GET /items/{item_id}/similar", 1, similar),
        ("GET /models", 0.3, get("/models", *(f"/models/{m}" for m in models))),
        ("GET /health, /ready", 0.3, get("/health", "/ready")),
        ("GET /metrics", 0.05, get("/metrics")),
        ("GET /recommend fallback", 0.5, get(f"/recommend/{catalog.unknown_user}?k=10&fallback=popular")),
        ("404 unknown user", 0.5, get(f"/recommend/{catalog.unknown_user}?k=10", expect_404=True)),
        ("404 unknown item", 0.3, get(f"/items/{catalog.unknown_item}", expect_404=True)),
    ]


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    intended_404: int = 0
    reloads: int = 0
    rss: list[float] = field(default_factory=list)


async def _worker(
    client: httpx.AsyncClient,
    mix: list[tuple[str, float, Callable[[random.Random], Request]]],
    rng: random.Random,
    tally: _Tally,
    deadline: float,
    budget: list[int],
) -> None:
    names = [name for name, _, _ in mix]
    weights = [weight for _, weight, _ in mix]
    factories = {name: make for name, _, make in mix}
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        name = rng.choices(names, weights)[0]
        method, url, body, expect_404 = factories[name](rng)
        start = time.perf_counter()
        try:
            r = await client.request(method, url, json=body)
        except httpx.HTTPError as e:
            tally.errors.append(f"{method} {url}: {type(e).__name__}: {e}")
            continue
        tally.latencies[name].append(time.perf_counter() - start)
        if expect_404 and r.status_code == 404:
            tally.intended_404 += 1
        elif not 200 <= r.status_code < 300:
            tally.errors.append(f"{method} {url}: {r.status_code} {r.text[:200]}")


async def _sample_rss(pid: int, tally: _Tally, deadline: float) -> None:
    while True:
        tally.rss.append(rss_mb(pid))
        if time.monotonic() + RSS_EVERY > deadline:
            return
        await asyncio.sleep(RSS_EVERY)


async def _reloader(client: httpx.AsyncClient, key: str, every: float, tally: _Tally, deadline: float) -> None:
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        r = await client.post("/admin/reload", headers={"X-API-Key": key}, timeout=120)
        if r.status_code == 200:
            tally.reloads += 1
        else:
            tally.errors.append(f"POST /admin/reload: {r.status_code} {r.text[:200]}")


async def run_load(url: str, pid: int, catalog: Catalog, args: argparse.Namespace, key: str) -> _Tally:
    tally = _Tally()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        mix = workload(catalog)
        deadline = time.monotonic() + args.duration
        budget = [args.max_requests]
        tasks = [
            _worker(client, mix, random.Random(args.seed + n), tally, deadline, budget) for n in range(args.concurrency)
        ]
        extra = [_sample_rss(pid, tally, deadline)]
        if args.reload_every > 0:
            extra.append(_reloader(client, key, args.reload_every, tally, deadline))
        await asyncio.gather(*tasks, *extra)
        tally.rss.append(rss_mb(pid))
    return tally


def soak(args: argparse.Namespace) -> SoakResult:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        store = resolve_store(args.store, Path(tmp))
        catalog = read_catalog(store)
        key = secrets.token_hex(16)
        log_path = Path(tmp) / "server.log"
        with serve(store, log_path=log_path, env={"RECSYS_ADMIN_API_KEY": key}) as server:
            started = time.monotonic()
            tally = asyncio.run(run_load(server.url, server.pid, catalog, args, key))
            elapsed = time.monotonic() - started
        server_log = log_path.read_text(errors="replace")
    everything = sorted(t for ts in tally.latencies.values() for t in ts)
    n = len(everything)
    return SoakResult(
        store=str(args.store or store),
        duration_s=round(elapsed, 1),
        concurrency=args.concurrency,
        requests=n + len(tally.errors),
        requests_per_s=round(n / elapsed, 1),
        errors=len(tally.errors),
        intended_404=tally.intended_404,
        reloads=tally.reloads,
        rss_mb_first=round(tally.rss[0], 1),
        rss_mb_last=round(tally.rss[-1], 1),
        rss_mb_max=round(max(tally.rss), 1),
        p50_ms=round(percentile(everything, 50) * 1000, 2),
        p99_ms=round(percentile(everything, 99) * 1000, 2),
        server_tracebacks=server_log.count("Traceback"),
        error_examples=tally.errors[:10],
        per_route={
            name: {
                "requests": len(ts),
                "p50_ms": round(percentile(sorted(ts), 50) * 1000, 2),
                "p99_ms": round(percentile(sorted(ts), 99) * 1000, 2),
            }
            for name, ts in sorted(tally.latencies.items())
        },
        rss_samples_mb=[round(x, 1) for x in tally.rss],
    )


# --- helpers ------------------------------------------------------------------------------------------------


def resolve_store(given: Path | None, tmp: Path) -> Path:
    """`given`, else the repository's models_store/ if it holds a manifest, else a fresh synthetic store."""
    if given is not None:
        return given.resolve()
    committed = REPO / "models_store"
    if (committed / "manifest.json").is_file():
        return committed
    return synthetic_store(tmp)


def synthetic_store(tmp: Path) -> Path:
    """A store the real training CLI writes, one epoch on `SYNTHETIC_RATINGS` generated ratings, under `tmp`."""
    data, store = tmp / "synthetic-data", tmp / "synthetic-store"
    generate(data, SYNTHETIC_RATINGS)
    cli = [sys.executable, "-m", "training", "--data", str(data), "--split", "full", "--eval-split", "none"]
    subprocess.run([*cli, "--epochs", "1", "--out", str(store), "--no-download"], cwd=REPO, check=True)
    return store


def read_catalog(store: Path) -> Catalog:
    manifest = json.loads((store / "manifest.json").read_text())
    catalog = json.loads((store / manifest["catalog"]["file"]).read_text())
    users = [int(u) for u in catalog["user_ids"]]
    items = [int(i["item_id"]) for i in catalog["items"]]
    return Catalog(
        users=users,
        items=items,
        genres=[g for g in catalog["genres"] if g != "unknown"] or catalog["genres"],
        unknown_user=max(users) + 1,
        unknown_item=max(items) + 1,
    )


def percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile of an ascending list (nearest rank); 0 for an empty one."""
    if not ordered:
        return 0.0
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def report(result: SoakResult) -> str:
    lines = [
        f"store            {result.store}",
        f"duration         {result.duration_s} s, {result.concurrency} concurrent",
        f"requests         {result.requests} ({result.requests_per_s}/s)",
        f"errors           {result.errors} (intended 404s: {result.intended_404})",
        f"reloads          {result.reloads}",
        f"latency          p50 {result.p50_ms} ms, p99 {result.p99_ms} ms",
        f"server RSS       first {result.rss_mb_first} MiB, last {result.rss_mb_last} MiB, "
        f"max {result.rss_mb_max} MiB ({len(result.rss_samples_mb)} samples)",
        f"log tracebacks   {result.server_tracebacks}",
        "",
        f"{'route':32} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for name, stats in result.per_route.items():
        lines.append(f"{name:32} {stats['requests']:>9.0f} {stats['p50_ms']:>8.2f} {stats['p99_ms']:>8.2f}")
    lines += [f"error: {e}" for e in result.error_examples]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="stop after this many requests")
    parser.add_argument("--reload-every", type=float, default=30.0, help="seconds between reloads; 0 = none")
    parser.add_argument("--store", type=Path, default=None, help="model store (default: see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here as JSON")
    args = parser.parse_args(argv)
    result = soak(args)
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0 if result.errors == 0 and result.server_tracebacks == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
