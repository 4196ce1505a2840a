"""The ranking heads: what each model learns from implicit feedback, so `/recommend` lists who will watch what.

A rating regressor learns how much a user likes a film *given* that they watched it, not which films they will
watch; ranked by predicted stars its lists lose to item-item peers (u1 NDCG@10 ~0.29 against EASE's 0.445). So
each model also learns a softmax over the whole catalog (Mult-DAE, Liang et al. 2018; the catalog of 1,682 items
is small enough for the full softmax, no sampling): every (user, item) of the training split is a positive,
a rating below 4 stars weighted down (relevant means >= 4). The user side is item-based (asymmetric, as Koren's
NSVD / Mult-DAE): the normalised sum of vectors of the user's history items, some of them hidden each step
(denoising), so the head learns to predict the items a user has *not* shown it from the ones they have. For mf and
dense the sums are folded into a plain user table at the end (as `FeaturedMF.fold` folds side features); the LSTM
adds its taste after the history (or a session) to the same sum, and also learns from prefixes of each history
(the items after a cut point are targets), which is what a session or a temporal split asks.

The served ranking score is ``logit + w * rating score`` ([0,1] scale): "will they watch it" plus "will they like
it"; ``w`` is chosen on validation carved from the training split (`choose_weight`), like every hyperparameter
here. For mf and lstm the score is an inner product (see `app/artifacts.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.artifacts import popularity_prior
from training.baselines import item_popularity
from training.data import Interactions
from training.evaluate import user_tastes
from training.fit import DivergedError
from training.networks import DenseNet, MatrixFactorization, SequenceLSTM
from training.ranking import RankingTask

log = logging.getLogger(__name__)

DISLIKED = 4.0  # ratings below this are weaker positives: the protocol's "relevant" is >= 4 stars


@dataclass
class RankConfig:
    dim: int = 256  # of the softmax's item vectors; u1 validation NDCG@10: 512 no better at 3x the time
    dropout: float = 0.3  # share of history items hidden from the encoder each step (0.5 and 0.7 scored worse)
    disliked_weight: float = 0.3  # target weight of a rating below 4 stars (1.0 and 0.0 scored worse)
    reg: float = 3e-3  # L2 on all the head's tables each step (1e-3: overfits sooner, lower best)
    lr: float = 3e-3
    batch_size: int = 128  # users per step
    max_epochs: int = 80
    eval_every: int = 5  # epochs between validation NDCG@10 checks (early stopping)
    patience: int = 2  # checks without improvement before stopping
    hidden: int = 0  # dense only: width of the ReLU layer over (user, item) beside the dot product
    full_history: float = 0.5  # lstm only: share of steps that see the whole history (else a random prefix)
    target_inputs: bool = True  # lstm only: the items shown are targets too (as Mult-DAE), else only the others
    use_taste: bool = True  # lstm only
    # Grid for w, the weight of the [0,1]-scale rating score added to the logits.
    weight_grid: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    # Grid for p, the weight of the popularity prior log1p(count) / log1p(max count) added to the item biases:
    # on u1 validation the MF's score goes 0.1959 (p = 0) -> 0.2042 (p = 4, docs/report.md), so it stays a choice.
    popularity_grid: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0])


@dataclass
class RankResult:
    seconds: float
    epochs: int
    best_epoch: int
    weight: float
    popularity_weight: float = 0.0
    validation_ndcg: list[float] = field(default_factory=list)  # per check, the logits alone
    weight_ndcg: dict[tuple[float, float], float] = field(default_factory=dict)  # validation NDCG@10 of (w, p)


def history_matrices(data: Interactions, disliked_weight: float) -> tuple[Tensor, Tensor]:
    """``(seen, target)`` ``[n_users + 1, n_items + 1]``: 1 where rated, and the softmax target weights."""
    seen = torch.zeros(data.num_users + 1, data.num_items + 1)
    seen[torch.from_numpy(data.user_ids), torch.from_numpy(data.item_ids)] = 1.0
    target = torch.zeros_like(seen)
    weights = np.where(data.ratings >= DISLIKED, 1.0, disliked_weight).astype(np.float32)
    target[torch.from_numpy(data.user_ids), torch.from_numpy(data.item_ids)] = torch.from_numpy(weights)
    return seen, target


def item_based(inputs: Tensor, table: Tensor) -> Tensor:
    """User vectors ``[B, r]``: the sum of the table rows of each row's input items over sqrt(count)."""
    return (inputs @ table) / inputs.sum(1, keepdim=True).clamp(min=1.0).sqrt()


