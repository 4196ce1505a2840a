"""How each network is fitted: its hyperparameters, its training tensors and its loss.

Each `train_*` takes the fitting data and a validation split carved from training data only, and returns the
fitted network with its learning curves. Hyperparameters live in one small dataclass per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.data import Interactions
from training.evaluate import error_metrics, predict_pairs, predict_sequences, scale
from training.fit import FitResult, fit
from training.networks import DenseNet, MatrixFactorization, SequenceLSTM

SEQUENCE_LENGTH = 10


@dataclass
class MFConfig:
    dim: int = 64  # enough rank for ML-100K; more only helps with more regularisation
    reg: float = 0.05  # L2 on the embeddings a minibatch touches (classic per-rating regularisation)
    lr: float = 0.005  # Adam; stable for batch 1024 on the [0,1] scale
    batch_size: int = 1024  # 80 steps an epoch on u1.base: fast on 2 cores, still noisy enough to generalise
    max_epochs: int = 100
    patience: int = 5  # epochs without validation improvement before stopping


@dataclass
class DenseConfig:
    dim: int = 32  # per side; the concatenation is 64 wide
    hidden: list[int] = field(default_factory=lambda: [64, 32])  # the tutorial's shape, two ReLU layers
    dropout: float = 0.3  # the main regulariser: the net overfits ML-100K within a few epochs without it
    weight_decay: float = 1e-5
    lr: float = 0.002
    batch_size: int = 1024
    max_epochs: int = 100
    patience: int = 5


@dataclass
class LSTMConfig:
    dim: int = 32  # item embedding width, in and out
    hidden: int = 64  # LSTM state; a 10-step window needs little more
    rating_dropout: float = 0.2  # hide this share of input ratings so requests without ratings still work
    weight_decay: float = 1e-5
    lr: float = 0.003
    batch_size: int = 512
    max_epochs: int = 60
    patience: int = 4


Config = MFConfig | DenseConfig | LSTMConfig


def hyperparameters(config: Config) -> dict[str, Any]:
    return asdict(config)


def _pair_tensors(data: Interactions) -> list[Tensor]:
    return [
        torch.from_numpy(data.user_ids),
        torch.from_numpy(data.item_ids),
        torch.from_numpy(scale(data.ratings).astype(np.float32)),
    ]


def train_mf(
    train: Interactions,
    val: Interactions,
    config: MFConfig,
    generator: torch.Generator,
    max_epochs: int | None = None,
) -> tuple[MatrixFactorization, FitResult]:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model = MatrixFactorization(
        train.num_users, train.num_items, config.dim, float(scale(train.ratings).mean())
    )

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        users, items, target = batch
        assert isinstance(m, MatrixFactorization)
        p, q = m.user_factors(users), m.item_factors(items)
        bu, bi = m.user_bias(users).squeeze(-1), m.item_bias(items).squeeze(-1)
        pred = (p * q).sum(-1) + bu + bi + m.global_bias
        penalty = (p.pow(2).sum(-1) + q.pow(2).sum(-1) + bu.pow(2) + bi.pow(2)).mean()
        return F.mse_loss(pred, target) + config.reg * penalty

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    result = fit(
        model,
        _pair_tensors(train),
        loss_fn,
        lambda: error_metrics(predict_pairs(model, val), val.ratings)["rmse"],
        optimizer=optimizer,
        batch_size=config.batch_size,
        max_epochs=max_epochs or config.max_epochs,
        patience=config.patience,
        generator=generator,
        desc="mf",
    )
    return model, result


def train_dense(
    train: Interactions,
    val: Interactions,
    config: DenseConfig,
    generator: torch.Generator,
    max_epochs: int | None = None,
) -> tuple[DenseNet, FitResult]:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model = DenseNet(
        train.num_users,
        train.num_items,
        config.dim,
        config.hidden,
        config.dropout,
        float(scale(train.ratings).mean()),
    )

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        users, items, target = batch
        return F.mse_loss(m(users, items), target)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = fit(
        model,
        _pair_tensors(train),
        loss_fn,
        lambda: error_metrics(predict_pairs(model, val), val.ratings)["rmse"],
        optimizer=optimizer,
        batch_size=config.batch_size,
        max_epochs=max_epochs or config.max_epochs,
        patience=config.patience,
        generator=generator,
        desc="dense",
    )
    return model, result


def train_lstm(
    train: Interactions,
    val: Interactions,
    config: LSTMConfig,
    generator: torch.Generator,
    max_epochs: int | None = None,
) -> tuple[SequenceLSTM, FitResult]:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model = SequenceLSTM(train.num_items, config.dim, config.hidden, float(scale(train.ratings).mean()))
    items, ratings = train.to_sequence(SEQUENCE_LENGTH)
    tensors = [torch.from_numpy(items), torch.from_numpy(ratings)]

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        items, ratings = batch
        hide = torch.rand(ratings.shape, generator=generator) < config.rating_dropout
        pred = m(items, ratings.masked_fill(hide, 0.0))
        mask = items > 0  # padded positions carry no rating to learn
        return F.mse_loss(pred[mask], (ratings[mask] - 1.0) / 4.0)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = fit(
        model,
        tensors,
        loss_fn,
        lambda: error_metrics(predict_sequences(model, train, val, SEQUENCE_LENGTH), val.ratings)["rmse"],
        optimizer=optimizer,
        batch_size=config.batch_size,
        max_epochs=max_epochs or config.max_epochs,
        patience=config.patience,
        generator=generator,
        desc="lstm",
    )
    return model, result
