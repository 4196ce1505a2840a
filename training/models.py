"""How each network is fitted: its hyperparameters, its training tensors and its loss.

Each `train_*` takes the fitting data and a validation split carved from training data only, and returns the
fitted network with its learning curves. Hyperparameters live in one small dataclass per model.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.artifacts import SEQUENCE_LENGTH
from training.data import Interactions
from training.evaluate import error_metrics, predict_pairs, predict_sequences, scale, user_tastes
from training.fit import FitResult, LossFn, Optimizers, fit
from training.networks import DenseNet, FeaturedMF, MatrixFactorization, SequenceLSTM


@dataclass
class MFConfig:
    # Tuned on u1 validation without side features (0.918 on test at 64 as at 128, at half the cost per
    # step), kept with them (u1 test 0.9109).
    dim: int = 64
    reg: float = 0.025  # L2 on the embeddings a minibatch touches (classic per-rating regularisation)
    # The same L2 on the side-feature part of each vector: unregularised, features overfit (u1 0.930);
    # 0.01 and 0.05 scored worse on validation than 0.025.
    feature_reg: float = 0.025
    lr: float = 0.001  # Adam; 0.002 stops early at a worse validation error, 0.0007 too (with features)
    # u1 validation, 1024 -> 2048: MF 0.9046 -> 0.9035, dense from it 0.9184 -> 0.9155, LSTM 0.9401 -> 0.9379;
    # and a step costs ~1.5x for 2x the ratings. 256 scored as 1024 in 3x the time.
    batch_size: int = 2048
    max_epochs: int = 100
    patience: int = 5  # epochs without validation improvement before stopping


@dataclass
class DenseConfig:
    dim: int = 32  # per side; 64 and 128 overfit sooner and scored worse on u1 validation
    hidden: list[int] = field(default_factory=lambda: [64, 32])  # the tutorial's shape, two ReLU layers
    dropout: float = 0.2  # on the input and hidden layers; 0.1 overfits, 0.5 underfits
    reg: float = 0.03  # L2 on the embeddings a minibatch touches, as for MF: the main regulariser (0.05: +0.001)
    weight_decay: float = 1e-5
    lr: float = 0.0003  # starts from MF's embeddings: gentle steps keep what they know (0.0005: u1 val +0.002)
    batch_size: int = 256  # as for MF: smaller steps generalise better
    max_epochs: int = 100
    patience: int = 5


@dataclass
class LSTMConfig:
    dim: int = 32  # item embedding width, in and out
    hidden: int = 64  # LSTM state: the drift in taste; the stable part is in the running sums
    reg: float = 0.01  # L2 on the item and taste vectors of each prediction, as for MF
    dropout: float = 0.3  # on item inputs and the LSTM state: without it the net overfits within 3 epochs
    rating_dropout: float = 0.1  # hide this share of input ratings so requests without ratings still work
    weight_decay: float = 1e-4
    lr: float = 0.003
    batch_size: int = 64  # users per step, each carrying its whole history in windows (32: same RMSE, 1.3x time)
    max_epochs: int = 60
    patience: int = 4


Config = MFConfig | DenseConfig | LSTMConfig


def hyperparameters(config: Config) -> dict[str, Any]:
    return asdict(config)


def _pair_tensors(data: Interactions) -> list[Tensor]:
    return [
        torch.from_numpy(data.user_ids),
        torch.from_numpy(data.item_ids),
        torch.from_numpy(scale(data.ratings, *data.rating_scale).astype(np.float32)),
    ]


def mf_loss(model: MatrixFactorization, batch: Sequence[Tensor], reg: float) -> Tensor:
    """Squared error on the [0,1] scale plus L2 on the embedding rows the batch touches."""
    users, items, target = batch
    p, q = model.user_factors(users), model.item_factors(items)
    bias = model.user_bias(users).squeeze(-1) + model.item_bias(items).squeeze(-1) + model.global_bias
    return F.mse_loss((p * q).sum(-1) + bias, target) + reg * (p.pow(2).sum(-1) + q.pow(2).sum(-1)).mean()


def featured_mf_loss(model: FeaturedMF, batch: Sequence[Tensor], reg: float, feature_reg: float) -> Tensor:
    """`mf_loss` with the side features: the same L2 on the feature part of each vector the batch touches."""
    users, items, target = batch
    p, q = model.mf.user_factors(users), model.mf.item_factors(items)
    user_side, item_side = model.sides(users, items)
    penalty = reg * (p.pow(2).sum(-1) + q.pow(2).sum(-1))
    penalty = penalty + feature_reg * (user_side[:, :-1].pow(2).sum(-1) + item_side[:, :-1].pow(2).sum(-1))
    return F.mse_loss(model.score(users, items, user_side, item_side), target) + penalty.mean()


def mf_optimizer(model: MatrixFactorization | FeaturedMF, lr: float) -> Optimizers:
    """SparseAdam for the user and item tables (sparse gradients), Adam for the rest (the global bias and any
    side-feature tables, which are small)."""
    mf = model.mf if isinstance(model, FeaturedMF) else model
    tables = [mf.user_factors.weight, mf.item_factors.weight, mf.user_bias.weight, mf.item_bias.weight]
    rest = [p for p in model.parameters() if all(p is not t for t in tables)]
    return Optimizers(torch.optim.SparseAdam(tables, lr=lr), torch.optim.Adam(rest, lr=lr))


def mf_network(train: Interactions, config: MFConfig) -> tuple[MatrixFactorization | FeaturedMF, LossFn]:
    """The network `train_mf` fits on `train`, and its loss: an MF learning side features where `train` has
    them (`FeaturedMF`), else a plain one."""
    mf = MatrixFactorization(
        train.num_users,
        train.num_items,
        config.dim,
        float(scale(train.ratings, *train.rating_scale).mean()),
        rating_min=train.rating_min,
        rating_max=train.rating_max,
    )
    if train.features is None:
        return mf, lambda m, batch: mf_loss(m, batch, config.reg)  # type: ignore[arg-type]
    f = train.features
    featured = FeaturedMF(
        mf,
        torch.from_numpy(f.user_features),
        torch.from_numpy(f.item_features),
        f.num_user_features,
        f.num_item_features,
    )
    return featured, lambda m, batch: featured_mf_loss(m, batch, config.reg, config.feature_reg)  # type: ignore[arg-type]


def train_mf(
    train: Interactions,
    val: Interactions,
    config: MFConfig,
    generator: torch.Generator,
    max_epochs: int | None = None,
    desc: str = "mf",
) -> tuple[MatrixFactorization, FitResult]:
    """Fit an MF, with the side features of `train` where it has them (u1 at batch 1024: 0.918 without, 0.909
    with, mean of seeds 0 and 1); the features are folded into the tables, so the result is a plain MF either
    way."""
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    model, loss = mf_network(train, config)
    optimizer = mf_optimizer(model, config.lr)
    result = fit(
        model,
        _pair_tensors(train),
        loss,
        lambda: error_metrics(predict_pairs(model, val), val.ratings)["rmse"],
        optimizer=optimizer,
        batch_size=config.batch_size,
        max_epochs=max_epochs or config.max_epochs,
        patience=config.patience,
        generator=generator,
        desc=desc,
    )
    return (model.fold() if isinstance(model, FeaturedMF) else model), result


_shared_pretraining: dict[str, tuple[MatrixFactorization, FitResult, Tensor]] = {}


def _pretrained_mf(
    train: Interactions, val: Interactions, dim: int, generator: torch.Generator, max_epochs: int | None
) -> tuple[MatrixFactorization, FitResult]:
    """An MF of width `dim` on the same data and validation split, to start another model from; then reseeds
    torch from `generator` for that model's own initialisation.

    Dense and LSTM ask for the same one (same width, data and generator state) when trained in one process, so
    it is fitted once and reused, leaving `generator` where fitting it would: results do not depend on which
    model comes first. Its seconds count in the model that fitted it.
    """
    config = replace(MFConfig(), dim=dim)
    key = _fingerprint(train, val, generator, config, max_epochs)
    if key in _shared_pretraining:
        mf, result, state = _shared_pretraining[key]
        mf, result = copy.deepcopy(mf), replace(result, seconds=0.0)
        generator.set_state(state)
    else:
        # Labelled, so its progress and "best val RMSE" line are not taken for the mf model's own.
        mf, result = train_mf(train, val, config, generator, max_epochs, desc=f"mf pretraining (dim {dim})")
        if len(_shared_pretraining) >= 2:  # a run's split, and the evaluation split of a `full` run
            del _shared_pretraining[next(iter(_shared_pretraining))]
        _shared_pretraining[key] = (copy.deepcopy(mf), result, generator.get_state())
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    return mf, result


def _fingerprint(train: Interactions, val: Interactions, generator: torch.Generator, *args: object) -> str:
    digest = hashlib.sha256(repr(args).encode())
    for data in (train, val):
        sizes = (data.num_users, data.num_items)
        if data.features is not None:
            sizes += (data.features.num_user_features, data.features.num_item_features)
        digest.update(repr(sizes).encode())
        arrays = [data.user_ids, data.item_ids, data.ratings, data.timestamps]
        if data.features is not None:
            arrays += [data.features.user_features, data.features.item_features]
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(generator.get_state().numpy().tobytes())
    return digest.hexdigest()


def train_dense(
    train: Interactions,
    val: Interactions,
    config: DenseConfig,
    generator: torch.Generator,
    max_epochs: int | None = None,
) -> tuple[DenseNet, FitResult]:
    """Fit the dense net, starting from the embeddings and biases of an MF of the same width.

    That is NeuMF's pretraining (He et al., 2017): from random embeddings the net stalls at RMSE ~0.933 on
    u1, from a plain MF's it reached ~0.923, from the side-feature MF's 0.918. The MF is fitted on the same
    data and validation split.
    """
    mf, pre = _pretrained_mf(train, val, config.dim, generator, max_epochs)
    model = DenseNet(
        train.num_users,
        train.num_items,
        config.dim,
        config.hidden,
        config.dropout,
        float(scale(train.ratings, *train.rating_scale).mean()),
        rating_min=train.rating_min,
        rating_max=train.rating_max,
    )
    with torch.no_grad():
        model.user_emb.weight.copy_(mf.user_factors.weight)
        model.item_emb.weight.copy_(mf.item_factors.weight)
        model.user_bias.weight.copy_(mf.user_bias.weight)
        model.item_bias.weight.copy_(mf.item_bias.weight)

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        users, items, target = batch
        assert isinstance(m, DenseNet)
        penalty = (m.user_emb(users).pow(2).sum(-1) + m.item_emb(items).pow(2).sum(-1)).mean()
        return F.mse_loss(m(users, items), target) + config.reg * penalty

    # SparseAdam for the (sparse) tables, whose L2 is `config.reg` on the rows a batch touches; AdamW for the rest.
    tables = [model.user_emb.weight, model.item_emb.weight, model.user_bias.weight, model.item_bias.weight]
    rest = [p for p in model.parameters() if all(p is not t for t in tables)]
    optimizer = Optimizers(
        torch.optim.SparseAdam(tables, lr=config.lr),
        torch.optim.AdamW(rest, lr=config.lr, weight_decay=config.weight_decay),
    )
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
    result.seconds += pre.seconds
    return model, result


def train_lstm(
    train: Interactions,
    val: Interactions,
    config: LSTMConfig,
    generator: torch.Generator,
    max_epochs: int | None = None,
    *,
    history: Interactions | None = None,
) -> tuple[SequenceLSTM, FitResult]:
    """Fit the LSTM over every user's whole history in windows, its output item vectors and biases starting
    from an MF of the same width (u1: 0.949 from random, 0.935-0.939 from an MF's).

    `history` is what the exported network serves as each user's past: ``user_taste`` (``score_all``) is the
    state after it. `training.pipeline.train_one` passes the whole training split, of which `train` is the
    part left after carving out `val`; the default is `train`.
    """
    mf, pre = _pretrained_mf(train, val, config.dim, generator, max_epochs)
    model = SequenceLSTM(
        train.num_users,
        train.num_items,
        config.dim,
        config.hidden,
        config.dropout,
        float(scale(train.ratings, *train.rating_scale).mean()),
        rating_min=train.rating_min,
        rating_max=train.rating_max,
    )
    with torch.no_grad():
        model.item_out.weight.copy_(mf.item_factors.weight)
        model.item_bias.weight.copy_(mf.item_bias.weight)
    # CSR histories; each batch of users is padded to its own longest only (memory: batch x longest, never
    # users x longest). The rows shuffled are user indices, as the padded rows of every user were before.
    histories = train.to_histories(SEQUENCE_LENGTH)
    tensors = [torch.arange(train.num_users + 1)]
    W = SEQUENCE_LENGTH
    lo_star, span = train.rating_min, train.rating_max - train.rating_min

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        assert isinstance(m, SequenceLSTM)
        items, ratings, ends = (torch.from_numpy(a) for a in histories.padded(batch[0].numpy()))
        # Longest history first: each window runs only the rows whose history reaches it, as packed sequences do.
        ends, order = ends.sort(descending=True)
        items, ratings = items[order], ratings[order]
        hide = torch.rand(ratings.shape, generator=generator) < config.rating_dropout
        inputs = ratings.masked_fill(hide, 0.0)
        state: tuple[Tensor, Tensor, Tensor] | None = None
        total = torch.zeros(())
        count = 0
        for lo in range(0, int(ends[0]), W):
            rows = int((ends > lo).sum())
            if state is not None:
                state = (state[0][:, :rows], state[1][:, :rows], state[2][:rows])
            it, rt = items[:rows, lo : lo + W], inputs[:rows, lo : lo + W]
            taste, state = m.run(it, rt, state)
            # Truncated back-propagation, one window at a time (full BPTT scored the same on u1 at 2x the cost).
            state = (state[0].detach(), state[1].detach(), state[2])
            mask = it > 0
            err = m.score_taste(taste[:, :-1], it) - (ratings[:rows, lo : lo + W] - lo_star) / span
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
    result.seconds += pre.seconds
    with torch.inference_mode():
        model.user_taste.copy_(user_tastes(model, train if history is None else history, W))
    return model, result
