"""Serving throughput and latency of the real server under wrk, each route as a ratio of GET /health."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.artifacts import MANIFEST_FILE
from bench.server import REPO, WrkResult, get_json, lua_post, post_json, rss_mb, run_wrk, serve
from bench.training_speed import thread_env

# (name, method, path, body); the floor is the first one.
LSTM_ITEMS = [209, 32, 189, 242, 302, 377, 51, 346, 474, 265]


def routes(user: int, item: int, items: list[int]) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET /health", "/health", None),
        ("POST /predict/mf (1 item)", "/predict/mf", {"user_id": user, "item_ids": [item]}),
        ("POST /predict/dense (1 item)", "/predict/dense", {"user_id": user, "item_ids": [item]}),
        ("POST /predict/lstm (10 items)", "/predict/lstm", {"items": items, "ratings": [4, 5]}),
        ("GET /recommend/{u}?model=mf", f"/recommend/{user}?k=10&model=mf", None),
        ("GET /recommend/{u}?model=dense", f"/recommend/{user}?k=10&model=dense", None),
        ("GET /recommend/{u}?model=lstm", f"/recommend/{user}?k=10&model=lstm", None),
    ]


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


def drive(
    url: str,
    work: Path,
    plan: list[tuple[str, str, dict[str, Any] | None]],
    *,
    duration: int,
    connections: int,
) -> list[WrkResult]:
    results = []
    for k, (name, path, body) in enumerate(plan):
        # One real request first, so a wrong body fails loudly here instead of as a wall of non-2xx.
        if body is None:
            get_json(url + path)
            script = None
        else:
            post_json(url + path, body)
            script = lua_post(work / f"route{k}.lua", body)
        results.append(run_wrk(name, url + path, script=script, duration=duration, connections=connections))
    return results


def run(data: Path, *, duration: int = 10, connections: int = 32, epochs: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        store, source = find_store(data, work, epochs)
        manifest = json.loads((store / MANIFEST_FILE).read_text())
        catalog = json.loads((store / manifest["catalog"]["file"]).read_text())
        user = 196
        if user not in catalog["user_ids"]:
            user = catalog["user_ids"][0]
        plan = routes(user, 242, LSTM_ITEMS)
        with serve(store, log_path=work / "server.log") as server:
            results = drive(server.url, work, plan, duration=duration, connections=connections)
            rss_after = rss_mb(server.pid)
        # The same load on two workers, one per core (WEB_CONCURRENCY=2): what a deployment here would run.
        with serve(store, log_path=work / "server2.log", workers=2) as server2:
            two = drive(server2.url, work, plan, duration=duration, connections=connections)
        floor = results[0].requests_per_s
        return {
            "store": source,
            "dataset": manifest["dataset"],
            "ready_seconds": server.ready_seconds,
            "rss_after_load_mb": server.rss_after_load_mb,
            "rss_after_load_test_mb": rss_after,
            "routes": [{**asdict(r), "ratio": r.requests_per_s / floor} for r in results],
            "routes_two_workers": [{**asdict(r), "ratio": r.requests_per_s / two[0].requests_per_s} for r in two],
            "server_command": "RECSYS_MODELS_DIR=STORE .venv/bin/uvicorn app.main:create_app --factory "
            "--host 127.0.0.1 --port PORT --no-access-log",
        }
