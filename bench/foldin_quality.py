"""`python -m bench.foldin_quality`: how good is a new user folded in from a few ratings?

For the test users of a canonical split, each with at least `MAX_N` training ratings: fold the user in from
their first 5, 10 and 20 training ratings (time order) with the service's own code (`app.foldin`, the view the
registry builds at load), rank by the model's served ranking score (mf: its ranking vectors; dense: the
folded-in stars), and
measure NDCG@10 on the held-out test ratings with `training.ranking.RankingTask` (relevant: test items rated
4+; candidates: every item not in the user's training data, for every row alike). Beside it, in the same run
on the same users: the trained user (``rank_all``), fold-in from every training rating, the popularity
baseline, and the LSTM ranking after the same first n ratings as a session (``rank_next``, what
`POST /recommend` does with ``model=lstm``).

The store must be trained on the split's base file (``python -m training --split u1 --out DIR``), so test
ratings never informed the models. The item side, and the prior the fold-in uses, were trained with every
training user's full history, these users' included; this measures how much of a user's taste a few ratings
recover, not a new population.

    .venv/bin/python -m bench.foldin_quality --data ../shared/data/ml-100k --store bench/out/u1-store --split u1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.artifacts import SEQUENCE_LENGTH, latest_context
from app.registry import ModelRegistry
from app.services.foldin import _folded
from training.data import load_movielens
from training.ranking import RankingTask

COUNTS = (5, 10, 20)
MAX_N = max(COUNTS)


def subset_task(task: RankingTask, keep: np.ndarray) -> RankingTask:
    return RankingTask(task.history, task.users[keep], task.exclude[keep], task.relevant[keep], task.popularity)


def measure(registry: ModelRegistry, task: RankingTask) -> dict[str, Any]:
    """NDCG@10 of the served ranking score per row and model; every row on the same users."""
    users = task.users
    histories = [registry.history(int(u)) for u in users]
    results: dict[str, Any] = {"users": len(users), "popularity": task.evaluate_popularity()["ndcg@10"], "models": {}}
    for name in ("mf", "dense"):
        loaded = registry.models[name]
        with torch.inference_mode():
            trained = np.stack([loaded.module.rank_all(torch.tensor([int(u)])).numpy() for u in users])
        rows = {"trained user": trained}
        for n in (*COUNTS, None):
            rows[f"fold-in, first {n}" if n else "fold-in, all"] = np.stack(
                [_folded(registry, loaded, items[:n], list(ratings[:n]))[0] for items, ratings in histories]
            )
        results["models"][name] = {label: task.evaluate(scores, 0.0)["ndcg@10"] for label, scores in rows.items()}
    lstm = registry.models["lstm"]
    session: dict[str, float] = {}
    for n in COUNTS:
        scores = []
        with torch.inference_mode():
            for items, ratings in histories:
                context_items, context_ratings = latest_context(items[:n], ratings[:n], SEQUENCE_LENGTH)
                out = lstm.module.rank_next(
                    torch.from_numpy(context_items[None]), torch.from_numpy(context_ratings[None])
                )
                scores.append(out.numpy())
        session[f"session, first {n}"] = task.evaluate(np.stack(scores), 0.0)["ndcg@10"]
    results["models"]["lstm"] = session
    return results


def markdown(results: dict[str, Any], split: str) -> str:
    labels = ["trained user", *(f"fold-in, first {n}" for n in COUNTS), "fold-in, all"]
    lines = [
        f"{split}: {results['users']} test users with a relevant test item and >= {MAX_N} training ratings; "
        f"popularity NDCG@10 {results['popularity']:.3f}",
        "",
        "| model | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
    ]
    for name in ("mf", "dense"):
        row = results["models"][name]
        lines.append(f"| {name} | " + " | ".join(f"{row[label]:.3f}" for label in labels) + " |")
    lstm = results["models"]["lstm"]
    cells = ["n/a", *(f"{lstm[f'session, first {n}']:.3f}" for n in COUNTS), "n/a"]
    lines.append("| lstm (session) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.foldin_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ML-100K directory")
    parser.add_argument("--store", type=Path, required=True, help="a store trained on the split's base file")
    parser.add_argument("--split", default="u1")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    registry = ModelRegistry.load(args.store)
    if registry.manifest.dataset.split != args.split:
        print(f"error: {args.store} was trained on {registry.manifest.dataset.split!r}, not {args.split!r}")
        return 1
    data = load_movielens(args.data)
    train, test = data.split(args.split)
    assert registry.catalog.user_ids == data.user_raw_ids.tolist(), "the store's users are not the data set's"
    task = RankingTask.build(train, test)
    counts = np.diff(registry.indptr)[task.users]
    results = measure(registry, subset_task(task, counts >= MAX_N))
    print(markdown(results, args.split))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
