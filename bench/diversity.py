"""`python -m bench.diversity`: what the `diversity` parameter costs in NDCG@10 and buys in spread.

For every test user of a split (RankingTask protocol of `training.ranking`: relevant = test items rated 4+,
candidates = items not in the user's training data), each model's served ranking (predicted stars plus its
popularity blend) is re-ranked with the service's own MMR (`app.ranking.ranked_page`) at several
settings. Per setting: NDCG@10; intra-list diversity (mean pairwise cosine distance of the 10 items) over the
model's own item embeddings (what MMR trades on) and over genres (Jaccard distance, a measure MMR never
sees); catalog coverage (share of the catalog in anyone's top 10). Writes a chart and prints a table.

    .venv/bin/python -m bench.diversity --data ../shared/data/ml-100k --store bench/out/u1-store --split u1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from app.diversity import intra_list_diversity
from app.ranking import Filters, ranked_page
from app.registry import ModelRegistry
from bench.server import REPO
from training.data import load_movielens
from training.ranking import K, RankingTask, per_user_metrics

SETTINGS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
MODELS = ("mf", "dense", "lstm")


def genre_diversity(genres: np.ndarray, lists: np.ndarray) -> float:
    """Mean pairwise Jaccard distance of the items' genre sets within each list, averaged over lists."""
    g = genres[lists].astype(np.float64)  # [U, k, n_genres]
    inter = np.einsum("ukg,ujg->ukj", g, g)
    size = g.sum(axis=2)
    union = size[:, :, None] + size[:, None, :] - inter
    distance = 1.0 - np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    k = lists.shape[1]
    return float(np.mean(distance.sum(axis=(1, 2)) / (k * (k - 1))))


def measure(registry: ModelRegistry, task: RankingTask) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for name in MODELS:
        loaded = registry.models[name]
        with torch.inference_mode():
            scores = np.stack([loaded.module.rank_all(torch.tensor([int(u)])).numpy() for u in task.users])
        rows = []
        for setting in SETTINGS:
            filters = Filters(k=K, diversity=setting)
            lists = np.stack(
                [
                    ranked_page(scores[r], ~task.exclude[r] & registry.all_items, loaded.unit_embeddings, filters)[0]
                    for r in range(len(task.users))
                ]
            )
            metrics = per_user_metrics(lists, task.relevant, K)
            rows.append(
                {
                    "diversity": setting,
                    "ndcg@10": float(metrics["ndcg@10"].mean()),
                    "ild_embedding": intra_list_diversity(loaded.unit_embeddings, lists),
                    "ild_genre": genre_diversity(registry.genre_matrix, lists),
                    "coverage": len(np.unique(lists)) / registry.n_items,
                }
            )
        out[name] = rows
    return out


def plot(results: dict[str, list[dict[str, float]]], path: Path, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for name, rows in results.items():
        ndcg = [r["ndcg@10"] for r in rows]
        for ax, key in zip(axes, ("ild_embedding", "ild_genre", "coverage"), strict=True):
            xs = [r[key] for r in rows]
            ax.plot(xs, ndcg, marker="o", label=name)
            for x, y, r in zip(xs, ndcg, rows, strict=True):
                ax.annotate(f"{r['diversity']:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    titles = ("intra-list diversity (model embeddings)", "intra-list diversity (genres, Jaccard)", "catalog coverage")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel(title)
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"MMR re-ranking on {split}: accuracy against spread (labels: the diversity setting)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def markdown(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| model | diversity | NDCG@10 | ILD (embeddings) | ILD (genres) | coverage |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in results.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['diversity']:g} | {r['ndcg@10']:.3f} | {r['ild_embedding']:.3f} | "
                f"{r['ild_genre']:.3f} | {r['coverage']:.1%} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diversity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True, help="a store trained on the split's base file")
    parser.add_argument("--split", default="u1")
    parser.add_argument("--chart", type=Path, default=REPO / "docs" / "img" / "diversity.png")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    registry = ModelRegistry.load(args.store)
    data = load_movielens(args.data)
    train, test = data.split(args.split)
    results = measure(registry, RankingTask.build(train, test))
    print(markdown(results))
    plot(results, args.chart, args.split)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
