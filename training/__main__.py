"""`python -m training`: train the three models on MovieLens (any release) or your own ratings file, and export
them to a model store.

``torchrun --nproc_per_node=N -m training ...`` trains data-parallel on N processes (`training.distributed`);
rank 0 prints the table and exports. ``--summary PATH`` also writes the table's numbers as JSON (`summary`), for
scripts such as ``bench/training_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from app.artifacts import DEFAULT_KEEP_VERSIONS
from training import distributed
from training.data import SPLITS, DataError, MovieLens, check_split_name, load_dataset
from training.datasource import DATA_ENV, DataSourceError, resolve_data_dir
from training.export import ExportError
from training.fit import DivergedError
from training.loaders import Columns
from training.pipeline import Outcome, run
from training.specs import MODELS
from training.targets import TUTORIAL_RMSE_SCALED


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    p.add_argument(
        "--data",
        help=f"a MovieLens folder or zip (100K, 1M, 10M, 20M, 25M, 32M, latest), or a ratings file (.csv, .tsv, "
        f".parquet) (default: ${DATA_ENV}, cache, or a download of ML-100K)",
    )
    p.add_argument(
        "--split",
        default="u1",
        help=f"training split: {', '.join(SPLITS)} or cvI/K; u1..ub exist for ML-100K only; 'random' holds out a "
        f"seeded 20%%, 'temporal' each user's last 10, 'full' uses every rating",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the random and cvI/K splits")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of mf,dense,lstm")
    p.add_argument("--out", type=Path, default=Path("models_store"), help="model store directory to write")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="also write the final table's numbers to this JSON file (per model: metrics, epochs, seconds)",
    )
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
        help="with --split full: the split whose test metrics are recorded (default u1 where the data set has "
        "it, else random); 'none' records none and trains once",
    )
    g = p.add_argument_group("your own ratings file (with --data FILE)")
    g.add_argument("--user-col", default="user", help="user id column (integers)")
    g.add_argument("--item-col", default="item", help="item id column (integers), also in --items")
    g.add_argument("--rating-col", default="rating", help="rating column (numbers)")
    g.add_argument("--timestamp-col", default="timestamp", help="unix-seconds column; absent: file order is time")
    g.add_argument("--sep", default=None, help="field separator (default: by suffix, .csv comma, .tsv tab)")
    g.add_argument("--items", type=Path, default=None, help="items file: --item-col, title[, genres '|'-separated]")
    g.add_argument("--rating-min", type=float, default=None, help="scale's lowest rating (default: the data's)")
    g.add_argument("--rating-max", type=float, default=None, help="scale's highest rating (default: the data's)")
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
    if not args.no_export:
        out: Path = args.out
        blocker = next((d for d in (out, *out.parents) if d.exists() and not d.is_dir()), None)
        if blocker is not None:
            p.error(f"--out {out}: {blocker} is a file, not a directory; give a model store directory")
    for option, value in (("--split", args.split), ("--eval-split", args.eval_split)):
        if value is None or (option == "--eval-split" and value == "none"):
            continue
        try:
            check_split_name(value)
        except DataError as e:
            p.error(f"{option}: {e}")
        if option == "--eval-split" and value == "full":
            p.error("--eval-split: full has no test ratings to measure")
    return args


def columns(args: argparse.Namespace) -> Columns:
    """The generic ratings file's columns and options, from the command line."""
    return Columns(
        user=args.user_col,
        item=args.item_col,
        rating=args.rating_col,
        timestamp=args.timestamp_col or None,
        sep=args.sep,
        items=args.items,
        rating_min=args.rating_min,
        rating_max=args.rating_max,
    )


def eval_split_for(data: MovieLens, requested: str | None) -> str | None:
    """The evaluation split of a ``full`` run: as requested, else u1 where the data set ships it, else random."""
    if requested == "none":
        return None
    if requested is not None:
        return requested
    return "u1" if "u1" in data.canonical_splits else "random"


