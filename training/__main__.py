"""`python -m training`: train the three models on MovieLens 100K and export them to a model store."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from app.artifacts import DEFAULT_KEEP_VERSIONS
from training.data import CANONICAL_SPLITS, SPLITS, DataError, load_movielens
from training.datasource import DATA_ENV, DataSourceError, resolve_data_dir
from training.export import ExportError
from training.pipeline import MODELS, Outcome, run

# The tutorial's test RMSE on the [0,1] scale, printed beside ours for comparison.
TUTORIAL_RMSE_SCALED = {"mf": 0.66, "dense": 0.28, "lstm": 0.43}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    p.add_argument("--data", help=f"ML-100K directory or ml-100k.zip (default: ${DATA_ENV}, cache, or download)")
    p.add_argument("--split", default="u1", choices=SPLITS, help="training split; 'full' uses every rating")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of mf,dense,lstm")
    p.add_argument("--out", type=Path, default=Path("models_store"), help="model store directory to write")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    p.add_argument(
        "--keep-versions",
        type=int,
        default=DEFAULT_KEEP_VERSIONS,
        help=f"store versions --out keeps for rollback, this one included (default {DEFAULT_KEEP_VERSIONS})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice, 0 or more (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="cap on epochs per model (default: each config's)")
    p.add_argument(
        "--eval-split",
        default=None,
        choices=CANONICAL_SPLITS,
        help="only with --split full: the split whose test part the recorded metrics come from (default u1); "
        "any other split is measured on its own test part",
    )
    p.add_argument("--no-download", action="store_true", help="never download the data set")
    # Minibatches of a few hundred ratings are too small to gain from intra-op threads, and spare threads spin
    # against anything else on the machine (measured 10x slower on a busy 2-core box with 2 threads).
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = p.parse_args(argv)
    args.models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = set(args.models) - set(MODELS)
    if unknown or not args.models:
        p.error(f"--models: unknown {', '.join(sorted(unknown)) or '(none given)'}; choose from {', '.join(MODELS)}")
    if args.keep_versions < 1:
        p.error("--keep-versions must be at least 1")
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1")
    # Checked here, before any data is read or model trained, rather than found out by a traceback later.
    if args.threads < 1:
        p.error(f"--threads must be at least 1, not {args.threads}")
    if args.seed < 0:
        p.error(f"--seed must be 0 or more (numpy seeds are non-negative), not {args.seed}")
    if args.eval_split is not None and args.split != "full":
        p.error(f"--eval-split applies only with --split full; --split {args.split} is measured on its own test part")
    args.eval_split = args.eval_split or "u1"
    if not args.no_export:
        out: Path = args.out
        blocker = next((d for d in (out, *out.parents) if d.exists() and not d.is_dir()), None)
        if blocker is not None:
            p.error(f"--out {out}: {blocker} is a file, not a directory; give a model store directory")
    return args


def table(outcomes: list[Outcome], seconds: float) -> str:
    rows = [
        f"{'model':<6} {'RMSE★':>7} {'MAE★':>7} {'RMSE[0,1]':>10} {'tutorial':>9} {'epochs':>7}"
        f" {'seconds':>8} {'NDCG@10':>8} {'pop.NDCG':>8} {'w':>5}  split"
    ]
    for o in outcomes:
        m = o.test
        tut = TUTORIAL_RMSE_SCALED[o.model.name]
        # Ranking: the model's NDCG@10 with its popularity blend w, beside plain popularity on the same users.
        ranking = f"{'-':>8} {'-':>8} {o.model.popularity_weight:>5g}"
        if m is None:
            rows.append(
                f"{o.model.name:<6} {'-':>7} {'-':>7} {'-':>10} {tut:>9.2f} {o.fit.epochs:>7}"
                f" {o.fit.seconds:>8.1f} {ranking}"
            )
        else:
            if m.ranking:
                ndcg, pop, w = (m.ranking[k] for k in ("ndcg@10", "popularity_ndcg@10", "popularity_weight"))
                ranking = f"{ndcg:>8.4f} {pop:>8.4f} {w:>5g}"
            rows.append(
                f"{o.model.name:<6} {m.rmse:>7.4f} {m.mae:>7.4f} {m.rmse_scaled:>10.4f} {tut:>9.2f} "
                f"{o.fit.epochs:>7} {o.fit.seconds:>8.1f} {ranking}  {m.split}"
            )
    rows.append(f"total wall time {seconds:.1f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        directory = resolve_data_dir(args.data, download=not args.no_download)
        data = load_movielens(directory)
        outcomes = run(
            data,
            split=args.split,
            models=args.models,
            out=None if args.no_export else args.out,
            seed=args.seed,
            max_epochs=args.epochs,
            eval_split=args.eval_split,
            keep_versions=args.keep_versions,
        )
    except (DataSourceError, DataError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(outcomes, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
