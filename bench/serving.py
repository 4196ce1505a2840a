"""Serving throughput and latency under wrk: the service beside anchors doing the same model work.

Servers, all up at once on loopback and loaded one at a time (an idle server costs nothing):

- ``service``: the real app, as `make serve` runs it (one uvicorn worker); ``service2``: on two workers;
- ``before`` (with ``--baseline-app DIR``): the same, but the app package of another checkout, e.g. the commit
  before a change, so "before" and "after" are measured in one run;
- ``floor``: `bench.anchors.bare`, a bare ASGI app on the same uvicorn doing each route's model work;
- ``framework``: `bench.anchors.minimal`, a minimal FastAPI app doing the same work;
- ``peer``: `bench.anchors.litserve_app`, LitServe serving the same artifacts (its own venv, `bench.peers`).

Every route is driven on every server in each round, servers in a rotating order, so a ratio compares
figures taken seconds apart; the report gives per-route medians over rounds and the spread of the ratios.
``service2`` is the service on two workers (the p99 target, and the match for LitServe's processes). Then a
py-spy profile of each route (`bench.profile`) on the service, the floor and ``before``, and the same apps
called in-process without sockets (`bench.inprocess_asgi`), which the machine's load disturbs far less.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.artifacts import MANIFEST_FILE
from bench import inprocess_asgi, peers, profile
from bench.server import (
    REPO,
    Server,
    WrkResult,
    cpu_seconds,
    group_pids,
    lua_post,
    post_json,
    rss_mb,
    run_wrk,
    serve,
    serve_command,
)
from bench.training_speed import thread_env

log = logging.getLogger(__name__)

# The anchors run on the service's own server command (`serve_command`), only the app differs.
FLOOR = "bench.anchors.bare:create_app"
FRAMEWORK = "bench.anchors.minimal:create_app"
LSTM_ITEMS = [209, 32, 189, 242, 302, 377, 51, 346, 474, 265]
Call = tuple[str, dict[str, Any] | None]  # path (with query), JSON body for a POST


@dataclass(frozen=True)
class Route:
    name: str
    call: Call  # on the service, the floor and the framework anchor: the same URL and body
    peer: Call | None  # on LitServe (POST only), or None where it has no counterpart


def routes(user: int, item: int, items: list[int]) -> list[Route]:
    pair = {"user_id": user, "item_ids": [item]}
    sequence = {"items": items, "ratings": [4, 5]}
    plan = [
        Route("GET /health", ("/health", None), ("/health", None)),
        Route("POST /predict/mf (1 item)", ("/predict/mf", pair), ("/predict/mf", pair)),
        Route("POST /predict/dense (1 item)", ("/predict/dense", pair), ("/predict/dense", pair)),
        Route("POST /predict/lstm (10 items)", ("/predict/lstm", sequence), ("/predict/lstm", sequence)),
    ]
    for model in ("mf", "dense", "lstm"):
        peer = ("/recommend", {"user_id": user, "k": 10, "model": model})
        plan.append(Route(f"GET /recommend/{{u}}?model={model}", (f"/recommend/{user}?k=10&model={model}", None), peer))
    return plan


def find_store(data: Path, work: Path, epochs: int | None) -> tuple[Path, str]:
    """The repository's models_store/ if it holds a manifest, else a u1 store trained into `work`."""
    repo_store = REPO / "models_store"
    if (repo_store / MANIFEST_FILE).is_file():
        return repo_store, "models_store/ (committed artifacts)"
    out = work / "u1-store"
    cmd = [sys.executable, "-m", "training", "--data", str(data), "--split", "u1", "--out", str(out)]
    if epochs:  # serving cost depends on the networks' shapes, not on how well they fit
        cmd += ["--epochs", str(epochs)]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env=thread_env())
    shown = " ".join(["python", *cmd[1:]]).replace(str(data), "DIR").replace(str(out), "TMP")
    return out, f"trained for this run: `{shown}`"


