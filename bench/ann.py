"""`python -m bench.ann`: approximate retrieval (app/retrieval.py) on the MovieLens-25M-sized store, and what
dense's mf shortlist costs in NDCG@10 on ML-100K.

1. Builds the 25M-sized store as `bench.scale` does (random weights of the shipped shapes, 162,541 users x
   62,423 items, synthetic histories; temp dir, never kept).
2. Recall@10 of the approximate path against the exact one, in process, per model: `/recommend` for random
   users, `POST /recommend` for random sessions (lstm), `/items/{id}/similar` for random items. The exact
   side is the service's exact path (a registry loaded without retrieval).
3. The real server (uvicorn, 127.0.0.1) with retrieval on (the default threshold) and with it off, one and
   two workers: start -> /ready, RSS of the workers, and wrk at 32 connections on random users and items.
4. With ``--u1-store`` (a store trained by ``python -m training --split u1``) and ``--data``: NDCG@10 on
   u1.test through the service functions, exact vs retrieval forced on (threshold 0), per model and depth.

Writes bench/out/ann.json and the "## ANN retrieval" section of docs/scaling.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from app.registry import ModelRegistry
from app.retrieval import RetrievalConfig, set_threads
from app.services.items import similar_items
from app.services.recommend import Filters, recommend_for_session, recommend_for_user
from app.settings import Settings
from bench import scale
from bench.server import LARGE_START_TIMEOUT, REPO, rss_mb, run_wrk, serve

log = logging.getLogger("bench.ann")
MODELS = ("mf", "dense", "lstm")
SECTION = "## ANN retrieval"
K = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ann", description=__doc__)
    p.add_argument("--ratings", type=int, default=2_500_000, help="synthetic ratings in the 25M-sized store")
    p.add_argument("--queries", type=int, default=300, help="random users / sessions / items for recall")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--workers", default="2,1", help="uvicorn worker counts to serve with")
    p.add_argument("--skip-exact-serving", action="store_true", help="do not serve the store without retrieval")
    p.add_argument("--u1-store", type=Path, help="store trained on u1.base, for the NDCG@10 cost on ML-100K")
    p.add_argument("--data", type=Path, help="ML-100K directory (u1.test)")
    p.add_argument("--docs", type=Path, default=REPO / "docs")
    p.add_argument("--only-u1", action="store_true", help="measure u1 only; keep the 25M figures of the last run")
    return p.parse_args(argv)


def overlap(a: list[int], b: list[int]) -> float:
    return len(set(a) & set(b)) / max(len(b), 1)


def recall(exact: ModelRegistry, approximate: ModelRegistry, queries: int, seed: int = 0) -> dict[str, Any]:
    """Mean recall@10 of the approximate path's lists against the exact path's, and the time per call."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, exact.n_users + 1, queries).tolist()
    items = exact.item_raw[rng.integers(1, exact.n_items + 1, queries)].tolist()
    out: dict[str, Any] = {}

    def ids(response: Any) -> list[int]:
        return [i.item_id for i in response.items]

    def timed(registry: ModelRegistry, user: int, model: str) -> tuple[Any, float]:
        t = time.perf_counter()
        result = recommend_for_user(registry=registry, user_id=user, model=model, filters=Filters(k=K))
        return result, time.perf_counter() - t

    for model in MODELS:
        # Each path in its own loop: the exact path's catalog-wide products leave BLAS threads spinning, which
        # would slow whatever runs right after them on this 2-core box.
        e_runs = [timed(exact, user, model) for user in users]
        a_runs = [timed(approximate, user, model) for user in users]
        sim = [
            overlap(
                ids(similar_items(registry=approximate, item_id=item, model=model, k=K)),
                ids(similar_items(registry=exact, item_id=item, model=model, k=K)),
            )
            for item in items
        ]
        out[model] = {
            "recommend_recall@10": float(
                np.mean([overlap(ids(a), ids(e)) for (a, _), (e, _) in zip(a_runs, e_runs, strict=True)])
            ),
            "similar_recall@10": float(np.mean(sim)),
            "recommend_ms_exact_median": 1000 * float(np.median([t for _, t in e_runs])),
            "recommend_ms_approximate_median": 1000 * float(np.median([t for _, t in a_runs])),
        }
    sessions = []
    for _ in range(queries):
        n = int(rng.integers(1, 10))
        session = exact.item_raw[rng.choice(np.arange(1, exact.n_items + 1), n, replace=False)].tolist()
        ratings = rng.integers(1, 6, int(rng.integers(0, n + 1))).astype(float).tolist()
        a = recommend_for_session(registry=approximate, items=session, ratings=ratings, filters=Filters(k=K))
        e = recommend_for_session(registry=exact, items=session, ratings=ratings, filters=Filters(k=K))
        sessions.append(overlap(ids(a), ids(e)))
    out["lstm"]["session_recall@10"] = float(np.mean(sessions))
    return out


