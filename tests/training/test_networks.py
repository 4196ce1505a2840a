"""Tests for `training.networks`: the serving contract of `app/artifacts.py`, on eager (unscripted) modules.

Shapes, the star range, agreement between the batched scoring methods and `predict`, and the LSTM's causality.
Weights are redrawn at a large scale so that no agreement holds merely because everything starts near zero.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from tests.training.conftest import randomize, synthetic_interactions
from training.evaluate import tastes_at
from training.networks import DenseNet, FeaturedMF, MatrixFactorization, SequenceLSTM

N_USERS, N_ITEMS, DIM, L = 7, 11, 5, 10
ATOL = 1e-5


def _mf() -> MatrixFactorization:
    return randomize(MatrixFactorization(N_USERS, N_ITEMS, DIM), seed=1)


def _dense() -> DenseNet:
    return randomize(DenseNet(N_USERS, N_ITEMS, DIM, [8, 4], dropout=0.3), seed=2)


def _lstm() -> SequenceLSTM:
    return randomize(SequenceLSTM(n_users=N_USERS, n_items=N_ITEMS, dim=DIM, hidden=6), seed=3)


def _sequences(batch: int, length: int = L, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (batch, length), generator=g)
    ratings = torch.randint(1, 6, (batch, length), generator=g).to(torch.float32)
    return items, ratings


PAIR_NETWORKS = {"mf": _mf, "dense": _dense}


@pytest.mark.parametrize("name", PAIR_NETWORKS)
def test_pair_network_shapes_and_range(name: str) -> None:
    net = PAIR_NETWORKS[name]()
    users = torch.tensor([1, 2, 7, 7, 0])
    items = torch.tensor([1, 11, 3, 4, 5])
    with torch.inference_mode():
        pred = net.predict(users, items)
        scores = net.score_all(torch.tensor([3]))
        emb = net.item_embeddings()
    assert pred.shape == (5,)
    assert scores.shape == (N_ITEMS + 1,)
    assert emb.shape == (N_ITEMS + 1, DIM)
    for out in (pred, scores):
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert ((out >= 1.0) & (out <= 5.0)).all()
    # At this weight scale the clamp is exercised, so the range check above is not vacuous.
    assert pred.unique().numel() > 1


@pytest.mark.parametrize("name", PAIR_NETWORKS)
def test_score_all_agrees_with_predict_for_every_item(name: str) -> None:
    net = PAIR_NETWORKS[name]()
    items = torch.arange(1, N_ITEMS + 1)
    with torch.inference_mode():
        for user in range(N_USERS + 1):
            by_pair = net.predict(torch.full_like(items, user), items)
            scores = net.score_all(torch.tensor([user]))
            torch.testing.assert_close(scores[1:], by_pair, atol=ATOL, rtol=0)


def test_predict_is_the_forward_pass_in_stars() -> None:
    # `forward` is on the [0,1] scale that training fits; `predict` maps it to stars and clamps.
    net = _mf()
    users, items = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    with torch.inference_mode():
        torch.testing.assert_close(net.predict(users, items), (net(users, items) * 4 + 1).clamp(1, 5))


def test_dense_eval_mode_is_deterministic() -> None:
    net = _dense()
    users, items = torch.tensor([1, 2, 3] * 20), torch.tensor([4, 5, 6] * 20)
    with torch.inference_mode():
        torch.testing.assert_close(net.predict(users, items), net.predict(users, items), atol=0, rtol=0)


PADDING_ROWS = {
    "mf.item_factors": lambda: MatrixFactorization(N_USERS, N_ITEMS, DIM).item_factors,
    "mf.item_bias": lambda: MatrixFactorization(N_USERS, N_ITEMS, DIM).item_bias,
    "dense.item_emb": lambda: DenseNet(N_USERS, N_ITEMS, DIM, [8], 0.0).item_emb,
    "dense.item_bias": lambda: DenseNet(N_USERS, N_ITEMS, DIM, [8], 0.0).item_bias,
    "lstm.item_in": lambda: SequenceLSTM(N_USERS, N_ITEMS, DIM, 6).item_in,
    "lstm.item_out": lambda: SequenceLSTM(N_USERS, N_ITEMS, DIM, 6).item_out,
    "lstm.item_bias": lambda: SequenceLSTM(N_USERS, N_ITEMS, DIM, 6).item_bias,
}


@pytest.mark.parametrize("embedding", PADDING_ROWS)
def test_padding_rows_start_at_zero(embedding: str) -> None:
    # Index 0 is padding: `padding_idx` freezes that row, so it must start at zero or the pads of every
    # left-padded sequence feed a fixed random vector forever (spotlight zeroes it after its normal init).
    emb = PADDING_ROWS[embedding]()
    assert emb.padding_idx == 0
    assert (emb.weight[0] == 0).all(), f"{embedding} padding row is {emb.weight[0].tolist()}"


# --- the LSTM -----------------------------------------------------------------------------------------------


def test_lstm_shapes_and_range() -> None:
    net = _lstm()
    items, ratings = _sequences(4)
    with torch.inference_mode():
        pred = net.predict(items, ratings)
        scores = net.score_next(items[:1], ratings[:1])
        user_scores = net.score_all(torch.tensor([2]))
        emb = net.item_embeddings()
    assert pred.shape == (4, L)
    assert scores.shape == user_scores.shape == (N_ITEMS + 1,)
    assert emb.shape == (N_ITEMS + 1, DIM)
    for out in (pred, scores, user_scores):
        assert torch.isfinite(out).all()
        assert ((out >= 1.0) & (out <= 5.0)).all()


@pytest.mark.parametrize("context_length", [L, L - 1, 3])
def test_lstm_score_next_equals_predict_at_the_appended_position(context_length: int) -> None:
    net = _lstm()
    items, ratings = _sequences(1, context_length, seed=5)
    candidates = torch.arange(1, N_ITEMS + 1)
    n = len(candidates)
    with torch.inference_mode():
        scores = net.score_next(items, ratings)
        extended = torch.cat([items.expand(n, -1), candidates[:, None]], dim=1)
        # The appended position's own rating is unknown (0), as in a request.
        extended_ratings = torch.cat([ratings.expand(n, -1), torch.zeros(n, 1)], dim=1)
        by_item = net.predict(extended, extended_ratings)[:, -1]
    torch.testing.assert_close(scores[1:], by_item, atol=ATOL, rtol=0)


def test_lstm_score_next_on_a_left_padded_context() -> None:
    net = _lstm()
    items, ratings = _sequences(1, L, seed=6)
    items[0, :6] = 0
    ratings[0, :6] = 0.0
    candidates = torch.arange(1, N_ITEMS + 1)
    n = len(candidates)
    with torch.inference_mode():
        scores = net.score_next(items, ratings)
        extended = torch.cat([items.expand(n, -1), candidates[:, None]], dim=1)
        by_item = net.predict(extended, torch.cat([ratings.expand(n, -1), torch.zeros(n, 1)], dim=1))[:, -1]
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores[1:], by_item, atol=ATOL, rtol=0)


def test_lstm_score_all_scores_from_the_stored_user_taste() -> None:
    # score_all(user) is score_next from the state after the user's history, stored per user at training time.
    net = _lstm()
    items, ratings = _sequences(1, 23, seed=12)  # longer than a window: a whole history
    with torch.inference_mode():
        taste, _ = net.run(items, ratings)
        net.user_taste[4] = taste[0, -1]
        torch.testing.assert_close(net.score_all(torch.tensor([4])), net.score_next(items, ratings), atol=ATOL, rtol=0)
        # Another user's row is untouched.
        assert not torch.allclose(net.score_all(torch.tensor([3])), net.score_all(torch.tensor([4])))


@pytest.mark.parametrize("k", range(L))
def test_lstm_prediction_at_k_ignores_later_items_and_ratings_from_k(k: int) -> None:
    # The contract: the value at position k depends only on items <= k and ratings < k.
    net = _lstm()
    items, ratings = _sequences(8, seed=k)
    other_items, other_ratings = _sequences(8, seed=100 + k)
    with torch.inference_mode():
        base = net.predict(items, ratings)
        later_items = items.clone()
        later_items[:, k + 1 :] = other_items[:, k + 1 :]
        ratings_from_k = ratings.clone()
        ratings_from_k[:, k:] = other_ratings[:, k:]
        ratings_from_k[:, -1] = 0.0  # "unknown" is a rating value too
        for changed in (net.predict(later_items, ratings), net.predict(items, ratings_from_k)):
            torch.testing.assert_close(changed[:, : k + 1], base[:, : k + 1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("k", range(1, L))
def test_lstm_prediction_at_k_does_use_earlier_items_and_ratings(k: int) -> None:
    # The converse, so the causality test above cannot pass with a network that ignores its inputs.
    net = _lstm()
    items, ratings = _sequences(8, seed=k)
    other_items, other_ratings = _sequences(8, seed=100 + k)
    with torch.inference_mode():
        base = net.predict(items, ratings)[:, k]
        earlier_items = items.clone()
        earlier_items[:, :k] = other_items[:, :k]
        earlier_ratings = ratings.clone()
        earlier_ratings[:, :k] = other_ratings[:, :k]
        own_item = items.clone()
        own_item[:, k] = other_items[:, k]
        for changed in (earlier_items, own_item):
            assert not torch.allclose(net.predict(changed, ratings)[:, k], base, atol=1e-4)
        assert not torch.allclose(net.predict(items, earlier_ratings)[:, k], base, atol=1e-4)


def test_lstm_left_padded_short_sequence() -> None:
    # Left padding (item 0, rating 0) is how short histories are served. The LSTM runs over the pads, so the
    # contract promises finite star outputs and causality, not that padding to 10 or to 12 gives equal values.
    net = _lstm()
    items, ratings = _sequences(3, seed=9)
    items[:, :7] = 0
    ratings[:, :7] = 0.0
    with torch.inference_mode():
        pred = net.predict(items, ratings)
        changed = items.clone()
        changed[:, 8:] = (changed[:, 8:] % N_ITEMS) + 1
        pred_changed = net.predict(changed, ratings)
    assert torch.isfinite(pred).all()
    assert ((pred >= 1.0) & (pred <= 5.0)).all()
    torch.testing.assert_close(pred_changed[:, :8], pred[:, :8], atol=ATOL, rtol=0)


def test_lstm_without_any_known_ratings() -> None:
    # Requests may come without ratings (all 0 = unknown); training hides ratings so this still works.
    net = _lstm()
    items, _ = _sequences(2, seed=11)
    with torch.inference_mode():
        pred = net.predict(items, torch.zeros(2, L))
        scores = net.score_next(items[:1], torch.zeros(1, L))
    assert torch.isfinite(pred).all()
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("n_users", [5, 300])  # 300: whole batches of users with no history at all
def test_tastes_at_match_running_every_user_over_the_full_width(n_users: int) -> None:
    torch.manual_seed(0)
    data = synthetic_interactions(n_users=n_users, n_items=20, n=150, seed=2)
    model = SequenceLSTM(data.num_users, data.num_items, 4, 6).eval()
    hist = data.to_histories(10)
    everyone = np.arange(data.num_users + 1)
    items, ratings, _ = hist.padded(everyone)
    with torch.inference_mode():
        padded = model.run(torch.from_numpy(items), torch.from_numpy(ratings))[0]
    # Every (user, position) from 0 (no history yet) to the state after the whole history, in shuffled order.
    users = np.repeat(everyone, hist.lengths + 1)
    positions = np.concatenate([np.arange(n + 1) for n in hist.lengths])
    shuffle = np.random.default_rng(0).permutation(len(users))
    users, positions = users[shuffle], positions[shuffle]
    got = tastes_at(model, data, 10, users, positions)
    expected = padded[torch.from_numpy(users), torch.from_numpy(hist.offsets[users] + positions)]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_featured_mf_folds_into_a_plain_mf_that_predicts_the_same() -> None:
    torch.manual_seed(0)
    mf = MatrixFactorization(6, 5, 4)
    user_features = torch.tensor([[0, 0], [1, 3], [2, 3], [1, 4], [2, 4], [1, 3], [2, 4]])
    item_features = torch.tensor([[0, 0], [1, 2], [2, 0], [3, 0], [1, 3], [0, 0]])  # item 5: no genre
    featured = FeaturedMF(mf, user_features, item_features, 4, 3)
    for table in (featured.user_side, featured.item_side):
        torch.nn.init.normal_(table.weight)  # as if trained: zero would fold trivially
    users, items = torch.arange(7).repeat_interleave(6), torch.arange(6).repeat(7)
    with torch.no_grad():
        expected = featured.predict(users, items)
        folded = featured.fold()
        assert isinstance(folded, MatrixFactorization)
        torch.testing.assert_close(folded.predict(users, items), expected)
        assert not folded.item_factors.weight[0].any()  # padding stays zero
