"""Shared fixtures: a tiny synthetic model store written by the real training export code.

Raw ids deliberately differ from model indices (users 101..120 are indices 1..20, items 1001..1050 are
indices 1..50) so that any confusion of the two shows up as a wrong answer, not a coincidence.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from app.artifacts import Metrics
from training.data import Interactions, MovieLens
from training.evaluate import user_tastes
from training.export import TrainedModel, catalog, dataset_info, export_store
from training.models import SEQUENCE_LENGTH
from training.networks import DenseNet, MatrixFactorization, SequenceLSTM
from training.rank_heads import lstm_queries

N_USERS, N_ITEMS = 20, 50
USER_IDS = np.arange(101, 101 + N_USERS, dtype=np.int64)
ITEM_IDS = np.arange(1001, 1001 + N_ITEMS, dtype=np.int64)
GENRES = ["unknown", "Action", "Comedy", "Drama", "Sci-Fi"]
RANK_WEIGHT = {"mf": 0.5, "dense": 0.0, "lstm": 0.25}  # weight of the rating score in the ranking score
SYNTHETIC_RMSE = {"mf": 0.91, "dense": 0.92, "lstm": 0.94}


@dataclass(frozen=True)
class SyntheticStore:
    """A model store on disk plus what built it, so tests can compute expected answers independently."""

    path: Path
    data: MovieLens
    train: Interactions
    networks: dict[str, nn.Module]

    def user_index(self, raw: int) -> int:
        return int(np.flatnonzero(raw == USER_IDS)[0]) + 1

    def item_index(self, raw: int) -> int:
        return int(np.flatnonzero(raw == ITEM_IDS)[0]) + 1

    def item_raw(self, index: int) -> int:
        return int(ITEM_IDS[index - 1])

    def history(self, raw_user: int) -> tuple[list[int], list[float]]:
        """The user's training items (raw ids) and ratings, oldest first."""
        indptr, order = self.train.user_histories()
        u = self.user_index(raw_user)
        positions = order[indptr[u] : indptr[u + 1]]
        items = [self.item_raw(int(i)) for i in self.train.item_ids[positions]]
        return items, self.train.ratings[positions].astype(float).tolist()


def synthetic_data(seed: int = 0) -> tuple[MovieLens, Interactions]:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(1, N_USERS + 1):
        # Between 3 and 25 items each: some users have less than the LSTM's 9-item context, some more.
        n = int(rng.integers(3, 26))
        users += [u] * n
        items += rng.choice(np.arange(1, N_ITEMS + 1), size=n, replace=False).tolist()
    n = len(users)
    ratings = Interactions(
        user_ids=np.asarray(users, dtype=np.int64),
        item_ids=np.asarray(items, dtype=np.int64),
        ratings=rng.integers(1, 6, size=n).astype(np.float32),
        timestamps=(880_000_000 + rng.permutation(n) * 60).astype(np.int64),
        num_users=N_USERS,
        num_items=N_ITEMS,
    )
    genre_flags = rng.random((N_ITEMS, len(GENRES) - 1)) < 0.35
    frame = pd.DataFrame(
        {
            "item_id": ITEM_IDS,
            "title": [f"Synthetic Movie {i} ({1950 + i % 50})" for i in ITEM_IDS],
            # One item without a year, as in MovieLens.
            "year": pd.array([None if i == 1050 else 1950 + i % 50 for i in ITEM_IDS], dtype="Int64"),
            "genres": [[g for g, f in zip(GENRES[1:], row, strict=True) if f] or ["unknown"] for row in genre_flags],
        }
    )
    data = MovieLens(
        ratings=ratings,
        user_raw_ids=USER_IDS,
        item_raw_ids=ITEM_IDS,
        items=frame,
        genres=GENRES,
        directory=Path("synthetic"),
        sha256="0" * 64,
    )
    return data, ratings