def worker_rss_mb(pid: int) -> list[float]:
    """RSS of `pid`'s children (uvicorn's workers), or of `pid` itself when it has none (one worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [rss_mb(int(c)) for c in children] if children else [rss_mb(pid)]


def lua_random(path: Path, template: str, n: int) -> Path:
    """A wrk script requesting `template` with a random id in 1..n per request ({} is replaced)."""
    before, after = template.split("{}")
    path.write_text(
        "math.randomseed(1)\n"
        f'request = function() return wrk.format("GET", "{before}" .. math.random(1, {n}) .. "{after}") end\n'
    )
    return path


def lua_session(path: Path, n_items: int) -> Path:
    path.write_text(
        "math.randomseed(2)\n"
        "request = function()\n"
        "  local items = {}\n"
        f"  for i = 1, 5 do items[i] = math.random(1, {n_items}) end\n"
        '  local body = \'{"items": [\' .. table.concat(items, ",") .. \'], "ratings": [4, 5, 3], "k": 10}\'\n'
        '  return wrk.format("POST", "/recommend", {["Content-Type"] = "application/json"}, body)\n'
        "end\n"
    )
    return path


def serving(
    store: Path,
    tmp: Path,
    *,
    workers: int,
    retrieval: bool,
    duration: int,
    connections: int,
    n_users: int = scale.N_USERS,
    n_items: int = scale.N_ITEMS,
    label: str = "25M-sized",
) -> dict[str, Any]:
    env = {"RECSYS_ANN_MIN_ITEMS": str(Settings().ann_min_items if retrieval else 10**9)}
    label = f"{label}-{'approximate' if retrieval else 'exact'}-{workers}w"
    log_path = tmp / f"server-{label}.log"
    with serve(store, log_path=log_path, workers=workers, env=env, timeout=LARGE_START_TIMEOUT) as server:
        result: dict[str, Any] = {
            "store": label,
            "workers": workers,
            "retrieval": retrieval,
            "ready_seconds": server.ready_seconds,
            "worker_rss_mb": worker_rss_mb(server.pid),
        }
        routes, single = [], []
        for model in MODELS:
            script = lua_random(tmp / f"rec-{model}.lua", f"/recommend/{{}}?k=10&model={model}", n_users)
            name = f"GET /recommend/{{random user}}?model={model}"
            routes.append(asdict(run_wrk(name, server.url, script=script, duration=duration, connections=connections)))
            # One request at a time: the request's own latency, without queueing behind 31 others.
            one = run_wrk(name, server.url, script=script, duration=max(duration // 2, 1), threads=1, connections=1)
            single.append(asdict(one))
        result["routes_one_connection"] = single
        if retrieval or n_items < Settings().ann_min_items:
            script = lua_session(tmp / "session.lua", n_items)
            routes.append(
                asdict(
                    run_wrk(
                        "POST /recommend (5-item session)",
                        server.url,
                        script=script,
                        duration=duration,
                        connections=connections,
                    )
                )
            )
            script = lua_random(tmp / "similar.lua", "/items/{}/similar?k=10&model=mf", n_items)
            routes.append(
                asdict(
                    run_wrk(
                        "GET /items/{random item}/similar?model=mf",
                        server.url,
                        script=script,
                        duration=duration,
                        connections=connections,
                    )
                )
            )
        result["routes"] = routes
        result["worker_rss_mb_after"] = worker_rss_mb(server.pid)
    log.info("%s: %s", label, [(r["name"], r["p99_ms"]) for r in routes])
    return result


def ndcg_u1(store: Path, data: Path, depths: tuple[int, ...] = (400, 100, 40, 20)) -> dict[str, Any]:
    """NDCG@10 on u1.test (relevant: rated >= 4, not in the training history) of every model's served top 10,
    exact and with retrieval forced on at each depth, plus recall@10 of the forced lists against the exact.
    The shortlist must keep half its depth after filters (else it widens), so each depth is what it says."""
    test = pd.read_csv(data / "u1.test", sep="\t", names=["user", "item", "rating", "ts"])
    liked = test[test.rating >= 4].groupby("user")["item"].apply(set).to_dict()
    exact = ModelRegistry.load(store)
    base = RetrievalConfig.from_settings(Settings(ann_min_items=0))
    forced = {
        d: ModelRegistry.load(store, retrieval=replace(base, depth=d, min_candidates=max(K, d // 2))) for d in depths
    }
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    out: dict[str, Any] = {"n_items": exact.n_items, "depths": list(depths)}
    for model in MODELS:
        rows: dict[str, list[float]] = {"exact": [], **{f"depth {d}": [] for d in depths}}
        overlaps: dict[str, list[float]] = {f"depth {d}": [] for d in depths}
        for user, relevant in liked.items():
            if not exact.has_user(user):
                continue
            seen = set(exact.item_raw[exact.history(exact.user_index(user))[0]].tolist())
            relevant = relevant - seen
            if not relevant:
                continue
            ideal = discount[: min(len(relevant), K)].sum()

            def ndcg(top: list[int], rel: set[int] = relevant, best: float = ideal) -> float:
                return float(sum(discount[r] for r, i in enumerate(top) if i in rel) / best)

            def top(registry: ModelRegistry, u: int = user, m: str = model) -> list[int]:
                response = recommend_for_user(registry=registry, user_id=u, model=m, filters=Filters(k=K))
                return [i.item_id for i in response.items]

            exact_top = top(exact)
            rows["exact"].append(ndcg(exact_top))
            for d, registry in forced.items():
                found = top(registry)
                rows[f"depth {d}"].append(ndcg(found))
                overlaps[f"depth {d}"].append(overlap(found, exact_top))
        out[model] = {
            "users": len(rows["exact"]),
            "ndcg@10": {k: float(np.mean(v)) for k, v in rows.items()},
            "recall@10_vs_exact": {k: float(np.mean(v)) for k, v in overlaps.items()},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    set_threads(1)
    results: dict[str, Any] = {
        "command": "python -m bench.ann " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k: v for k, v in Settings().model_dump().items() if k.startswith("ann_")},
        "load_average_at_start": list(os.getloadavg()),
        "cpus": len(os.sched_getaffinity(0)),
    }
    previous = REPO / "bench" / "out" / "ann.json"
    if not args.u1_store and previous.exists():  # keep the last u1 figures, with the command that made them
        last = json.loads(previous.read_text())
        if "u1" in last:
            results["u1"] = last["u1"]
            results["u1_command"] = last.get("u1_command", last["command"])
    if args.u1_store:
        if args.data is None:
            raise SystemExit("--u1-store needs --data (the ML-100K directory with u1.test)")
        log.info("NDCG@10 on u1 with retrieval forced on")
        results["u1"] = ndcg_u1(args.u1_store.resolve(), args.data.resolve())
        if args.only_u1:
            last = json.loads((REPO / "bench" / "out" / "ann.json").read_text())
            results = {**last, "u1": results["u1"], "u1_command": results["command"]}
            save(results)
            write_docs(results, args.docs)
            return 0
        save(results)
    with tempfile.TemporaryDirectory(prefix="bench-ann-") as tmp_name:
        tmp = Path(tmp_name)
        store = tmp / "store"
        log.info("building the 25M-sized store")
        results["build"] = scale.build_store(store, args.ratings)
        t = time.perf_counter()
        exact = ModelRegistry.load(store)
        results["load_seconds_exact"] = time.perf_counter() - t
        t = time.perf_counter()
        approximate = ModelRegistry.load(store, retrieval=RetrievalConfig.from_settings(Settings()))
        results["load_seconds_approximate"] = time.perf_counter() - t
        log.info("recall@10 over %d queries", args.queries)
        results["recall"] = recall(exact, approximate, args.queries)
        del exact, approximate
        save(results)
        serve_runs = []
        for workers in (int(w) for w in args.workers.split(",")):
            for retrieval in (True, False) if not args.skip_exact_serving else (True,):
                serve_runs.append(
                    serving(
                        store,
                        tmp,
                        workers=workers,
                        retrieval=retrieval,
                        duration=args.duration,
                        connections=args.connections,
                    )
                )
                results["serving"] = serve_runs
                save(results)
        # The same load on the committed ML-100K store (exact), in the same run: what the 25M-sized store is
        # compared with on this shared machine.
        small = REPO / "models_store"
        serve_runs.append(
            serving(
                small,
                tmp,
                workers=max(int(w) for w in args.workers.split(",")),
                retrieval=False,
                duration=args.duration,
                connections=args.connections,
                n_users=943,
                n_items=1682,
                label="ML-100K",
            )
        )
        results["serving"] = serve_runs
    results["load_average_at_end"] = list(os.getloadavg())
    save(results)
    write_docs(results, args.docs)
    return 0


def save(results: dict[str, Any]) -> None:
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ann.json").write_text(json.dumps(results, indent=2) + "\n")


def write_docs(results: dict[str, Any], docs: Path) -> None:
    from bench.ann_report import section

    body = section(results)
    for name in ("scaling.md", "benchmarks.md"):
        replace_section(docs / name, body, title="# Scaling" if name == "scaling.md" else "# Benchmarks")


def replace_section(path: Path, body: str, *, title: str) -> None:
    """Put `body` (starting with SECTION) in place of that section of `path`, or at its end; the rest of the
    file (other engineers' sections) is kept as it is."""
    text = path.read_text() if path.exists() else f"{title}\n"
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        text = text.rstrip() + "\n\n" + body.rstrip() + "\n"
    else:
        end = text.find("\n## ", start + 1)
        rest = text[end:] if end >= 0 else "\n"
        text = text[: start + 1] + body.rstrip() + "\n" + rest
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