def softmax_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Multinomial log-likelihood of the target weights, column 0 (padding) never a candidate."""
    logits = logits.clone()
    logits[:, 0] = -1e9
    return -(F.log_softmax(logits, dim=1) * target).sum(1).mean()


class _Head(nn.Module):
    """The trainable tables every head shares: input (history) vectors, output vectors and biases."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.inputs = nn.Parameter(torch.randn(n_items + 1, dim) * 0.01)
        self.outputs = nn.Parameter(torch.randn(n_items + 1, dim) * 0.01)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        with torch.no_grad():
            self.inputs[0].zero_()


def _fit(
    params: list[nn.Parameter],
    step_loss: Callable[[Tensor], Tensor],
    validation_logits: Callable[[], Tensor],
    task: RankingTask,
    n_users: int,
    config: RankConfig,
    generator: torch.Generator,
    desc: str,
) -> tuple[int, int, list[float]]:
    """Adam over users in minibatches, checking validation NDCG@10 every `eval_every` epochs and keeping the
    best parameters. Returns (epochs run, best epoch, NDCG@10 per check)."""
    optimizer = torch.optim.Adam(params, lr=config.lr)
    best, best_epoch, best_state = -1.0, 0, [p.detach().clone() for p in params]
    curve: list[float] = []
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        order = torch.randperm(n_users, generator=generator) + 1
        for lo in range(0, n_users, config.batch_size):
            loss = step_loss(order[lo : lo + config.batch_size])
            loss = loss + config.reg * sum(p.pow(2).sum() for p in params)  # type: ignore[assignment]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if not torch.isfinite(loss):
            raise DivergedError(f"{desc} ranking head: loss is {loss.item()} at epoch {epoch}")
        if epoch % config.eval_every and epoch != config.max_epochs:
            continue
        with torch.no_grad():
            ndcg = task.evaluate(validation_logits().numpy(), 0.0)["ndcg@10"] if len(task.users) else 0.0
        curve.append(ndcg)
        if ndcg > best:
            best, best_epoch, best_state = ndcg, epoch, [p.detach().clone() for p in params]
        elif epoch - best_epoch >= config.patience * config.eval_every:
            break
    with torch.no_grad():
        for p, saved in zip(params, best_state, strict=True):
            p.copy_(saved)
    log.info("%s ranking head: best validation NDCG@10 %.4f at epoch %d of %d", desc, best, best_epoch, epoch)
    return epoch, best_epoch, curve


def choose_weight(
    task: RankingTask,
    logits: np.ndarray,
    rating: np.ndarray,
    grid: list[float],
    popularity_grid: tuple[float, ...] | list[float] = (0.0,),
) -> tuple[tuple[float, float], dict[tuple[float, float], float]]:
    """The grid weights ``(w, p)`` of the rating score and the popularity prior (`RankingTask.popularity`, from
    the fitting data) with the best validation NDCG@10, the smallest on ties; and the NDCG@10 of each pair."""
    if len(task.users) == 0:
        return (0.0, 0.0), {}
    curve = {(w, p): task.evaluate(logits + w * rating, p)["ndcg@10"] for w in grid for p in popularity_grid}
    best = max(curve.values())
    return min(key for key, v in curve.items() if v == best), curve


def popularity_bias(history: Interactions, weight: float) -> Tensor:
    """``weight * log1p(count) / log1p(max count)`` per item ``[n_items + 1]``, counts from `history`."""
    return torch.from_numpy(weight * popularity_prior(item_popularity(history))).to(torch.float32)


