"""`python -m bench.scale_data`: the real CLI on a synthetic data set in the ML-25M file layout.

Generates ``ratings.csv`` / ``movies.csv`` shaped like MovieLens 25M (162,541 users at 25M ratings, scaled in
proportion for smaller runs; 59,047 rated items with sparse movie ids up to ~209k; Zipf-like item popularity;
long-tailed user activity with at least 20 ratings each; half stars from user and item biases plus noise) into a
temporary directory that is deleted afterwards (never committed), then runs ``python -m training --split full``
once per model (its own process, so each model's peak RSS is its own), starts the server on the store and asks
it for a prediction. Prints one JSON document and a table: seconds per epoch, ratings/s, peak RSS, store size,
load time, server RSS.

    nice -n 10 python -m bench.scale_data --ratings 2500000     # the linear-cost check
    nice -n 10 python -m bench.scale_data --ratings 25000000    # full size (~1 h on a quiet 2-core box)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from bench.server import LARGE_START_TIMEOUT, REPO, post_json, serve

USERS_25M = 162_541
RATINGS_25M = 25_000_095
ITEMS_RATED_25M = 59_047
MAX_MOVIE_ID = 209_171
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def generate(directory: Path, n_ratings: int, seed: int = 0) -> dict[str, Any]:
    """Write ``ratings.csv`` and ``movies.csv`` in the ML-25M layout; return what was generated."""
    rng = np.random.default_rng(seed)
    n_users = max(100, round(USERS_25M * n_ratings / RATINGS_25M))
    n_items = ITEMS_RATED_25M
    # Long-tailed activity: at least 20 each (as MovieLens guarantees), a Pareto tail, scaled to the total.
    extra = rng.pareto(1.2, n_users)
    extra *= (n_ratings - 20 * n_users) / extra.sum()
    counts = np.minimum(20 + np.floor(extra).astype(np.int64), n_items // 2)
    # Zipf-like popularity, mixed with a uniform share so the heaviest users can still find unseen items. A user
    # drawing an item twice keeps one: each round draws every user's remaining shortfall again.
    weights = 1.0 / (np.arange(n_items) + 10.0) ** 1.1
    p = 0.8 * weights / weights.sum() + 0.2 / n_items
    key = np.zeros(0, dtype=np.int64)
    for _ in range(6):
        have = np.bincount(key // n_items, minlength=n_users) if len(key) else np.zeros(n_users, np.int64)
        short = np.maximum(counts - have, 0)
        if short.sum() == 0:
            break
        users = np.repeat(np.arange(n_users), short)
        key = np.unique(np.r_[key, users.astype(np.int64) * n_items + rng.choice(n_items, size=len(users), p=p)])
    users, items = key // n_items, key % n_items
    n = len(users)
    user_bias = rng.normal(0, 0.4, n_users)
    item_bias = rng.normal(0, 0.5, n_items)
    stars = 3.5 + user_bias[users] + item_bias[items] + rng.normal(0, 0.8, n)
    stars = np.clip(np.round(stars * 2) / 2, 0.5, 5.0)
    movie_ids = np.sort(rng.choice(np.arange(1, MAX_MOVIE_ID + 1), n_items, replace=False))
    timestamps = rng.integers(789_652_009, 1_574_327_703, n)
    order = np.lexsort((timestamps, users))  # ML's ratings.csv is sorted by user, then time
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "userId": pa.array(users[order] + 1),
            "movieId": pa.array(movie_ids[items[order]]),
            "rating": pa.array(stars[order]),
            "timestamp": pa.array(timestamps[order]),
        }
    )
    pacsv.write_csv(table, directory / "ratings.csv", pacsv.WriteOptions(quoting_style="none"))
    genre_count = rng.integers(0, 4, n_items)
    genres = [
        "|".join(rng.choice(GENRES, k, replace=False)) if k else "(no genres listed)" for k in genre_count.tolist()
    ]
    years = rng.integers(1900, 2020, n_items)
    titles = [f"Synthetic Movie {m}, The ({y})" for m, y in zip(movie_ids.tolist(), years.tolist(), strict=True)]
    pd.DataFrame({"movieId": movie_ids, "title": titles, "genres": genres}).to_csv(
        directory / "movies.csv", index=False
    )
    return {"ratings": int(n), "users": int(n_users), "items": int(n_items), "max_user_ratings": int(counts.max())}


def run_cli(data: Path, store: Path, model: str, epochs: int, log_path: Path) -> dict[str, Any]:
    """One ``python -m training`` process for `model`; its wall time, peak RSS (wait4) and what it logged."""
    cmd = [
        sys.executable,
        "-m",
        "training",
        "--data",
        str(data),
        "--split",
        "full",
        "--eval-split",
        "none",
        "--models",
        model,
        "--epochs",
        str(epochs),
        "--out",
        str(store),
        "--no-download",
    ]
    start = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {log_path}:\n{text[-3000:]}")
    loaded = re.search(r"stars [\d.]+-[\d.]+ in ([\d.]+) s", text)
    return {
        "command": " ".join(cmd),
        "wall_seconds": round(seconds, 1),
        # On a shared, loaded box wall time mostly measures the queue; CPU time is what the run itself cost.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2),  # ru_maxrss is in KiB on Linux
        "load_seconds": float(loaded.group(1)) if loaded else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_data", description=__doc__.splitlines()[0])
    p.add_argument("--ratings", type=int, default=2_500_000, help="ratings to generate (25000000: full size)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--models", default="mf,dense,lstm")
    p.add_argument("--keep", type=Path, default=None, help="generate here and keep it (default: a temp dir)")
    p.add_argument("--reuse", type=Path, default=None, help="a folder generate() wrote earlier: skip generating")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="recsys-scale-"))
    results: dict[str, Any] = {"command": "python -m bench.scale_data " + " ".join(argv or sys.argv[1:])}
    try:
        data, store = args.reuse or work / "ml-synthetic-25m-layout", work / "store"
        start = time.perf_counter()
        if args.reuse is None:
            results["generated"] = generate(data, args.ratings)
            results["generate_seconds"] = round(time.perf_counter() - start, 1)
        results["ratings_csv_mb"] = round((data / "ratings.csv").stat().st_size / 1024**2, 1)
        print(json.dumps(results), flush=True)
        results["models"] = {}
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            run = run_cli(data, store, model, args.epochs, work / f"train-{model}.log")
            manifest = json.loads((store / "manifest.json").read_text())
            entry = manifest["models"][model]
            n = manifest["dataset"]["n_ratings"]
            run["epochs"] = entry["epochs"]
            # training_seconds counts an MF pretraining for dense and lstm (their own process fits one).
            run["training_seconds"] = entry["training_seconds"]
            run["seconds_per_epoch"] = round(entry["training_seconds"] / entry["epochs"], 1)
            run["ratings_per_second"] = round(n * entry["epochs"] / entry["training_seconds"])
            results["models"][model] = run
            print(json.dumps({model: run}), flush=True)
        manifest = json.loads((store / "manifest.json").read_text())
        results["dataset"] = manifest["dataset"]
        results["store_mb"] = round(sum(f.stat().st_size for f in store.iterdir()) / 1024**2, 1)
        catalog = json.loads(next(store.glob("catalog-*.json")).read_text())
        user, item = catalog["user_ids"][0], catalog["items"][0]["item_id"]
        with serve(store, log_path=work / "server.log", timeout=LARGE_START_TIMEOUT) as server:
            answers = {}
            for model in results["models"]:
                if model == "lstm":
                    body = {"items": [item], "ratings": []}
                    answers[model] = post_json(f"{server.url}/predict/lstm", body)["predictions"]
                else:
                    body = {"user_id": user, "item_ids": [item]}
                    answers[model] = post_json(f"{server.url}/predict/{model}", body)["predictions"]
            results["server"] = {
                "ready_seconds": round(server.ready_seconds, 1),
                "rss_mb": round(server.rss_after_load_mb),
                "predictions": answers,
            }
        results["total_train_seconds"] = round(sum(r["wall_seconds"] for r in results["models"].values()), 1)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    header = (
        f"{'model':<6} {'s/epoch':>8} {'ratings/s':>10} {'peak RSS GB':>12} {'wall s':>8} {'cpu s':>8} {'load s':>7}"
    )
    print("\n" + header)
    for model, r in results.get("models", {}).items():
        print(
            f"{model:<6} {r['seconds_per_epoch']:>8} {r['ratings_per_second']:>10} {r['peak_rss_gb']:>12} "
            f"{r['wall_seconds']:>8} {r['cpu_seconds']:>8} {r['load_seconds']!s:>7}"
        )
    if "server" in results:
        print(
            f"store {results['store_mb']} MB; server RSS {results['server']['rss_mb']} MB, ready in "
            f"{results['server']['ready_seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
