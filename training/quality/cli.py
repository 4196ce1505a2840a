"""`python -m training.quality`: cross-validated model quality beside baselines and published anchors.

Trains every model on each canonical fold with the production recipe (`training.pipeline.train_one`, which
early-stops on a validation split carved from the fold's base), measures RMSE / MAE and top-10 ranking as each
model's spec says (`training.specs`), fits the baselines and peers on the same base, runs a temporal hold-out
(each user's last ratings) for the sequence model (`training.quality.experiment`), and writes ``report.md``,
``quality.json`` and charts under ``img/`` into the output directory (`training.quality.report`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from training.data import CANONICAL_SPLITS, DataError, load_dataset
from training.datasource import DataSourceError, resolve_data_dir
from training.quality.experiment import FOLDS, evaluate_splits, temporal_split, to_json
from training.quality.report import error_table, ranking_table, write_report
from training.specs import MODELS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.quality", description=__doc__.splitlines()[0])
    p.add_argument("--data", help="ML-100K directory or ml-100k.zip (default: $RECSYS_DATA_DIR or the cache)")
    p.add_argument(
        "--folds",
        default=",".join(FOLDS),
        help="comma-separated canonical splits, or K for a seeded K-fold cross-validation (data sets without "
        "canonical folds)",
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of mf,dense,lstm")
    p.add_argument("--out", type=Path, default=Path("docs"), help="directory for report.md, quality.json, img/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="cap on epochs per model (default: each config's)")
    p.add_argument("--no-temporal", action="store_true", help="skip the last-10-ratings temporal check")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as for training)")
    p.add_argument("--jobs", type=int, default=1, help="folds evaluated at once, one process each (default 1)")
    args = p.parse_args(argv)
    if args.folds.strip().isdigit():
        k = int(args.folds)
        if k < 2:
            p.error("--folds K needs K >= 2")
        args.folds = tuple(f"cv{i}/{k}" for i in range(1, k + 1))  # training.data: fold i of a seeded K-fold
    else:
        args.folds = tuple(f.strip() for f in args.folds.split(",") if f.strip())
        if not args.folds or set(args.folds) - set(CANONICAL_SPLITS):
            p.error(f"--folds: choose from {', '.join(CANONICAL_SPLITS)}, or give a number K of folds")
    args.models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not args.models or set(args.models) - set(MODELS):
        p.error(f"--models: choose from {', '.join(MODELS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        data = load_dataset(resolve_data_dir(args.data, download=False))
    except (DataSourceError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    splits = [(fold, *data.split(fold)) for fold in args.folds]
    if not args.no_temporal:
        splits.append(("temporal", *temporal_split(data.ratings)))
    evaluated = evaluate_splits(
        splits, models=args.models, seed=args.seed, max_epochs=args.epochs, jobs=args.jobs, threads=args.threads
    )
    results = evaluated[: len(args.folds)]
    temporal = None if args.no_temporal else evaluated[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(to_json(results, temporal), indent=1) + "\n")
    command = "python -m training.quality " + " ".join(argv if argv is not None else sys.argv[1:])
    report = write_report(
        args.out,
        results,
        temporal,
        data=data,
        models=args.models,
        command=command.strip(),
        seconds=time.perf_counter() - start,
    )
    print(error_table(results))
    print()
    print(ranking_table(results))
    if temporal is not None:
        print()
        print(error_table([temporal]))
    print(f"\nwrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