# --- mf -------------------------------------------------------------------------------------------------------


def mf_rating_scores(model: MatrixFactorization, users: Tensor) -> Tensor:
    """The MF's [0,1]-scale rating score of every item, without the user-only terms (they do not rank)."""
    return model.user_factors.weight[users] @ model.item_factors.weight.t() + model.item_bias.weight.t()


def train_mf_head(
    model: MatrixFactorization,
    fit: Interactions,
    val: Interactions,
    config: RankConfig,
    generator: torch.Generator,
    *,
    history: Interactions | None = None,
) -> tuple[MatrixFactorization, RankResult]:
    """Fit an item-based softmax head for a trained MF and fold it in; returns the MF whose rank tables are set,
    its user vectors folded from `history` (the ratings served as each user's history; default `fit`), and the
    result."""
    start = time.perf_counter()
    task = RankingTask.build(fit, val)
    seen, target = history_matrices(fit, config.disliked_weight)
    head = _Head(fit.num_items, config.dim)

    def step(users: Tensor) -> Tensor:
        x = seen[users]
        kept = x * (torch.rand(x.shape, generator=generator) >= config.dropout)
        logits = item_based(kept, head.inputs) @ head.outputs.t() + head.bias
        return softmax_loss(logits, target[users])

    users_t = torch.from_numpy(task.users)

    def validation_logits() -> Tensor:
        return item_based(seen[users_t], head.inputs) @ head.outputs.t() + head.bias

    epochs, best_epoch, curve = _fit(
        list(head.parameters()), step, validation_logits, task, fit.num_users, config, generator, "mf"
    )
    with torch.no_grad():
        (weight, pop), weight_curve = choose_weight(
            task,
            validation_logits().numpy(),
            mf_rating_scores(model, users_t).numpy(),
            config.weight_grid,
            config.popularity_grid,
        )
    with torch.no_grad():
        model.rank_items = head.outputs.detach().clone()
        model.rank_item_bias = (head.bias.detach() + popularity_bias(fit, pop)).unsqueeze(1)
        model.rank_weight = torch.tensor(float(weight))
        model.rank_users = item_based(history_matrices(fit if history is None else history, 1.0)[0], head.inputs)
    result = RankResult(time.perf_counter() - start, epochs, best_epoch, weight, pop, curve, weight_curve)
    return model, result


# --- dense ----------------------------------------------------------------------------------------------------


def dense_rating_scores(model: DenseNet, users: Tensor) -> Tensor:
    """The dense net's [0,1]-scale rating of every item, one user at a time, as its score_all serves it."""
    model.eval()
    with torch.no_grad():
        return torch.stack([(model.score_all(u.view(1)) - 1.0) / 4.0 for u in users])


