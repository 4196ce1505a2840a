"""Shared fixtures for the training tests: the real ML-100K directory and small synthetic data generators.

The real data is a required part of the test environment: a test that asks for it fails (never skips) when it
is missing, with a message saying where it was looked for and how to point at it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import Interactions, MovieLens, load_movielens
from training.datasource import DATA_ENV, DataSourceError, resolve_data_dir

REPO = Path(__file__).resolve().parents[2]
# Where the shared checkout keeps the files; RECSYS_DATA_DIR overrides it, as for `make train`.
DEFAULT_REAL_DATA = REPO.parent / "shared" / "data" / "ml-100k"
# Read at import time: test_datasource.py clears the variable inside its own tests.
_DATA_SOURCE = os.environ.get(DATA_ENV) or str(DEFAULT_REAL_DATA)

GENRES = ["unknown", "Action", "Comedy", "Drama"]

# One torch thread per test process (`make test` runs one xdist worker per core). The ops are small, so
# extra threads buy little, and oversubscribed cores (xdist workers, or anything else running) make torch's
# thread pool spin: a 20 s training run measured over 150 s on 2 busy cores with 2 threads each.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ML-100K directory; fails the test (never skips) if it cannot be found."""
    try:
        # A zip given through the variable is extracted into a throwaway cache, never next to the source.
        return resolve_data_dir(_DATA_SOURCE, cache_dir=tmp_path_factory.mktemp("cache"), download=False)
    except DataSourceError as e:
        pytest.fail(
            "The real MovieLens 100K data is a required part of the test environment and was not found: "
            f"{e}\nSet {DATA_ENV} to the ml-100k directory (default looked for: {DEFAULT_REAL_DATA}).",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def movielens(real_data_dir: Path) -> MovieLens:
    """The real data set, loaded once per test process (loading is read-only)."""
    return load_movielens(real_data_dir)


# --- synthetic data -----------------------------------------------------------------------------------------


def synthetic_interactions(n_users: int = 30, n_items: int = 40, n: int = 600, seed: int = 0) -> Interactions:
    """Random ratings with a rank-2 structure (so models have something to learn) and distinct timestamps."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users + 1, n).astype(np.int64)
    items = rng.integers(1, n_items + 1, n).astype(np.int64)
    u_f, i_f = rng.normal(size=(n_users + 1, 2)), rng.normal(size=(n_items + 1, 2))
    raw = 3.0 + (u_f[users] * i_f[items]).sum(1) + rng.normal(scale=0.3, size=n)
    ratings = np.clip(np.rint(raw), 1, 5).astype(np.float32)
    timestamps = (880_000_000 + 60 * rng.permutation(n)).astype(np.int64)
    return Interactions(users, items, ratings, timestamps, n_users, n_items)


@dataclass(frozen=True)
class Rating:
    user: int  # raw MovieLens id
    item: int  # raw MovieLens id
    stars: int
    time: int

    def line(self) -> str:
        return f"{self.user}\t{self.item}\t{self.stars}\t{self.time}"


def synthetic_ratings(user_ids: Sequence[int], item_ids: Sequence[int], n: int, seed: int = 0) -> list[Rating]:
    """`n` distinct (user, item) pairs with stars 1..5 and distinct timestamps, in random order."""
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in user_ids for i in item_ids]
    chosen = rng.choice(len(pairs), size=n, replace=False)
    times = 880_000_000 + 3600 * rng.permutation(n)
    return [
        Rating(pairs[c][0], pairs[c][1], int(rng.integers(1, 6)), int(t)) for c, t in zip(chosen, times, strict=True)
    ]


def write_ml100k(
    directory: Path,
    *,
    user_ids: Sequence[int] = tuple(range(1, 7)),
    item_ids: Sequence[int] = tuple(range(1, 6)),
    n_ratings: int = 20,
    test_every: int = 5,
    seed: int = 0,
) -> Path:
    """Write a tiny GroupLens-shaped directory: u.genre, u.user, u.item, u.data and u1.base / u1.test.

    Item ``item_ids[0]`` is "Toy Story (1995)" (Action, Comedy); the last item has no release date. Every
    `test_every`-th rating goes to u1.test, the rest to u1.base.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # The real u.genre ends with a blank line.
    (directory / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)) + "\n")
    (directory / "u.user").write_text("".join(f"{u}|30|M|other|0000{u % 10}\n" for u in user_ids))
    item_lines = []
    for k, i in enumerate(item_ids):
        title, date = f"Movie {i} (199{k % 10})", f"01-Jan-199{k % 10}"
        flags = [0] * len(GENRES)
        flags[1 + k % (len(GENRES) - 1)] = 1
        if k == 0:
            title, date, flags = "Toy Story (1995)", "01-Jan-1995", [0, 1, 1, 0]
        if k == len(item_ids) - 1:
            title, date, flags = "unknown", "", [1, 0, 0, 0]
        item_lines.append(f"{i}|{title}|{date}||http://example.org/{i}|" + "|".join(map(str, flags)) + "\n")
    # latin-1, like GroupLens's own u.item.
    (directory / "u.item").write_bytes("".join(item_lines).encode("latin-1"))
    ratings = synthetic_ratings(user_ids, item_ids, n_ratings, seed)
    (directory / "u.data").write_text("".join(r.line() + "\n" for r in ratings))
    base = [r for k, r in enumerate(ratings) if k % test_every]
    test = [r for k, r in enumerate(ratings) if not k % test_every]
    (directory / "u1.base").write_text("".join(r.line() + "\n" for r in base))
    (directory / "u1.test").write_text("".join(r.line() + "\n" for r in test))
    return directory


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A fresh tiny ML-100K directory of 6 users, 5 items and 20 ratings, safe to corrupt."""
    return write_ml100k(tmp_path / "ml-100k")


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.5) -> torch.nn.Module:
    """Every parameter redrawn from N(0, std), so no comparison passes merely because weights start at zero.

    Embedding padding rows (index 0) are kept at zero, as training keeps them.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
        for m in module.modules():
            if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
    return module.eval()


@contextlib.contextmanager
def torchscript_deprecation_ignored() -> Iterator[None]:
    """TorchScript is the artifact format; its deprecation notice is silenced here only, as in export."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        yield


def jit_load(path: Path) -> torch.jit.ScriptModule:
    """`torch.jit.load` alone, as a consumer without the training code would load an artifact."""
    with torchscript_deprecation_ignored():
        module: torch.jit.ScriptModule = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    return module