def synthetic_networks(seed: int = 0) -> dict[str, nn.Module]:
    """Randomly initialised networks with weights spread enough that every (user, item) scores differently."""
    torch.manual_seed(seed)
    networks: dict[str, nn.Module] = {
        "mf": MatrixFactorization(N_USERS, N_ITEMS, dim=8, rank_dim=4),
        "dense": DenseNet(N_USERS, N_ITEMS, dim=8, hidden=[16, 8], dropout=0.1),
        "lstm": SequenceLSTM(N_USERS, N_ITEMS, dim=8, hidden=16),
    }
    with torch.no_grad():
        for network in networks.values():
            for parameter in network.parameters():
                parameter.normal_(0.0, 0.15)
            network.eval()
        # Centre predictions on 3 stars so few of them clamp to 1 or 5 (clamped values would tie).
        for name in ("mf", "lstm"):
            networks[name].global_bias.fill_(0.5)  # type: ignore[operator]
        networks["dense"].rest[-1].bias.fill_(0.5)  # type: ignore[index,union-attr]
        # Ranking heads as training leaves them: random tables (the LSTM's user queries are computed from its
        # history in write_synthetic_store), and a weight of the rating score per model.
        for name, network in networks.items():
            for buffer in ("rank_users", "rank_items", "rank_item_bias"):
                getattr(network, buffer).normal_(0.0, 0.5)
            network.rank_weight.fill_(RANK_WEIGHT[name])  # type: ignore[operator]
    return networks


def write_synthetic_store(out: Path) -> SyntheticStore:
    data, train = synthetic_data()
    networks = synthetic_networks()
    lstm = networks["lstm"]
    with torch.no_grad():  # as training does: each user's taste and ranking query after their whole history
        lstm.user_taste.copy_(user_tastes(lstm, train, SEQUENCE_LENGTH))  # type: ignore[operator]
        lstm.rank_users = lstm_queries(lstm, train, SEQUENCE_LENGTH)  # type: ignore[arg-type]
    models = [
        TrainedModel(
            name=name,
            network=network,
            hyperparameters={"dim": 8},
            metrics=[
                Metrics(
                    split="synthetic.base->synthetic.test",
                    n=100,
                    rmse=SYNTHETIC_RMSE[name],
                    mae=0.7,
                    rmse_scaled=SYNTHETIC_RMSE[name] / 4,
                    mae_scaled=0.175,
                )
            ],
            training_seconds=0.1,
            epochs=1,
            rank_weight=RANK_WEIGHT[name],
        )
        for name, network in networks.items()
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        export_store(out, models, catalog=catalog(data), dataset=dataset_info(data, train, "synthetic"), train=train)
    return SyntheticStore(path=out, data=data, train=train, networks=networks)


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStore:
    """A complete model store (mf, dense, lstm) trained on nothing: random weights, real export code."""
    return write_synthetic_store(tmp_path_factory.mktemp("synthetic-store"))


def write_synthetic_store_with_seed(out: Path, seed: int) -> SyntheticStore:
    """`write_synthetic_store` with networks initialised from `seed`: the same users, items and histories,
    other weights, so every model version and prediction differs from the default store's (hot reload tests
    switch between the two)."""
    default = globals()["synthetic_networks"]
    # write_synthetic_store looks synthetic_networks up at call time; swapped only for this one call.
    globals()["synthetic_networks"] = lambda: default(seed)
    try:
        return write_synthetic_store(out)
    finally:
        globals()["synthetic_networks"] = default


@pytest.fixture(scope="session")
def other_synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStore:
    """The synthetic store with other weights (seed 1): another version of every model."""
    return write_synthetic_store_with_seed(tmp_path_factory.mktemp("synthetic-store-seed1"), seed=1)


def pytest_configure(config: pytest.Config) -> None:
    # Tests run two at a time on two cores: one torch thread each, or their spin-waiting threads fight.
    torch.set_num_threads(1)


# --- every collected test runs -------------------------------------------------------------------------------
# Items that share a node id collapse into one under pytest-xdist (schemathesis' parametrize once made 11 fuzz
# tests one, so CI fuzzed 1 operation of 11 and still looked green). At the end of a complete run, the number of
# distinct tests that ran must equal the number collected, and no two collected items may share an id.
_collected: list[str] = []
_ran: set[str] = set()


def pytest_collection_finish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist) counts
        _collected.extend(item.nodeid for item in session.items)


def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    if not _collected:  # every worker collects the same ids; take one worker's list
        _collected.extend(ids)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _ran.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or not _collected:
        return
    if session.shouldfail or session.shouldstop or exitstatus not in (0, 1):
        return  # -x, --maxfail, an interrupt: not every test was meant to run
    duplicates = sorted({i for i in _collected if _collected.count(i) > 1})
    missing = sorted(set(_collected) - _ran)
    if duplicates or missing:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"collected {len(_collected)} items but ran {len(_ran)} distinct tests"]
        lines += [f"  node id shared by several items: {i}" for i in duplicates[:20]]
        lines += [f"  collected but never run: {i}" for i in missing[:20]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter := session.config.pluginmanager.get_plugin("terminalreporter"):
        reporter.write_line(f"collected {len(_collected)} items, ran {len(_ran)} distinct tests: all of them")