def train_dense_head(
    model: DenseNet,
    fit: Interactions,
    val: Interactions,
    config: RankConfig,
    generator: torch.Generator,
    *,
    history: Interactions | None = None,
) -> tuple[DenseNet, RankResult]:
    """Fit the dense net's NeuMF-style head (dot product plus a ReLU layer over the user and item vectors, as
    `DenseNet.rank_logits`) on item-based user vectors; as `train_mf_head` otherwise."""
    start = time.perf_counter()
    task = RankingTask.build(fit, val)
    seen, target = history_matrices(fit, config.disliked_weight)
    head = _Head(fit.num_items, config.dim)
    # The net's own rank layers are sized by the config; replace them so the head owns what it trains.
    model.rank_user_layer = nn.Linear(config.dim, config.hidden)
    model.rank_item_layer = nn.Linear(config.dim, config.hidden, bias=False)
    model.rank_out = nn.Linear(config.hidden, 1, bias=False)
    nn.init.normal_(model.rank_out.weight, std=0.01)
    layers = [*model.rank_user_layer.parameters(), *model.rank_item_layer.parameters(), *model.rank_out.parameters()]

    def logits_of(inputs: Tensor) -> Tensor:
        return model.rank_logits(item_based(inputs, head.inputs), head.outputs) + head.bias

    def step(users: Tensor) -> Tensor:
        x = seen[users]
        kept = x * (torch.rand(x.shape, generator=generator) >= config.dropout)
        return softmax_loss(logits_of(kept), target[users])

    users_t = torch.from_numpy(task.users)

    def validation_logits() -> Tensor:
        return logits_of(seen[users_t])

    epochs, best_epoch, curve = _fit(
        [*head.parameters(), *layers], step, validation_logits, task, fit.num_users, config, generator, "dense"
    )
    with torch.no_grad():
        (weight, pop), weight_curve = choose_weight(
            task,
            validation_logits().numpy(),
            dense_rating_scores(model, users_t).numpy(),
            config.weight_grid,
            config.popularity_grid,
        )
    with torch.no_grad():
        model.rank_items = head.outputs.detach().clone()
        model.rank_item_bias = head.bias.detach() + popularity_bias(fit, pop)
        model.rank_weight = torch.tensor(float(weight))
        model.rank_users = item_based(history_matrices(fit if history is None else history, 1.0)[0], head.inputs)
    for p in layers:
        p.requires_grad_(False)
    result = RankResult(time.perf_counter() - start, epochs, best_epoch, weight, pop, curve, weight_curve)
    return model, result


# --- lstm -----------------------------------------------------------------------------------------------------


def sequence_tastes(model: SequenceLSTM, history: Interactions, window: int) -> tuple[Tensor, np.ndarray]:
    """The LSTM's taste after every prefix of every user's history, ``[n_users + 1, width + 1, d]``, and the
    left pads, so ``tastes[u, offsets[u] + k]`` summarises user u's first k ratings (zero past their end).

    The head draws a cut point per user and step, so it keeps them all: users x longest history, which holds
    ML-100K and ML-1M but not ML-25M (the evaluation and rating paths are linear, see `Histories.buckets`).
    """
    hist = history.to_histories(window)
    width = max(int(hist.ends.max(initial=0)), 1)
    width += (-width) % window
    tastes: Tensor | None = None
    with torch.inference_mode():
        for members in hist.buckets(np.arange(history.num_users + 1)):
            items, ratings, _ = hist.padded(members, min_width=1)
            taste = model.run(torch.from_numpy(items), torch.from_numpy(ratings))[0]
            if tastes is None:
                tastes = torch.zeros(history.num_users + 1, width + 1, taste.shape[-1])
            tastes[torch.from_numpy(members), : taste.shape[1]] = taste
    assert tastes is not None
    return tastes, hist.offsets


def lstm_rating_scores(model: SequenceLSTM, tastes: Tensor) -> Tensor:
    """The LSTM's [0,1]-scale rating score of every item from tastes ``[B, d + 1]``, without the taste's
    sequence-level bias (it shifts every item alike)."""
    return tastes[:, :-1] @ model.item_out.weight.t() + model.item_bias.weight.t()


def lstm_queries(model: SequenceLSTM, history: Interactions, window: int) -> Tensor:
    """Every user's ranking query after their whole `history` (`SequenceLSTM.rank_query`), ``[n_users + 1, .]``."""
    with torch.no_grad():
        tastes = user_tastes(model, history, window)
        seen = history_matrices(history, 1.0)[0]
        return model.rank_query(tastes, seen @ model.rank_in.weight, seen.sum(1, keepdim=True))


