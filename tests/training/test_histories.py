"""CSR histories, the splits of data sets without canonical folds, and the memory bound of the LSTM's arrays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import DataError, Histories, Interactions, MovieLens, load_dataset
from training.evaluate import predict_sequences, user_tastes
from training.models import LSTMConfig, train_lstm
from training.ranking import top_k


def _interactions(lengths: list[int], n_items: int = 50, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, len(lengths) + 1), lengths)
    n = len(users)
    return Interactions(
        users.astype(np.int64),
        rng.integers(1, n_items + 1, n).astype(np.int64),
        (rng.integers(1, 11, n) / 2).astype(np.float32),
        rng.permutation(n).astype(np.int64),
        len(lengths),
        n_items,
        rating_min=0.5,
        rating_max=5.0,
    )


def test_padded_rows_are_each_users_history_left_padded_to_window_boundaries() -> None:
    data = _interactions([3, 0, 12])
    hist = data.to_histories(5)
    items, ratings, ends = hist.padded(np.array([1, 2, 3]))
    assert items.shape == (3, 15) and ends.tolist() == [5, 0, 15]
    order = data.time_order()
    for row, user in enumerate([1, 2, 3]):
        mine = order[data.user_ids[order] == user]
        n = len(mine)
        assert items[row, ends[row] - n : ends[row]].tolist() == data.item_ids[mine].tolist()
        assert (items[row, : ends[row] - n] == 0).all() and (items[row, ends[row] :] == 0).all()
        assert ratings[row, ends[row] - n : ends[row]].tolist() == data.ratings[mine].tolist()


def test_buckets_cover_every_user_once_within_the_cell_budget() -> None:
    data = _interactions([1] * 200 + [400] + [7] * 50)
    hist = data.to_histories(10)
    users = np.arange(data.num_users + 1)
    batches = list(hist.buckets(users, max_cells=256))
    assert sorted(np.concatenate(batches).tolist()) == users.tolist()
    for batch in batches:
        width = max(int(hist.ends[batch].max()), 1)
        assert len(batch) * width <= 256 or len(batch) == 1  # a history longer than the budget runs alone


class _Recorder:
    """Records the size of every padded array `Histories.padded` builds."""

    def __init__(self) -> None:
        self.cells: list[int] = []

    def __enter__(self) -> _Recorder:
        self.original = Histories.padded
        recorder = self

        def padded(self: Histories, users: np.ndarray, min_width: int = 0):  # type: ignore[no-untyped-def]
            out = recorder.original(self, users, min_width)
            recorder.cells.append(out[0].size)
            return out

        Histories.padded = padded  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Histories.padded = self.original  # type: ignore[method-assign]


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    with _Recorder() as r:
        yield r


def test_a_long_history_user_does_not_make_the_lstm_arrays_grow_with_users_times_length(recorder: _Recorder) -> None:
    """2,000 users of 3 ratings and one of 6,000: a users x longest layout would be 12M cells."""
    longest = 6000
    data = _interactions([3] * 2000 + [longest], n_items=100)
    train, val = data.subset(np.arange(len(data)) % 20 != 0), data.subset(np.arange(len(data)) % 20 == 0)
    config = LSTMConfig(dim=4, hidden=4, batch_size=64, max_epochs=1)
    model, _ = train_lstm(train, val, config, torch.Generator().manual_seed(0), 1)
    user_tastes(model, train, 10)
    predict_sequences(model, train, val, 10)
    users_times_longest = (data.num_users + 1) * longest
    assert recorder.cells, "the LSTM no longer builds padded batches through Histories.padded"
    # Training: one batch of 64 users padded to its own longest; evaluation: buckets of at most 2**20 cells.
    bound = max(config.batch_size * (longest + 10), 1 << 20)
    assert max(recorder.cells) <= bound < users_times_longest / 10


def _movielens(data: Interactions) -> MovieLens:
    import pandas as pd

    return MovieLens(
        data,
        np.arange(1, data.num_users + 1),
        np.arange(1, data.num_items + 1),
        pd.DataFrame({"item_id": [], "title": [], "year": [], "genres": []}),
        [],
        Path("."),
        "0" * 64,
        name="file",
        canonical_splits=(),
    )


def _pairs(data: Interactions) -> set[tuple[int, int, int]]:
    return set(zip(data.user_ids.tolist(), data.item_ids.tolist(), data.timestamps.tolist(), strict=True))


def test_random_split_is_seeded_80_20_and_disjoint() -> None:
    ml = _movielens(_interactions([30] * 100))
    train, test = ml.split("random", seed=3)
    again, _ = ml.split("random", seed=3)
    other, _ = ml.split("random", seed=4)
    assert len(train) + len(test) == 3000 and abs(len(test) / 3000 - 0.2) < 0.03
    assert _pairs(train).isdisjoint(_pairs(test))
    assert np.array_equal(train.item_ids, again.item_ids) and not np.array_equal(train.item_ids, other.item_ids)


def test_temporal_split_holds_out_each_users_latest() -> None:
    ml = _movielens(_interactions([25, 5, 11]))
    train, test = ml.split("temporal")
    assert np.bincount(test.user_ids, minlength=4).tolist() == [0, 10, 0, 10]  # user 2 has too few: all train
    for user in (1, 3):
        assert train.timestamps[train.user_ids == user].max() < test.timestamps[test.user_ids == user].min()


def test_cross_validation_folds_partition_the_ratings() -> None:
    ml = _movielens(_interactions([20] * 30))
    tests = [ml.split(f"cv{i}/4", seed=1)[1] for i in range(1, 5)]
    assert sum(len(t) for t in tests) == 600
    union: set[tuple[int, int, int]] = set()
    for t in tests:
        assert union.isdisjoint(_pairs(t))
        union |= _pairs(t)
    with pytest.raises(DataError, match="K >= 2"):
        ml.split("cv5/4")


def test_canonical_split_of_a_data_set_without_one_says_what_to_use(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,1,1\n1,2,2\n")
    with pytest.raises(DataError, match=r"no canonical split 'u1'.*random, temporal, full"):
        load_dataset(path).split("u1")


def test_top_k_matches_a_stable_argsort_with_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        scores = rng.integers(0, 4, (6, n)).astype(np.float32)
        exclude = rng.random((6, n)) < rng.random()
        masked = np.where(exclude, -np.inf, scores.astype(np.float64))
        masked[:, 0] = -np.inf
        expected = np.argsort(-masked, axis=1, kind="stable")[:, :10]
        assert np.array_equal(top_k(scores, exclude, 10), expected)


def test_quality_command_takes_a_number_of_folds() -> None:
    from training.quality.cli import parse_args

    assert parse_args(["--folds", "3"]).folds == ("cv1/3", "cv2/3", "cv3/3")
    assert parse_args(["--folds", "u1,u2"]).folds == ("u1", "u2")
    with pytest.raises(SystemExit):
        parse_args(["--folds", "1"])