def hit(url: str, call: Call, work: Path, tag: str) -> Path | None:
    """One real request (a wrong body fails loudly here, not as a wall of non-2xx); the wrk script for it."""
    path, body = call
    if body is None:
        with urllib.request.urlopen(url + path, timeout=30) as r:  # LitServe's /health answers plain "ok"
            r.read()
        return None
    post_json(url + path, body)
    return lua_post(work / f"{tag}.lua", body)


def load(server: Server, call: Call, name: str, work: Path, *, duration: int, connections: int) -> WrkResult:
    """wrk against one server, with the CPU time its processes spent meanwhile (``extra.cpu_us_per_request``)."""
    script = hit(server.url, call, work, f"{abs(hash((server.url, call[0])))}")
    pids = group_pids(server.pid)
    before = cpu_seconds(pids)
    result = run_wrk(name, server.url + call[0], script=script, duration=duration, connections=connections)
    cpu = cpu_seconds(pids) - before
    result.extra["cpu_us_per_request"] = cpu * 1e6 / result.requests if result.requests else float("nan")
    return result


def _servers(
    stack: ExitStack,
    store: Path,
    work: Path,
    *,
    baseline_app: Path | None,
    peer_python: Path | None,
    two_workers: bool,
) -> dict[str, Server]:
    def start(name: str, command: Callable[[int], list[str]] | None, ready: str, **kw: Any) -> None:
        # One at a time: a worker loading its store while another server is timed would skew that run.
        log.info("starting %s", name)
        servers[name] = stack.enter_context(
            serve(store, log_path=work / f"{name}.log", command=command, ready_path=ready, **kw)
        )

    servers: dict[str, Server] = {}
    start("service", None, "/ready")
    if two_workers:
        # One worker per core (WEB_CONCURRENCY=2): what a deployment here would run, and the fair match for
        # LitServe, whose HTTP process and inference worker are two busy processes as well.
        start("service2", None, "/ready", workers=2)
    if baseline_app is not None:
        start("before", lambda port: serve_command(port, app_dir=baseline_app), "/ready")
    start("floor", lambda port: serve_command(port, app=FLOOR), "/health")
    start("framework", lambda port: serve_command(port, app=FRAMEWORK), "/health")
    if peer_python is not None:
        start(
            "peer",
            lambda port: [str(peer_python), "-m", "bench.anchors.litserve_app", "--port", str(port)],
            "/health",
            env={"PYTHONPATH": str(REPO)},
        )
    return servers


def _shown(command: list[str]) -> str:
    """`command` as the report prints it: ``uvicorn`` for the venv's path, PORT for the port."""
    words = [Path(command[0]).name, *command[1:]]
    words[words.index("--port") + 1] = "PORT"
    return " ".join(words)


def _rotate(names: list[str], k: int) -> Iterator[str]:
    k %= len(names)
    yield from names[k:] + names[:k]


