"""Data-parallel training (`training.distributed`) in two real gloo processes on this machine.

The claim under test: N ranks, each on its share of a minibatch, end with the gradient a single process computes
on the whole minibatch (dense and sparse alike, through either sparse path), and `fit` on N ranks walks the same
optimizer trajectory as `fit` in one process.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fastapi.testclient import TestClient
from torch import Tensor, nn

from app.artifacts import MANIFEST_FILE, Manifest
from app.main import create_app
from app.settings import Settings
from tests.training.conftest import synthetic_interactions
from training import distributed
from training.data import MovieLens
from training.fit import fit
from training.models import _pair_tensors, mf_loss, mf_optimizer
from training.networks import MatrixFactorization
from training.pipeline import run

REPO = Path(__file__).resolve().parents[2]

WORLD = 2
BATCH = 37  # odd, so the ranks' shares differ in size and the weighting matters


class Mixed(nn.Module):
    """A sparse table with a padding row, a dense table, a linear layer, and a parameter no loss uses."""

    def __init__(self) -> None:
        super().__init__()
        self.sparse = nn.Embedding(20, 3, padding_idx=0, sparse=True)
        self.dense = nn.Embedding(20, 3)
        self.linear = nn.Linear(3, 1)
        self.unused = nn.Parameter(torch.ones(2))

    def loss(self, ids: Tensor, target: Tensor) -> Tensor:
        h = self.sparse(ids) * self.dense(ids)
        return (self.linear(h).squeeze(-1) - target).pow(2).mean()


def _grads(model: nn.Module) -> dict[str, Tensor | None]:
    out: dict[str, Tensor | None] = {}
    for name, p in model.named_parameters():
        g = p.grad
        out[name] = None if g is None else (g.coalesce().to_dense() if g.is_sparse else g).clone()
    return out


def _in_group(rank: int, rendezvous: str, body: str) -> None:
    # One intra-op thread each: two ranks share two cores with whatever else runs.
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD, timeout=datetime.timedelta(minutes=2)
    )
    try:
        {"gradients": _check_gradients, "fit": _check_fit}[body]()
        # Both ranks leave together: a rank tearing down its gloo pairs while the other still uses them aborts
        # the process ("terminate called without an active exception", seen on a loaded CI machine).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _check_gradients() -> None:
    torch.manual_seed(0)
    model = Mixed()
    ids = torch.randint(0, 20, (BATCH,))  # includes the padding row 0
    target = torch.randn(BATCH)
    model.loss(ids, target).backward()
    expected = _grads(model)
    assert model.sparse.weight.grad is not None
    expected_rows = set(model.sparse.weight.grad.coalesce().indices()[0].tolist())
    for limit in (None, 0):  # small tables in the one all-reduce; every table gathered as (row, value) pairs
        model.zero_grad(set_to_none=True)
        part = distributed.shard(0, BATCH)
        assert part is not None
        model.loss(ids[part], target[part]).backward()
        distributed.all_reduce_gradients(model, (part.stop - part.start) / BATCH, dense_limit=limit)
        got = _grads(model)
        assert got["unused"] is None, "a parameter no rank touched keeps grad None"
        assert model.sparse.weight.grad is not None and model.sparse.weight.grad.is_sparse
        for name, g in expected.items():
            if g is not None:
                assert torch.allclose(got[name], g, atol=1e-6), (limit, name)  # type: ignore[arg-type]
        # SparseAdam updates exactly the rows the whole batch touched (the padding row has none).
        rows = set(model.sparse.weight.grad.coalesce().indices()[0].tolist())
        assert rows == expected_rows and rows == set(ids.tolist()) - {0}, limit


def _fit_mf(generator_seed: int) -> MatrixFactorization:
    data = synthetic_interactions(n=500, seed=1)
    val = synthetic_interactions(n=100, seed=2)
    torch.manual_seed(distributed.rank())  # different inits per rank: fit must start them all from rank 0's
    model = MatrixFactorization(data.num_users, data.num_items, 4)
    if distributed.rank() == 0:
        torch.manual_seed(7)
        model = MatrixFactorization(data.num_users, data.num_items, 4)
    tensors = _pair_tensors(data)
    vu, vi = torch.from_numpy(val.user_ids), torch.from_numpy(val.item_ids)
    fit(
        model,
        tensors,
        lambda m, b: mf_loss(m, b, 0.01),  # type: ignore[arg-type]
        lambda: float(model(vu, vi).pow(2).mean()),
        optimizer=mf_optimizer(model, 0.01),
        batch_size=BATCH,
        max_epochs=4,
        patience=10,
        generator=torch.Generator().manual_seed(generator_seed),
        desc="mf",
    )
    return model


def _check_fit() -> None:
    ranks = _fit_mf(generator_seed=distributed.rank())  # each rank's own shuffle: rank 0's must win
    weights = [w.clone() for w in ranks.state_dict().values()]
    # Every rank holds the same weights.
    for w in weights:
        others = [torch.empty_like(w) for _ in range(WORLD)]
        dist.all_gather(others, w)
        assert all(torch.equal(o, w) for o in others)
    if distributed.rank() == 0:
        torch.save(weights, os.environ["RECSYS_TEST_OUT"])


def _spawn(tmp_path: Path, body: str) -> None:
    mp.start_processes(_in_group, args=(str(tmp_path / "rendezvous"), body), nprocs=WORLD, start_method="spawn")


def test_sharded_gradients_sum_to_the_whole_batch_gradient(tmp_path: Path) -> None:
    _spawn(tmp_path, "gradients")


def test_fit_on_two_ranks_follows_the_single_process_trajectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "weights.pt"
    monkeypatch.setenv("RECSYS_TEST_OUT", str(out))
    _spawn(tmp_path, "fit")
    two = torch.load(out)
    # The same fit in this process (no process group): rank 0's init and shuffle.
    torch.manual_seed(0)
    one = [w.clone() for w in _fit_mf(generator_seed=0).state_dict().values()]
    assert not dist.is_initialized()
    for a, b in zip(one, two, strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_single_process_hooks_are_no_ops() -> None:
    assert (distributed.world_size(), distributed.rank(), distributed.is_primary()) == (1, 0, True)
    assert distributed.shard(10, 5) == slice(10, 15)
    assert distributed.broadcast_value(0.25) == 0.25 and distributed.sum_value(2.0) == 2.0


# --- the real thing: torchrun on u1 ---------------------------------------------------------------------------

# mf (SparseAdam, sparse tables) and dense (AdamW, dense tables, after a shared MF pretraining) between them take
# every gradient path; the LSTM goes through the same fit loop at several times the cost (bench/scaling.py runs
# all three).
U1_MODELS = ("mf", "dense")
TORCHRUN_TIMEOUT = 600.0


@pytest.mark.slow
def test_torchrun_on_two_ranks_matches_one_process_on_u1_and_the_store_serves(
    real_data_dir: Path, movielens: MovieLens, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun), "--standalone", f"--nproc_per_node={WORLD}",
        "-m", "training", "--data", str(real_data_dir), "--split", "u1",
        "--models", ",".join(U1_MODELS), "--out", str(store), "--no-download",
    ]  # fmt: skip
    log = tmp_path / "torchrun.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # The single-process reference meanwhile, in this process: the same recipe, seed and split.
        reference = {o.model.name: o.test for o in run(movielens, split="u1", models=U1_MODELS, out=None, seed=0)}
        process.wait(timeout=TORCHRUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text(errors="replace")[-5000:]

    manifest = Manifest.model_validate_json((store / MANIFEST_FILE).read_text())
    assert set(manifest.models) == set(U1_MODELS)
    for name in U1_MODELS:
        entry = manifest.models[name]
        ref = reference[name]
        assert ref is not None
        (metrics,) = entry.metrics
        assert entry.world_size == WORLD
        assert metrics.split == ref.split == "u1.base->u1.test"
        assert abs(metrics.rmse - ref.rmse) <= 0.005, (name, metrics.rmse, ref.rmse)
        assert abs(metrics.ranking["ndcg@10"] - ref.ranking["ndcg@10"]) <= 0.01, (name, metrics.ranking, ref.ranking)

    with TestClient(create_app(Settings(models_dir=store))) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        for name in U1_MODELS:
            r = client.get("/recommend/196", params={"k": 5, "model": name})
            assert r.status_code == 200, r.text
            assert len(r.json()["items"]) == 5
            p = client.post(f"/predict/{name}", json={"user_id": 196, "item_ids": [242, 302]})
            assert p.status_code == 200 and all(1 <= x["rating"] <= 5 for x in p.json()["predictions"])
