"""CPU time per request of the service and the anchors with the ASGI app called directly: no sockets, no
uvicorn, no wrk, so what remains is what each app does per request, and far less sensitive to the load of a
shared machine than requests/s (the best of several repeats of process CPU time).

    .venv/bin/python -m bench.inprocess_asgi --store models_store [--baseline-app DIR]

Each app runs in a subprocess of its own (``--one APP``), its lifespan started as uvicorn would, then every
route is called WARMUP times and timed as the minimum over REPEATS batches of CALLS calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.server import REPO

APPS = {
    "service": "app.main:create_app",
    "floor": "bench.anchors.bare:create_app",
    "framework": "bench.anchors.minimal:create_app",
}
LSTM_BODY = b'{"items": [209, 32, 189, 242, 302, 377, 51, 346, 474, 265], "ratings": [4, 5]}'
# route name (as in bench.serving) -> method, path, query string, body
CALLS: dict[str, tuple[str, str, bytes, bytes | None]] = {
    "GET /health": ("GET", "/health", b"", None),
    "POST /predict/mf (1 item)": ("POST", "/predict/mf", b"", b'{"user_id": 196, "item_ids": [242]}'),
    "POST /predict/dense (1 item)": ("POST", "/predict/dense", b"", b'{"user_id": 196, "item_ids": [242]}'),
    "POST /predict/lstm (10 items)": ("POST", "/predict/lstm", b"", LSTM_BODY),
    "GET /recommend/{u}?model=mf": ("GET", "/recommend/196", b"k=10&model=mf", None),
    "GET /recommend/{u}?model=dense": ("GET", "/recommend/196", b"k=10&model=dense", None),
    "GET /recommend/{u}?model=lstm": ("GET", "/recommend/196", b"k=10&model=lstm", None),
}
WARMUP, CALLS_PER_REPEAT, REPEATS = 300, 500, 5


async def _call(app: Any, method: str, path: str, query: bytes, body: bytes | None) -> int:
    headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")]
    if body is not None:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes while the app is answering
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _start(app: Any) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.get_running_loop().create_task(app(scope, queue.get, send))
    await started.wait()


async def _measure(target: str) -> dict[str, float]:
    module, _, factory = target.partition(":")
    app = getattr(__import__(module, fromlist=[factory]), factory)()
    await _start(app)
    result = {}
    for name, call in CALLS.items():
        status = await _call(app, *call)
        if status != 200:
            raise RuntimeError(f"{target}: {name} answered {status}")
        for _ in range(WARMUP):
            await _call(app, *call)
        best = float("inf")
        for _ in range(REPEATS):
            start = time.process_time()
            for _ in range(CALLS_PER_REPEAT):
                await _call(app, *call)
            best = min(best, (time.process_time() - start) / CALLS_PER_REPEAT)
        result[name] = best * 1e6
    return result


def run(store: Path, baseline_app: Path | None = None) -> dict[str, Any]:
    """µs of CPU per request, per route and app (``before`` too with `baseline_app`)."""
    apps = dict(APPS)
    if baseline_app is not None:
        apps["before"] = APPS["service"]
    found: dict[str, dict[str, float]] = {}
    for name, target in apps.items():
        env = {**os.environ, "RECSYS_MODELS_DIR": str(store), "OMP_NUM_THREADS": "1"}
        # As served: the service's own defaults (whatever its settings say about the access log).
        env = {k: v for k, v in env.items() if not k.startswith("RECSYS_") or k == "RECSYS_MODELS_DIR"}
        # `python -m` puts its working directory first on sys.path: the baseline's checkout for "before", so
        # its `app` package is the one imported; this repository (bench, training) comes after it.
        cwd = baseline_app if name == "before" and baseline_app else REPO
        env["PYTHONPATH"] = str(REPO)
        cmd = [sys.executable, "-m", "bench.inprocess_asgi", "--one", target]
        # The app's log lines (stderr) are formatted as served and dropped; stdout carries the figures.
        out = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            check=True,
            timeout=900,
        )
        found[name] = json.loads(out.stdout.strip().splitlines()[-1])
    routes = list(CALLS)
    return {
        "calls": f"min over {REPEATS} batches of {CALLS_PER_REPEAT} calls after {WARMUP} warm-up calls",
        "us_per_request": {route: {app: found[app][route] for app in found} for route in routes},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--store", type=Path, default=REPO / "models_store")
    p.add_argument("--baseline-app", type=Path)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one app in this process
    args = p.parse_args()
    if args.one:
        import torch
        import uvloop

        torch.set_num_threads(1)
        print(json.dumps(uvloop.run(_measure(args.one))))
        return
    result = run(args.store.resolve(), args.baseline_app.resolve() if args.baseline_app else None)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
