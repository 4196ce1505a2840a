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
from training.evaluate import error_metrics, predict_pairs, predict_sequences, scale, user_tastes
from training.fit import FitResult, fit
from training.networks import DenseNet, MatrixFactorization, SequenceLSTM

SEQUENCE_LENGTH = 10


@dataclass
class MFConfig:
    dim: int = 128  # with this regularisation, more rank stops helping on validation
    reg: float = 0.03  # L2 on the embeddings a minibatch touches (classic per-rating regularisation)
    lr: float = 0.0005  # Adam; 0.005 overfits within 3 epochs
    batch_size: int = 256  # smaller, noisier steps generalise better here (u1 validation 0.914 vs 0.917 at 1024)
    max_epochs: int = 100
    patience: int = 5  # epochs without validation improvement before stopping


@dataclass
class DenseConfig:
    dim: int = 64  # per side; the concatenation is 128 wide
    hidden: list[int] = field(default_factory=lambda: [64, 32])  # the tutorial's shape, two ReLU layers
    dropout: float = 0.3  # the net overfits ML-100K within a few epochs without it
    reg: float = 0.03  # L2 on the embeddings a minibatch touches, as for MF
    weight_decay: float = 1e-5
    lr: float = 0.002
    batch_size: int = 1024
    max_epochs: int = 100
    patience: int = 5


@dataclass
class LSTMConfig:
    dim: int = 32  # item embedding width, in and out
    hidden: int = 64  # LSTM state; a 10-step window needs little more
    reg: float = 0.0  # L2 on the item and taste vectors of each prediction (tried 0.03: worse on validation)
    rating_dropout: float = 0.1  # hide this share of input ratings so requests without ratings still work
    weight_decay: float = 1e-4
    lr: float = 0.003
    batch_size: int = 32  # users per step; each carries its whole history in windows
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


def implicit_matrix(data: Interactions) -> Tensor:
    """Sparse [n_users + 1, n_items + 1]: 1/sqrt(|N(u)|) where user u rated item i (SVD++'s normalisation)."""
    counts = np.bincount(data.user_ids, minlength=data.num_users + 1)
    index = torch.from_numpy(np.stack([data.user_ids, data.item_ids]))
    values = torch.from_numpy((1.0 / np.sqrt(counts[data.user_ids])).astype(np.float32))
    return torch.sparse_coo_tensor(index, values, (data.num_users + 1, data.num_items + 1)).coalesce()


def train_mf(
    train: Interactions, val: Interactions, config: MFConfig, generator: torch.Generator, max_epochs: int | None = None
) -> tuple[MatrixFactorization, FitResult]:
    """Biased MF whose user vectors also sum the (learned) vectors of the items the user rated, as in SVD++.

    That implicit part depends only on the training data, so it is folded into the user embeddings when
    fitting ends: the exported network is the plain dot-product model.
    """
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model = MatrixFactorization(train.num_users, train.num_items, config.dim, float(scale(train.ratings).mean()))
    implicit = nn.Embedding(train.num_items + 1, config.dim)
    nn.init.zeros_(implicit.weight)
    rated = implicit_matrix(train)

    def users() -> Tensor:
        return model.user_factors.weight + torch.sparse.mm(rated, implicit.weight)

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        u, i, target = batch
        p, q = users()[u], model.item_factors(i)
        bu, bi = model.user_bias(u).squeeze(-1), model.item_bias(i).squeeze(-1)
        pred = (p * q).sum(-1) + bu + bi + model.global_bias
        penalty = model.user_factors(u).pow(2).sum(-1) + q.pow(2).sum(-1) + implicit(i).pow(2).sum(-1)
        return F.mse_loss(pred, target) + config.reg * penalty.mean()

    def validate() -> float:
        folded = MatrixFactorization(train.num_users, train.num_items, config.dim)
        folded.load_state_dict(model.state_dict())
        folded.user_factors.weight.copy_(users())
        return error_metrics(predict_pairs(folded, val), val.ratings)["rmse"]

    optimizer = torch.optim.Adam([*model.parameters(), *implicit.parameters()], lr=config.lr)
    holder = nn.ModuleDict({"mf": model, "implicit": implicit})  # early stopping restores both
    result = fit(
        holder,
        _pair_tensors(train),
        loss_fn,
        validate,
        optimizer=optimizer,
        batch_size=config.batch_size,
        max_epochs=max_epochs or config.max_epochs,
        patience=config.patience,
        generator=generator,
        desc="mf",
    )
    with torch.no_grad():
        model.user_factors.weight.copy_(users())
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
        assert isinstance(m, DenseNet)
        penalty = (m.user_emb(users).pow(2).sum(-1) + m.item_emb(items).pow(2).sum(-1)).mean()
        return F.mse_loss(m(users, items), target) + config.reg * penalty

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
    train: Interactions, val: Interactions, config: LSTMConfig, generator: torch.Generator, max_epochs: int | None = None
) -> tuple[SequenceLSTM, FitResult]:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model = SequenceLSTM(train.num_users, train.num_items, config.dim, config.hidden, float(scale(train.ratings).mean()))
    items, ratings, offsets, lengths = train.to_histories(SEQUENCE_LENGTH)
    tensors = [torch.from_numpy(items), torch.from_numpy(ratings), torch.from_numpy(offsets + lengths)]
    W = SEQUENCE_LENGTH

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        assert isinstance(m, SequenceLSTM)
        items, ratings, ends = batch
        width = int(ends.max()) + (-int(ends.max())) % W  # right padding past every row's end is skipped
        hide = torch.rand(ratings.shape, generator=generator) < config.rating_dropout
        inputs = ratings.masked_fill(hide, 0.0)
        state: tuple[Tensor, Tensor] | None = None
        total = torch.zeros(())
        count = 0
        for lo in range(0, width, W):
            it, rt = items[:, lo : lo + W], inputs[:, lo : lo + W]
            taste, state = m.run(it, rt, state)
            state = (state[0].detach(), state[1].detach())  # truncated back-propagation: one window at a time
            mask = it > 0
            err = m.score_taste(taste[:, :-1], it) - (ratings[:, lo : lo + W] - 1.0) / 4.0
            penalty = m.item_out(it).pow(2).sum(-1) + taste[:, :-1, :-1].pow(2).sum(-1)
            total = total + ((err.pow(2) + config.reg * penalty) * mask).sum()
            count += int(mask.sum())
        return total / max(count, 1)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = fit(
        model,
        tensors,
        loss_fn,
        lambda: error_metrics(predict_sequences(model, train, val, W), val.ratings)["rmse"],
        optimizer=optimizer,
        batch_size=config.batch_size,
        max_epochs=max_epochs or config.max_epochs,
        patience=config.patience,
        generator=generator,
        desc="lstm",
    )
    with torch.inference_mode():
        model.user_taste.copy_(user_tastes(model, train, W))
    return model, result
