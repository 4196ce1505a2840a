"""Training speed: minibatch MF (the real `train_mf`) against one rating per optimizer step, in one process,
and the wall time of the whole `python -m training` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import Tensor, nn

from bench.server import REPO
from training.data import Interactions, load_movielens
from training.fit import FitResult
from training.models import MFConfig, mf_network, mf_optimizer, train_mf
from training.pipeline import validation_parts


@dataclass
class MinibatchResult:
    epochs: int
    seconds: float  # train_mf's FitResult.seconds: training plus one validation pass per epoch
    n_train: int

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.epochs

    @property
    def ratings_per_s(self) -> float:
        return self.n_train * self.epochs / self.seconds


def minibatch_mf(train: Interactions, val: Interactions, epochs: int = 2, seed: int = 0) -> MinibatchResult:
    """The repository's own `train_mf`, capped at `epochs`."""
    _, result = train_mf(train, val, MFConfig(), torch.Generator().manual_seed(seed), max_epochs=epochs)
    return MinibatchResult(epochs=result.epochs, seconds=result.seconds, n_train=len(train))


def single_sample_mf(train: Interactions, steps: int = 2000, seed: int = 0) -> float:
    """Ratings/s of one rating per optimizer step with `train_mf`'s own network, loss, optimizer and lr."""
    config = MFConfig()
    torch.manual_seed(seed)
    model, loss_fn = mf_network(train, config)  # with side features, as `train_mf` fits on MovieLens
    optimizer = mf_optimizer(model, config.lr)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(train), steps)
    users = torch.from_numpy(train.user_ids[rows])
    items = torch.from_numpy(train.item_ids[rows])
    targets = torch.from_numpy(((train.ratings[rows] - 1.0) / 4.0).astype(np.float32))
    model.train()
    start = time.perf_counter()
    for k in range(steps):
        loss = loss_fn(model, (users[k : k + 1], items[k : k + 1], targets[k : k + 1]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def timed_fit_factory(batches: int, record: dict[str, float]) -> Callable[..., FitResult]:
    """A stand-in for `training.fit.fit` that times the first `batches` minibatches of the real loss/optimizer
    `train_mf` builds (no validation), so per-batch cost can be measured where a whole epoch is too long."""

    def timed_fit(
        model: nn.Module,
        tensors: Sequence[Tensor],
        loss_fn: Callable[[nn.Module, Sequence[Tensor]], Tensor],
        validate: Callable[[], float],
        *,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
        generator: torch.Generator,
        **_: Any,
    ) -> FitResult:
        n = len(tensors[0])
        order = torch.randperm(n, generator=generator)
        model.train()
        loss_fn(model, [t[order[:batch_size]] for t in tensors]).backward()  # warm-up, not timed
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        done = 0
        for b in range(batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            if len(idx) == 0:
                break
            loss = loss_fn(model, [t[idx] for t in tensors])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += len(idx)
        seconds = time.perf_counter() - start
        record.update(seconds=seconds, ratings=done, batch_size=batch_size, n=n)
        return FitResult(epochs=1, best_epoch=1, seconds=seconds)

    return timed_fit


def mf_loop_rate(train: Interactions, batches: int, seed: int = 0) -> dict[str, float]:
    """Ratings/s of `train_mf`'s inner loop over its first `batches` minibatches, and the implied epoch."""
    record: dict[str, float] = {}
    with mock.patch("training.models.fit", timed_fit_factory(batches, record)):
        train_mf(
            train,
            train.subset(np.zeros(len(train), dtype=bool)),
            MFConfig(),
            torch.Generator().manual_seed(seed),
        )
    rate = record["ratings"] / record["seconds"]
    return {
        "batches": batches,
        "batch_size": record["batch_size"],
        "ratings_timed": record["ratings"],
        "seconds_timed": record["seconds"],
        "ratings_per_s": rate,
        "seconds_per_batch": record["seconds"] / max(1, record["ratings"] / record["batch_size"]),
        "epoch_seconds_extrapolated": record["n"] / rate,
    }


def thread_env() -> dict[str, str]:
    """The environment for training subprocesses: the same intra-op thread count as this process."""
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def training_cli(data: Path, timeout: float) -> dict[str, Any]:
    """Wall time of `python -m training --data DIR --split u1 --no-export`, measured outside, and the numbers
    of its final table, read from the JSON file its ``--summary`` writes."""
    command = "python -m training --data DIR --split u1 --no-export"
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        path = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "training", "--data", str(data), "--split", "u1", "--no-export"]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [*cmd, "--summary", str(path)],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
                timeout=timeout,
                env=thread_env(),
            )
        except subprocess.TimeoutExpired:
            return {
                "command": command,
                "timed_out_after_s": timeout,
                "reported_seconds": None,
                "process_seconds": time.perf_counter() - start,
                "models": {},
                "table": f"(stopped by the benchmark after {timeout:.0f} s)",
            }
        outside = time.perf_counter() - start
        summary = json.loads(path.read_text())
    models = {
        name: {"rmse": m["metrics"]["rmse"] if m["metrics"] else None, "epochs": m["epochs"], "seconds": m["seconds"]}
        for name, m in summary["models"].items()
    }
    return {
        "command": command,
        "reported_seconds": summary["total_seconds"],
        "process_seconds": outside,
        "models": models,
        "table": proc.stdout.strip(),
    }


ROUNDS = 5  # the machine's speed drifts: each round times both loops back to back; the ratio is the median


def run(data: Path, *, single_steps: int = 2000, skip_cli: bool = False, cli_timeout: float = 300.0) -> dict[str, Any]:
    ml = load_movielens(data)
    train, _test = ml.split("u1")
    fit_part, val_part = validation_parts(train, 0)
    rounds = []
    for r in range(ROUNDS):
        mini = minibatch_mf(fit_part, val_part, epochs=1, seed=r)
        loop = mf_loop_rate(fit_part, batches=20, seed=r)  # inner loop only, as the scale benchmark times it
        single = single_sample_mf(fit_part, steps=single_steps // ROUNDS, seed=r)
        rounds.append(
            {
                "minibatch_ratings_per_s": mini.ratings_per_s,
                "minibatch_seconds_per_epoch": mini.seconds_per_epoch,
                "loop_only": loop,
                "single_ratings_per_s": single,
                "ratio": mini.ratings_per_s / single,
                "ratio_loop_only": loop["ratings_per_s"] / single,
            }
        )
    middle = sorted(rounds, key=lambda x: x["ratio"])[ROUNDS // 2]  # the round with the median ratio
    out: dict[str, Any] = {
        "n_train": len(fit_part),
        "rounds": ROUNDS,
        "single_steps": single_steps // ROUNDS,
        **middle,
        "ratio_loop_only": float(np.median([x["ratio_loop_only"] for x in rounds])),
        "ratios": [x["ratio"] for x in rounds],
    }
    if not skip_cli:
        out["cli"] = training_cli(data, cli_timeout)
    return out
