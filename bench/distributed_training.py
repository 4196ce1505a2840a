"""Data-parallel training against one process: quality and wall time, same command, same split.

``python -m bench.distributed_training --data ../shared/data/ml-100k`` runs ``python -m training`` once and
``torchrun --standalone --nproc_per_node=N -m training`` once per N given, back to back, on the same split, and
prints each model's RMSE, NDCG@10 and fit seconds with the whole run's wall time. Nothing is exported. The
speed-up is whatever it is: on a machine with fewer free cores than ranks there is none (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^(mf|dense|lstm)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+(\d+)\s+([\d.]+)\s+([\d.]+)")


def train(command: list[str]) -> tuple[float, dict[str, dict[str, float]], str]:
    """Run a training command; wall seconds, per-model figures parsed from its table, and its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    rows = {}
    for line in out.stdout.splitlines():
        m = ROW.match(line)
        if m:
            rows[m[1]] = {"rmse": float(m[2]), "epochs": int(m[5]), "seconds": float(m[6]), "ndcg@10": float(m[7])}
    return seconds, rows, out.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.distributed_training", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="ML-100K directory")
    p.add_argument("--split", default="u1")
    p.add_argument("--models", default="mf,dense,lstm")
    p.add_argument("--nproc", default="2", help="comma-separated rank counts to compare with one process")
    args = p.parse_args(argv)
    common = ["-m", "training", "--data", args.data, "--split", args.split, "--models", args.models]
    common += ["--no-export", "--no-download"]
    runs = [("1 process", [sys.executable, *common])]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    for n in args.nproc.split(","):
        runs.append((f"torchrun {n} ranks", [torchrun, "--standalone", f"--nproc_per_node={n}", *common]))
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    results = []
    for name, command in runs:
        seconds, rows, _ = train(command)
        results.append((name, seconds, rows))
        print(f"{name}: {seconds:.1f} s wall", flush=True)
    base_seconds, base = results[0][1], results[0][2]
    print(f"\n| run | wall s | speed-up | {' | '.join(f'{m} RMSE / NDCG@10 / fit s' for m in base)} |")
    print(f"| --- | --- | --- | {' | '.join('---' for _ in base)} |")
    for name, seconds, rows in results:
        cells = [f"{rows[m]['rmse']:.4f} / {rows[m]['ndcg@10']:.4f} / {rows[m]['seconds']:.1f}" for m in base]
        print(f"| {name} | {seconds:.1f} | {base_seconds / seconds:.2f}x | {' | '.join(cells)} |")
    for name, _, rows in results[1:]:
        worst = max(abs(rows[m]["rmse"] - base[m]["rmse"]) for m in base)
        worst_ndcg = max(abs(rows[m]["ndcg@10"] - base[m]["ndcg@10"]) for m in base)
        print(f"{name}: largest |ΔRMSE| {worst:.4f}, largest |ΔNDCG@10| {worst_ndcg:.4f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
