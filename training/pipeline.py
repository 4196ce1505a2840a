"""The training job: data -> splits -> fit each model -> evaluate -> export."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.artifacts import DEFAULT_KEEP_VERSIONS, Metrics
from training import distributed, export
from training.data import Interactions, MovieLens, validation_split
from training.evaluate import error_metrics
from training.export import TrainedModel
from training.fit import FitResult
from training.models import Config, hyperparameters
from training.rank_heads import RankConfig, rank_hyperparameters
from training.ranking import RankingTask
from training.specs import MODELS, SPECS

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.05  # of the training split, for early stopping only


@dataclass
class Outcome:
    model: TrainedModel
    fit: FitResult
    test: Metrics | None


def evaluate(name: str, network: nn.Module, train: Interactions, test: Interactions, split: str) -> Metrics:
    """Held-out error of a fitted network, predicted as its spec says (the LSTM: each test pair from the
    training ratings before it)."""
    return heldout_metrics(SPECS[name].predict(network, train, test), train, test, split)


def heldout_metrics(predicted: np.ndarray, train: Interactions, test: Interactions, split: str) -> Metrics:
    """`Metrics` of the stars `predicted` for `test`, on the rating scale of `train`."""
    span = train.rating_max - train.rating_min
    return Metrics(split=split, n=len(test), **error_metrics(predicted, test.ratings, span))


def validation_parts(train: Interactions, seed: int) -> tuple[Interactions, Interactions]:
    """``(fit, validation)``: the split of `train` that `train_one` fits and early-stops on."""
    return validation_split(train, VALIDATION_FRACTION, np.random.default_rng(seed))


def train_one(name: str, train: Interactions, seed: int, max_epochs: int | None) -> tuple[nn.Module, FitResult]:
    """Fit one model on `train` -- its rating objective, then its ranking head -- early-stopping both on a
    validation split carved from it. ``FitResult.seconds`` counts both; ``FitResult.ranking`` is the head's."""
    spec = SPECS[name]
    fit_data, val = validation_parts(train, seed)
    generator = torch.Generator().manual_seed(seed)
    # Serve each user's vectors after their whole split, validation ratings included (histories.npz has them).
    # max_epochs also caps the MF that dense and lstm pretrain from (it ran its full 100 epochs under --epochs 1).
    network, result = spec.fit(fit_data, val, config_for(name, max_epochs), generator, max_epochs, history=train)
    _, ranked = spec.fit_head(network, fit_data, val, rank_config_for(name, max_epochs), generator, history=train)
    result.seconds += ranked.seconds
    result.ranking = ranked
    return network, result


def config_for(name: str, max_epochs: int | None) -> Config:
    """The hyperparameters `train_one` uses for the rating objective, as recorded in the manifest."""
    config = SPECS[name].config()
    return replace(config, max_epochs=max_epochs) if max_epochs else config


def rank_config_for(name: str, max_epochs: int | None) -> RankConfig:
    """The ranking head's hyperparameters `train_one` uses."""
    config = SPECS[name].rank_config
    return replace(config, max_epochs=max_epochs) if max_epochs else config


def all_hyperparameters(name: str, max_epochs: int | None) -> dict[str, Any]:
    return hyperparameters(config_for(name, max_epochs)) | rank_hyperparameters(rank_config_for(name, max_epochs))


def rank(name: str, network: nn.Module, train: Interactions, test: Interactions) -> dict[str, float]:
    """Test ranking metrics of the served score (`rank_all` after the whole training split) beside popularity
    on the same users; empty when no test user has a relevant item."""
    task = RankingTask.build(train, test)
    if len(task.users) == 0:
        return {}
    out = task.evaluate(SPECS[name].scorer(network)(train, task.users), 0.0)
    out.update({f"popularity_{k}": v for k, v in task.evaluate_popularity().items()})
    return out


def run(
    data: MovieLens,
    *,
    split: str,
    models: tuple[str, ...] = MODELS,
    out: Path | None,
    seed: int = 0,
    max_epochs: int | None = None,
    eval_split: str | None = "u1",
    split_seed: int = 0,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
) -> list[Outcome]:
    """Train `models` on `split` and export them to `out`.

    Parameters
    ----------
    split : a canonical split (metrics on its test part) or ``full`` (all ratings; the metrics recorded are
        then those of the same recipe trained on `eval_split`'s base and measured on its test part).
    out : model store directory, or None to skip export. Under ``torchrun`` every rank trains (each on its
        share of every minibatch, `training.distributed`) and evaluates; rank 0 alone exports.
    keep_versions : store versions `out` keeps, for rollback (see `export_store`).
    """
    train, test = data.split(split, split_seed)
    if out is not None:  # what the store will record, checked before training: a refusal costs no training
        catalog, dataset = export.catalog(data), export.dataset_info(data, train, split)
        export.check_export(out, catalog=catalog, dataset=dataset, models=models)
    torch.manual_seed(seed)
    outcomes = []
    for name in models:
        network, result = train_one(name, train, seed, max_epochs)
        ranking = rank(name, network, train, test)
        metrics: Metrics | None = None
        if len(test):
            metrics = evaluate(name, network, train, test, f"{split}.base->{split}.test")
        elif eval_split:
            e_train, e_test = data.split(eval_split, split_seed)
            e_net, _ = train_one(name, e_train, seed, max_epochs)
            metrics = evaluate(name, e_net, e_train, e_test, f"{eval_split}.base->{eval_split}.test")
            # The same recipe's ranking on the evaluation split.
            ranking = rank(name, e_net, e_train, e_test)
        if metrics is not None:
            metrics = metrics.model_copy(update={"ranking": ranking})
        model = TrainedModel(
            name=name,
            network=network,
            hyperparameters=all_hyperparameters(name, max_epochs)
            | ({"rank_popularity_weight": result.ranking.popularity_weight} if result.ranking else {}),
            metrics=[metrics] if metrics else [],
            training_seconds=result.seconds,
            epochs=result.epochs,
            rank_weight=result.ranking.weight if result.ranking else 0.0,
            world_size=distributed.world_size(),
        )
        outcomes.append(Outcome(model, result, metrics))
    if out is not None and distributed.is_primary():  # every rank holds the same networks; one writes them
        models_out = [o.model for o in outcomes]
        export.export_store(out, models_out, catalog=catalog, dataset=dataset, train=train, keep=keep_versions)
    return outcomes
