"""Tests for `training.fit` (the shared minibatch loop) and the determinism of the three trainers."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from tests.training.conftest import synthetic_interactions
from training import models
from training.data import validation_split
from training.fit import DivergedError, FitResult, LossFn, fit
from training.models import DenseConfig, LSTMConfig, MFConfig, train_dense, train_lstm, train_mf


class Scalar(nn.Module):
    """One parameter pulled towards the batch mean: the smallest model `fit` can train."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


def _mean_loss(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
    (x,) = batch
    return ((model.w - x) ** 2).mean()


def _fit(
    model: nn.Module, tensors: Sequence[Tensor], loss_fn: LossFn, validate: Callable[[], float], **kwargs: Any
) -> FitResult:
    options = {
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "batch_size": 4,
        "max_epochs": 10,
        "patience": 3,
        "generator": torch.Generator().manual_seed(0),
    } | kwargs
    return fit(model, tensors, loss_fn, validate, **options)


def test_minibatches_are_whole_aligned_slices_of_a_permutation() -> None:
    n, batch_size = 22, 5
    ids = torch.arange(n)
    tensors = [ids, ids * 10, ids.to(torch.float32) / 2]
    batches: list[list[Tensor]] = []

    def loss_fn(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        batches.append([t.clone() for t in batch])
        return _mean_loss(model, [batch[2]])

    result = _fit(Scalar(), tensors, loss_fn, lambda: 1.0, batch_size=batch_size, max_epochs=3, patience=9)
    per_epoch = math.ceil(n / batch_size)
    assert len(batches) == 3 * per_epoch
    for epoch in range(3):
        epoch_batches = batches[epoch * per_epoch : (epoch + 1) * per_epoch]
        # Whole slices: every batch full except the last of the epoch.
        assert [len(b[0]) for b in epoch_batches] == [5, 5, 5, 5, 2]
        # The same rows of each tensor.
        for first, second, third in epoch_batches:
            assert torch.equal(second, first * 10)
            assert torch.equal(third, first.to(torch.float32) / 2)
        # Every row exactly once per epoch.
        seen = torch.cat([b[0] for b in epoch_batches])
        assert sorted(seen.tolist()) == list(range(n))
    orders = [torch.cat([b[0] for b in batches[e * per_epoch : (e + 1) * per_epoch]]) for e in range(3)]
    assert not torch.equal(orders[0], orders[1])  # reshuffled each epoch
    assert not torch.equal(orders[0], ids)  # and actually shuffled
    assert result.epochs == 3


def test_shuffling_comes_from_the_injected_generator_only() -> None:
    def orders(seed: int) -> list[list[int]]:
        seen: list[list[int]] = []

        def loss_fn(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
            seen.append(batch[0].tolist())
            return _mean_loss(model, [batch[0].to(torch.float32)])

        torch.manual_seed(1234 + seed)  # the global RNG must not matter
        _fit(Scalar(), [torch.arange(30)], loss_fn, lambda: 1.0, generator=torch.Generator().manual_seed(seed))
        return seen

    assert orders(0) == orders(0)
    assert orders(0) != orders(1)


def test_epoch_loss_is_the_mean_minibatch_loss() -> None:
    losses: list[float] = []

    def loss_fn(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        loss = _mean_loss(model, batch)
        losses.append(loss.item())
        return loss

    result = _fit(Scalar(), [torch.arange(12, dtype=torch.float32)], loss_fn, lambda: 1.0, max_epochs=2)
    assert result.train_loss == pytest.approx([np.mean(losses[:3]), np.mean(losses[3:])])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_raises_diverged_error(bad: float) -> None:
    def loss_fn(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        return _mean_loss(model, batch) * bad

    validated: list[int] = []
    with pytest.raises(DivergedError, match=r"loss is (nan|inf) at epoch 1"):
        _fit(Scalar(), [torch.ones(8)], loss_fn, lambda: validated.append(1) or 1.0)
    assert validated == []  # it fails before validating (or saving) a diverged model


def test_nan_in_a_single_batch_is_caught() -> None:
    calls = 0

    def loss_fn(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        nonlocal calls
        calls += 1
        loss = _mean_loss(model, batch)
        return loss * math.nan if calls == 6 else loss  # one bad batch in epoch 2

    with pytest.raises(DivergedError, match="epoch 2"):
        _fit(Scalar(), [torch.ones(16)], loss_fn, lambda: 1.0)


def test_early_stopping_restores_the_best_validation_weights() -> None:
    model = Scalar()
    val_curve = [5.0, 4.0, 3.0, 3.5, 3.2, 3.0, 9.0, 9.0]  # best at epoch 3; a tie later is not better
    snapshots: list[float] = []
    modes: list[bool] = []

    def validate() -> float:
        snapshots.append(model.w.item())
        modes.append(model.training)
        return val_curve[len(snapshots) - 1]

    target = torch.full((8,), 10.0)
    result = _fit(model, [target], _mean_loss, validate, max_epochs=8, patience=3)
    assert result.best_epoch == 3
    assert result.epochs == 6  # three epochs without improvement, then stop
    assert result.val_rmse == val_curve[:6]
    assert len(set(snapshots)) == 6  # the weights did move every epoch
    assert model.w.item() == snapshots[2]
    assert not any(modes)  # validation runs in eval mode
    assert not model.training


def test_runs_to_max_epochs_while_improving() -> None:
    model = Scalar()
    curve = iter([5.0, 4.0, 3.0, 2.0])
    result = _fit(model, [torch.full((8,), 1.0)], _mean_loss, lambda: next(curve), max_epochs=4, patience=1)
    assert (result.epochs, result.best_epoch) == (4, 4)
    assert len(result.train_loss) == 4
    assert result.seconds > 0


def test_fit_is_deterministic_for_the_same_seed() -> None:
    def run() -> dict[str, Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
        x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
        y = x.sum(1, keepdim=True)

        def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
            return ((m(batch[0]) - batch[1]) ** 2).mean()

        def validate() -> float:
            return float(((model(x) - y) ** 2).mean().sqrt())

        _fit(model, [x, y], loss_fn, validate, optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
        return model.state_dict()

    a, b = run(), run()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- the three trainers -------------------------------------------------------------------------------------

TINY = {
    "mf": (train_mf, replace(MFConfig(), dim=4, batch_size=64)),
    "dense": (train_dense, replace(DenseConfig(), dim=4, hidden=[8, 4], batch_size=64)),
    "lstm": (train_lstm, replace(LSTMConfig(), dim=4, hidden=8, batch_size=64)),
}


@pytest.mark.parametrize("name", TINY)
def test_trainer_is_deterministic_for_the_same_seed(name: str) -> None:
    train, config = TINY[name]
    data = synthetic_interactions(n=500)

    def run(seed: int) -> dict[str, Tensor]:
        fit_data, val = validation_split(data, 0.1, np.random.default_rng(seed))
        torch.manual_seed(99 + seed)  # global RNG state left by earlier code must not matter
        model, result = train(fit_data, val, config, torch.Generator().manual_seed(seed), max_epochs=3)
        assert result.epochs >= 1
        return {k: v.clone() for k, v in model.state_dict().items()}

    a, b, other = run(0), run(0), run(1)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{name}: {key} differs between two runs with seed 0"
    assert any(not torch.equal(a[k], other[k]) for k in a)


@pytest.mark.parametrize("name", TINY)
def test_trainer_learns_and_returns_an_eval_mode_network(name: str) -> None:
    train, config = TINY[name]
    data = synthetic_interactions(n=800, seed=4)
    fit_data, val = validation_split(data, 0.1, np.random.default_rng(0))
    model, result = train(fit_data, val, replace(config, lr=0.02), torch.Generator().manual_seed(0), max_epochs=6)
    assert not model.training
    assert all(math.isfinite(v) for v in result.train_loss)
    assert result.train_loss[-1] < result.train_loss[0]
    assert 1 <= result.best_epoch <= result.epochs <= 6


def test_dense_and_lstm_share_one_pretrained_mf_without_changing_results() -> None:
    data = synthetic_interactions(n=500)
    fit_data, val = validation_split(data, 0.1, np.random.default_rng(0))
    (_, dense_config), (_, lstm_config) = TINY["dense"], TINY["lstm"]
    assert dense_config.dim == lstm_config.dim

    def lstm() -> dict[str, Tensor]:
        model, _ = train_lstm(fit_data, val, lstm_config, torch.Generator().manual_seed(0), max_epochs=2)
        return {k: v.clone() for k, v in model.state_dict().items()}

    models._shared_pretraining.clear()
    alone = lstm()
    models._shared_pretraining.clear()
    train_dense(fit_data, val, dense_config, torch.Generator().manual_seed(0), max_epochs=2)
    with mock.patch("training.models.train_mf", side_effect=AssertionError("the MF was fitted again")):
        after_dense = lstm()
    models._shared_pretraining.clear()  # later tests fit their own
    for key in alone:
        assert torch.equal(alone[key], after_dense[key]), key


def test_off_a_terminal_every_epoch_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # pytest's output is not a TTY, so tqdm draws no bar: without these lines a CI log showed nothing per epoch.
    data = synthetic_interactions(n=300)
    fit_data, val = validation_split(data, 0.1, np.random.default_rng(0))
    _, config = TINY["mf"]
    with caplog.at_level(logging.INFO, logger="training"):
        train_mf(fit_data, val, config, torch.Generator().manual_seed(0), max_epochs=3)
    epochs = [r.getMessage() for r in caplog.records if ": epoch " in r.getMessage()]
    assert [m.split(" loss")[0] for m in epochs] == ["mf: epoch 1/3", "mf: epoch 2/3", "mf: epoch 3/3"], epochs


def test_pretraining_is_labelled_and_capped_by_max_epochs(caplog: pytest.LogCaptureFixture) -> None:
    data = synthetic_interactions(n=500)
    fit_data, val = validation_split(data, 0.1, np.random.default_rng(0))
    _, config = TINY["dense"]
    models._shared_pretraining.clear()
    with caplog.at_level(logging.INFO, logger="training"):
        train_dense(fit_data, val, config, torch.Generator().manual_seed(0), max_epochs=2)
    models._shared_pretraining.clear()
    best = [r.getMessage() for r in caplog.records if "best val RMSE" in r.getMessage()]
    assert len(best) == 2 and best[0].startswith("mf pretraining (dim 4): best val RMSE"), best
    assert best[0].endswith("of 2") and best[1].startswith("dense:"), best


def test_the_cli_epochs_cap_reaches_the_pretraining(caplog: pytest.LogCaptureFixture) -> None:
    from training.pipeline import train_one

    models._shared_pretraining.clear()
    with caplog.at_level(logging.INFO, logger="training"):
        train_one("lstm", synthetic_interactions(n=400), seed=0, max_epochs=1)
    models._shared_pretraining.clear()
    pre = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mf pretraining")]
    assert pre and all(m.endswith("of 1") for m in pre if "best val" in m), pre
