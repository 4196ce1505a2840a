"""`python -m bench --data DIR`: training speed, serving under wrk, MovieLens-25M-sized scale; writes
docs/benchmarks.md and docs/img/bench_serving.png (plus bench/out/results.json).

Every comparison is a ratio of figures measured in the same run on the same (shared) machine; absolute times
move with the load on the box and are reported only for context.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import scale, serving, training_speed
from bench.server import REPO

log = logging.getLogger("bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="ML-100K directory")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (training/scale parts)")
    p.add_argument("--serving-duration", type=int, default=5, help="seconds per wrk run in the serving part")
    p.add_argument("--rounds", type=int, default=3, help="serving: rounds over every route and server")
    p.add_argument(
        "--quick",
        action="store_true",
        help="serving only, 2 s per run, one round (a few seconds per route and server): for iterating",
    )
    p.add_argument(
        "--baseline-app",
        type=Path,
        help="serving: also measure the app package of this checkout (e.g. `git archive` of the commit "
        "before a change) as 'before', in the same run",
    )
    p.add_argument("--no-peer", action="store_true", help="serving: leave out LitServe")
    p.add_argument("--profile-seconds", type=int, default=5, help="serving: py-spy seconds per route; 0 = none")
    p.add_argument("--routes", default="", help="serving: only routes whose name contains one of these (comma)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--single-steps", type=int, default=2000, help="single-sample optimizer steps to time")
    p.add_argument("--scale-ratings", type=int, default=2_500_000, help="synthetic ratings in the 25M-sized store")
    p.add_argument(
        "--scale-train-ratings",
        type=int,
        default=2_500_000,
        help="synthetic ratings for the MF rate at scale",
    )
    p.add_argument("--scale-train-batches", type=int, default=10, help="minibatches timed at scale")
    p.add_argument(
        "--store-epochs",
        type=int,
        default=2,
        help="epoch cap when a store must be trained to serve (serving speed depends on shapes, not fit); "
        "0 = each config's own",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads here and OMP_NUM_THREADS for training subprocesses; 1 matches the "
        "server's default and avoids OpenMP spin-waiting on a shared, loaded box",
    )
    p.add_argument("--cli-timeout", type=float, default=180.0, help="stop `python -m training` after this")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: training,serving,scale")
    p.add_argument("--report-only", action="store_true", help="rewrite the docs from bench/out/results.json")
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="where benchmarks.md and img/ go")
    return p.parse_args(argv)


def save(results: dict[str, Any]) -> None:
    """Write what is measured so far, so a crash in a later part keeps the earlier figures."""
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.report_only:
        from bench import report

        report.write(json.loads((REPO / "bench" / "out" / "results.json").read_text()), args.docs)
        return 0
    torch.set_num_threads(args.threads)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.quick:
        skip |= {"training", "scale"}
        args.serving_duration, args.rounds, args.profile_seconds = 2, 1, min(args.profile_seconds, 2)
    data = args.data.resolve()
    results: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "load_average_at_start": list(__import__("os").getloadavg()),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    previous = REPO / "bench" / "out" / "results.json"
    if skip and previous.exists():  # keep the skipped parts' figures from the last run, marked as such
        last = json.loads(previous.read_text())
        for part in skip & {"training", "serving", "scale"}:
            if part in last:
                results[part] = {**last[part], "from_earlier_command": last["command"]}
    start = time.perf_counter()
    if "training" not in skip:
        log.info("training speed")
        results["training"] = training_speed.run(data, single_steps=args.single_steps, cli_timeout=args.cli_timeout)
        save(results)
    if "serving" not in skip:
        log.info("serving")
        results["serving"] = serving.run(
            data,
            duration=args.serving_duration,
            connections=args.connections,
            epochs=args.store_epochs,
            rounds=args.rounds,
            baseline_app=args.baseline_app.resolve() if args.baseline_app else None,
            peer=not args.no_peer,
            profile_seconds=args.profile_seconds,
            only=[r.strip() for r in args.routes.split(",") if r.strip()],
            inprocess_calls=not args.quick,
        )
        save(results)
    if "scale" not in skip:
        log.info("scale")
        results["scale"] = scale.run(
            n_ratings=args.scale_ratings,
            train_ratings=args.scale_train_ratings,
            train_batches=args.scale_train_batches,
            duration=args.duration,
            connections=args.connections,
        )
    results["seconds"] = time.perf_counter() - start
    results["machine"]["load_average_at_end"] = list(__import__("os").getloadavg())
    save(results)
    from bench import report  # imported late: results.json is written even if the report fails

    report.write(results, args.docs)
    log.info("done in %.0f s; wrote %s", results["seconds"], args.docs / "benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
