"""`python -m app.batch`: write the top-k of every user of a model store to CSV (a batch inference job).

What AWS Personalize's batch inference job does, for this service's stores: load the store as the service
does (checksums verified, models warmed), score users in blocks with the same batched path as
`POST /recommend/batch` (`app.services.batch`), and write one row per (user, rank):
``user_id,rank,item_id,score,rating``. Same filters as the endpoint. A progress bar on stderr.

    python -m app.batch --store models_store --model mf --k 10 --out recommendations.csv

``--out`` ending in ``.parquet`` writes Parquet instead (needs pyarrow, which the service does not depend on).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from app.artifacts import MODEL_NAMES
from app.errors import RecsysError
from app.ranking import Filters
from app.registry import ModelRegistry
from app.services.batch import chunks, top_for_users

log = logging.getLogger(__name__)
BLOCK_USERS = 1000  # users scored per block: the endpoint's limit, and ~7 MB of scores for ML-100K
COLUMNS = ("user_id", "rank", "item_id", "score", "rating")


def write_recommendations(
    registry: ModelRegistry,
    *,
    model: str,
    filters: Filters,
    out: Path,
    exclude_seen: bool = True,
    block: int = BLOCK_USERS,
    progress: bool = True,
) -> tuple[int, float]:
    """Write every user's top-k to `out`; returns (users written, seconds spent scoring and writing)."""
    loaded = registry.model(model)
    started = time.perf_counter()
    columns: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
    with tqdm(total=registry.n_users, unit="user", desc=f"{model} top-{filters.k}", disable=not progress) as bar:
        for users in chunks(registry.n_users, block):
            top = top_for_users(registry, loaded, users, filters, exclude_seen=exclude_seen)
            keep = top.items >= 0
            rows, ranks = np.nonzero(keep)
            columns["user_id"].append(np.asarray(registry.catalog.user_ids)[users - 1][rows])
            columns["rank"].append(ranks + filters.offset + 1)
            columns["item_id"].append(registry.item_raw[top.items[keep]])
            columns["score"].append(np.round(top.scores[keep].astype(np.float64), 4))
            columns["rating"].append(np.round(top.stars[keep].astype(np.float64), 4))
            bar.update(len(users))
    table = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}
    _write(out, table)
    return registry.n_users, time.perf_counter() - started


def _write(out: Path, table: dict[str, np.ndarray]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pandas as pd  # only here: the service itself never needs pandas

        pd.DataFrame(table).to_parquet(out, index=False)
        return
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(
            zip(
                table["user_id"].tolist(),
                table["rank"].tolist(),
                table["item_id"].tolist(),
                table["score"].tolist(),
                table["rating"].tolist(),
                strict=True,
            )
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("models_store"), help="model store directory")
    parser.add_argument("--model", choices=MODEL_NAMES, default="mf")
    parser.add_argument("--k", type=int, default=10, help="items per user")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write (.parquet: Parquet)")
    parser.add_argument("--genres", default="", help="comma-separated: only items having any of these")
    parser.add_argument("--exclude", default="", help="comma-separated raw item ids never to recommend")
    parser.add_argument("--include-seen", action="store_true", help="also recommend items a user rated")
    parser.add_argument("--diversity", type=float, default=0.0, help="MMR re-ranking, 0 to 1")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if not 0.0 <= args.diversity <= 1.0 or args.k < 1:
        print("error: --k must be >= 1 and --diversity within [0, 1]", file=sys.stderr)
        return 2
    try:
        registry = ModelRegistry.load(args.store)
        filters = Filters(
            k=args.k,
            genres=tuple(g.strip() for g in args.genres.split(",") if g.strip()),
            exclude=tuple(int(i) for i in args.exclude.split(",") if i.strip()),
            diversity=args.diversity,
        )
        users, seconds = write_recommendations(
            registry,
            model=args.model,
            filters=filters,
            out=args.out,
            exclude_seen=not args.include_seen,
            progress=not args.no_progress,
        )
    except (RecsysError, ValueError) as e:
        print(f"error: {getattr(e, 'message', e)}", file=sys.stderr)
        return 1
    print(
        f"wrote top-{args.k} of {users} users by {args.model} to {args.out} in {seconds:.2f} s "
        f"({users / seconds:,.0f} users/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