def table(outcomes: list[Outcome], seconds: float) -> str:
    rows = [
        f"{'model':<6} {'RMSE★':>7} {'MAE★':>7} {'RMSE[0,1]':>10} {'tutorial':>9} {'epochs':>7}"
        f" {'seconds':>8} {'NDCG@10':>8} {'pop.NDCG':>8} {'w':>5}  split"
    ]
    for o in outcomes:
        m = o.test
        tut = TUTORIAL_RMSE_SCALED[o.model.name]
        # Ranking: NDCG@10 of the model's ranking score (w: weight of its rating score in it), beside plain
        # popularity on the same users.
        ranking = f"{'-':>8} {'-':>8} {o.model.rank_weight:>5g}"
        if m is None:
            rows.append(
                f"{o.model.name:<6} {'-':>7} {'-':>7} {'-':>10} {tut:>9.2f} {o.fit.epochs:>7}"
                f" {o.fit.seconds:>8.1f} {ranking}"
            )
        else:
            if m.ranking:
                ndcg, pop = (m.ranking[k] for k in ("ndcg@10", "popularity_ndcg@10"))
                ranking = f"{ndcg:>8.4f} {pop:>8.4f} {o.model.rank_weight:>5g}"
            rows.append(
                f"{o.model.name:<6} {m.rmse:>7.4f} {m.mae:>7.4f} {m.rmse_scaled:>10.4f} {tut:>9.2f} "
                f"{o.fit.epochs:>7} {o.fit.seconds:>8.1f} {ranking}  {m.split}"
            )
    rows.append(f"total wall time {seconds:.1f} s")
    return "\n".join(rows)


def summary(outcomes: list[Outcome], seconds: float, *, split: str, exported_to: Path | None) -> dict[str, Any]:
    """The final table as data: what `--summary` writes (numbers unrounded; `metrics` is the manifest's)."""
    return {
        "split": split,
        "store": None if exported_to is None else str(exported_to),
        "total_seconds": seconds,
        "models": {
            o.model.name: {
                "epochs": o.fit.epochs,
                "best_epoch": o.fit.best_epoch,
                "seconds": o.fit.seconds,
                "rank_weight": o.model.rank_weight,
                "tutorial_rmse_scaled": TUTORIAL_RMSE_SCALED[o.model.name],
                "metrics": None if o.test is None else o.test.model_dump(mode="json"),
            }
            for o in outcomes
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    distributed.init_from_env()
    primary = distributed.is_primary()
    # The other ranks repeat rank 0's progress: they report only problems.
    level = logging.INFO if primary else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        source = resolve_data_dir(args.data, download=not args.no_download)
        loaded = time.perf_counter()
        data = load_dataset(source, columns(args))
        logging.getLogger("training").info(
            "loaded %s (%s): %d ratings, %d users, %d items, stars %g-%g in %.1f s",
            source,
            data.name,
            len(data.ratings),
            data.ratings.num_users,
            data.ratings.num_items,
            *data.rating_scale,
            time.perf_counter() - loaded,
        )
        for note in data.notes:
            logging.getLogger("training").warning("%s: %s", source, note)
        outcomes = run(
            data,
            split=args.split,
            models=args.models,
            out=None if args.no_export else args.out,
            seed=args.seed,
            max_epochs=args.epochs,
            eval_split=eval_split_for(data, args.eval_split),
            split_seed=args.split_seed,
            keep_versions=args.keep_versions,
        )
    except (DataSourceError, DataError, ExportError, DivergedError) as e:
        distributed.shutdown(together=False)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BaseException:
        distributed.shutdown(together=False)
        raise
    distributed.shutdown(together=True)
    if primary:
        seconds = time.perf_counter() - start
        if args.summary is not None:
            exported_to = None if args.no_export else args.out
            content = summary(outcomes, seconds, split=args.split, exported_to=exported_to)
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(json.dumps(content, indent=2) + "\n")
        print(table(outcomes, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