def train_lstm_head(
    model: SequenceLSTM,
    fit: Interactions,
    val: Interactions,
    config: RankConfig,
    generator: torch.Generator,
    window: int,
    *,
    history: Interactions | None = None,
) -> tuple[SequenceLSTM, RankResult]:
    """Fit the LSTM's head on its (frozen) tastes: each step a user's input is either their whole history or the
    prefix before a random cut point, with `dropout` of it hidden; the target is every other item of theirs.
    The query is the taste after the input's prefix through `rank_taste`, plus the item-based sum of `rank_in`;
    the served queries (`rank_users`) are those after each user's whole `history` (default `fit`). The served
    taste (`user_taste`) is the rating fit's (`training.models.train_lstm`), which the head leaves as it is."""
    start = time.perf_counter()
    task = RankingTask.build(fit, val)
    seen, target = history_matrices(fit, config.disliked_weight)
    model.rank_in = nn.Embedding(fit.num_items + 1, config.dim, padding_idx=0)
    nn.init.normal_(model.rank_in.weight, std=0.01)
    with torch.no_grad():
        model.rank_in.weight[0].zero_()
    model.rank_taste = nn.Linear(model.dim + 1, config.dim, bias=False)
    nn.init.zeros_(model.rank_taste.weight)
    outputs = nn.Parameter(torch.randn(fit.num_items + 1, config.dim) * 0.01)
    bias = nn.Parameter(torch.zeros(fit.num_items + 1))
    model.eval()
    with torch.no_grad():
        tastes, offsets_np = sequence_tastes(model, fit, window)
    offsets = torch.from_numpy(offsets_np)
    # position[u, i]: where item i comes in user u's history (time order); the catalog size where not rated.
    indptr, order = fit.user_histories()
    counts = torch.from_numpy(np.diff(indptr))
    rows = np.repeat(np.arange(fit.num_users + 1), np.diff(indptr))
    position = torch.full((fit.num_users + 1, fit.num_items + 1), fit.num_items + 1, dtype=torch.int64)
    position[torch.from_numpy(rows), torch.from_numpy(fit.item_ids[order])] = torch.from_numpy(
        np.arange(len(order)) - indptr[rows]
    )

    def logits_of(taste: Tensor, inputs: Tensor) -> Tensor:
        query = model.rank_taste(taste) + item_based(inputs, model.rank_in.weight)
        return query @ outputs.t() + bias

    def step(users: Tensor) -> Tensor:
        n = counts[users]
        cut = (torch.rand(len(users), generator=generator) * n).long() + 1  # 1..n items before the cut
        whole = torch.rand(len(users), generator=generator) < config.full_history
        cut = torch.where(whole, n, cut)
        before = position[users] < cut.unsqueeze(1)
        kept = before & (torch.rand(before.shape, generator=generator) >= config.dropout)
        taste = tastes[users, offsets[users] + cut]
        goal = target[users] if config.target_inputs else target[users] * ~kept
        if not config.use_taste:
            taste = taste * 0
        return softmax_loss(logits_of(taste, kept.float()), goal)

    users_t = torch.from_numpy(task.users)
    whole_tastes = tastes[torch.arange(len(offsets)), offsets + counts]

    def validation_logits() -> Tensor:
        return logits_of(whole_tastes[users_t], seen[users_t])

    params = [outputs, bias, model.rank_in.weight, model.rank_taste.weight]
    epochs, best_epoch, curve = _fit(params, step, validation_logits, task, fit.num_users, config, generator, "lstm")
    with torch.no_grad():
        (weight, pop), weight_curve = choose_weight(
            task,
            validation_logits().numpy(),
            lstm_rating_scores(model, whole_tastes[users_t]).numpy(),
            config.weight_grid,
            config.popularity_grid,
        )
        model.rank_items = outputs.detach().clone()
        model.rank_item_bias = (bias.detach() + popularity_bias(fit, pop)).unsqueeze(1)
        model.rank_weight = torch.tensor(float(weight))
    for p in params:
        p.requires_grad_(False)
    model.rank_users = lstm_queries(model, fit if history is None else history, window)
    result = RankResult(time.perf_counter() - start, epochs, best_epoch, weight, pop, curve, weight_curve)
    return model, result


def rank_hyperparameters(config: RankConfig) -> dict[str, Any]:
    """The head's hyperparameters as flat manifest entries (``rank_`` prefix; the weight grid left out)."""
    return {f"rank_{k}": v for k, v in asdict(config).items() if not k.endswith("_grid")}
