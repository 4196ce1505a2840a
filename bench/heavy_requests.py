"""Do heavy requests starve light ones? `python -m bench.heavy_requests [--store models_store] [--seconds 8]`

One uvicorn worker (the Dockerfile's command, `bench.server.serve`), one client sending light requests
(``/recommend/196?k=10``) back to back, alone and then beside N clients sending the heaviest valid request
(``k=1682&explain=true``, 1,682 items with three explanations each). Prints the light client's p50/p99 in both
runs and their ratio: the figure is the ratio, measured in one run on the same (shared) machine; absolute times
move with the load on the box.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import httpx

from bench.server import REPO, serve

LIGHT = "/recommend/196?k=10"
HEAVY = "/recommend/196?k=1682&explain=true&exclude_seen=false"


async def _light(url: str, seconds: float) -> list[float]:
    times = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            r = await client.get(LIGHT)
            r.raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
    return times


async def _heavy(url: str, seconds: float) -> int:
    n = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            (await client.get(HEAVY)).raise_for_status()
            n += 1
    return n


async def _run(url: str, seconds: float, heavy_clients: int) -> tuple[list[float], int]:
    tasks = [asyncio.create_task(_heavy(url, seconds)) for _ in range(heavy_clients)]
    light = await _light(url, seconds)
    return light, sum(await asyncio.gather(*tasks))


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1] if len(times) >= 2 else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.heavy_requests", description=__doc__)
    p.add_argument("--store", type=Path, default=REPO / "models_store")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--heavy-clients", type=int, default=8)
    args = p.parse_args()
    with serve(args.store.resolve()) as server:
        alone, _ = asyncio.run(_run(server.url, args.seconds, 0))
        loaded, heavy_done = asyncio.run(_run(server.url, args.seconds, args.heavy_clients))
    print(f"light alone:             n={len(alone)} p50={_p(alone, 50):.1f} ms p99={_p(alone, 99):.1f} ms")
    print(
        f"light + {args.heavy_clients} heavy clients: n={len(loaded)} p50={_p(loaded, 50):.1f} ms "
        f"p99={_p(loaded, 99):.1f} ms max={max(loaded):.1f} ms; heavy requests served: {heavy_done}"
    )
    print(f"p99 ratio loaded/alone: {_p(loaded, 99) / _p(alone, 99):.1f}x")
    print("slowest light requests while loaded (ms):", [round(t) for t in sorted(loaded)[-5:]])


if __name__ == "__main__":
    main()