def run(
    data: Path,
    *,
    duration: int = 5,
    connections: int = 32,
    epochs: int | None = None,
    rounds: int = 3,
    baseline_app: Path | None = None,
    peer: bool = True,
    two_workers: bool = True,
    profile_seconds: int = 4,
    only: list[str] | None = None,
    inprocess_calls: bool = True,
) -> dict[str, Any]:
    peer_python = peers.ensure() if peer or profile_seconds else None
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        store, source = find_store(data, work, epochs)
        manifest = json.loads((store / MANIFEST_FILE).read_text())
        catalog = json.loads((store / manifest["catalog"]["file"]).read_text())
        user = 196 if 196 in catalog["user_ids"] else catalog["user_ids"][0]
        item = 242 if any(i["item_id"] == 242 for i in catalog["items"]) else catalog["items"][0]["item_id"]
        items = [i for i in LSTM_ITEMS if any(c["item_id"] == i for c in catalog["items"])] or [item]
        plan = [r for r in routes(user, item, items) if not only or any(o in r.name for o in only)]
        servers = _servers(
            stack,
            store,
            work,
            baseline_app=baseline_app,
            peer_python=peer_python if peer else None,
            two_workers=two_workers,
        )
        service = servers["service"]
        runs: dict[str, dict[str, list[WrkResult]]] = {r.name: {s: [] for s in servers} for r in plan}
        for k in range(rounds):
            log.info("round %d of %d", k + 1, rounds)
            for route in plan:
                for name in _rotate(list(servers), k):
                    call = route.peer if name == "peer" else route.call
                    if call is None:
                        continue
                    runs[route.name][name].append(
                        load(servers[name], call, route.name, work, duration=duration, connections=connections)
                    )
        rss_after = rss_mb(service.pid)
        profiles: dict[str, Any] = {}
        if profile_seconds and peer_python is not None:
            targets = ["service", "before"] if "before" in servers else ["service"]
            targets.append("floor")
            for route in plan:
                profiles[route.name] = {
                    name: _profile(servers[name], route.call, route.name, work, profile_seconds, connections)
                    for name in targets
                }
        inprocess = inprocess_asgi.run(store, baseline_app) if inprocess_calls else None
    return {
        "inprocess": inprocess,
        "store": source,
        "dataset": manifest["dataset"],
        "ready_seconds": service.ready_seconds,
        "rss_after_load_mb": service.rss_after_load_mb,
        "rss_after_load_test_mb": rss_after,
        "rounds": rounds,
        "duration_s": duration,
        "connections": connections,
        "servers": list(runs[plan[0].name]),
        "routes": [_summary(route.name, runs[route.name]) for route in plan],
        "profiles": profiles,
        "server_command": f"RECSYS_MODELS_DIR=STORE {_shown(serve_command(0))}",
        "anchor_commands": {
            "floor": _shown(serve_command(0, app=FLOOR)),
            "framework": _shown(serve_command(0, app=FRAMEWORK)),
            "peer": "PEERS_VENV/bin/python -m bench.anchors.litserve_app --port PORT (LitServe "
            f"{'/'.join(peers.PACKAGES[1][:1])}, CPU, one inference worker per endpoint)",
        },
    }


def _profile(server: Server, call: Call, name: str, work: Path, seconds: int, connections: int) -> dict[str, Any]:
    out = work / f"profile-{abs(hash((server.url, name)))}.txt"
    spy = profile.record(peers.py_spy(), server.pid, seconds, out)
    result = load(server, call, name, work, duration=seconds, connections=connections)
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.is_file():
        log.warning("py-spy failed on %s: %s", name, err.decode(errors="replace")[-500:])
        return {"error": err.decode(errors="replace")[-500:]}
    found = profile.breakdown(out, result.requests_per_s)
    cpu_us = result.extra["cpu_us_per_request"]  # inflated by py-spy's own pauses; shares are what matter
    found["cpu_us_per_request"] = cpu_us
    found["us_per_request"] = {s: share * cpu_us for s, share in found["share"].items()}  # type: ignore[attr-defined]
    return found


def _summary(name: str, by_server: dict[str, list[WrkResult]]) -> dict[str, Any]:
    """Medians over rounds per server, and the service's ratio to every other server per round."""
    ours = by_server["service"]
    summary: dict[str, Any] = {"name": name, "servers": {}, "ratios": {}}
    for server, results in by_server.items():
        if not results:
            continue
        summary["servers"][server] = {
            "requests_per_s": statistics.median(r.requests_per_s for r in results),
            "p50_ms": statistics.median(r.p50_ms for r in results),
            "p99_ms": statistics.median(r.p99_ms for r in results),
            "p99_ms_max": max(r.p99_ms for r in results),
            "cpu_us_per_request": statistics.median(r.extra["cpu_us_per_request"] for r in results),
            "non_2xx": sum(r.non_2xx for r in results),
            "socket_errors": sum(r.socket_errors for r in results),
            "runs": [asdict(r) for r in results],
        }
        if server not in ("service", "service2"):
            summary["ratios"][server] = _ratios(ours, results)
    if by_server.get("service2") and by_server.get("peer"):
        summary["ratios_two_workers"] = {"peer": _ratios(by_server["service2"], by_server["peer"])}
    return summary


def _ratios(ours: list[WrkResult], theirs: list[WrkResult]) -> dict[str, Any]:
    per_round = [a.requests_per_s / b.requests_per_s for a, b in zip(ours, theirs, strict=True)]
    return {
        "median": statistics.median(per_round),
        "min": min(per_round),
        "max": max(per_round),
        "per_round": per_round,
    }
