"""The training job: data -> splits -> fit each model -> evaluate -> export."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from app.artifacts import DEFAULT_KEEP_VERSIONS, Metrics
from training.data import Interactions, MovieLens, validation_split
from training.evaluate import error_metrics, predict_pairs, predict_sequences, user_tastes
from training.export import TrainedModel, check_export, export_store
from training.fit import FitResult
from training.models import (
    SEQUENCE_LENGTH,
    Config,
    DenseConfig,
    LSTMConfig,
    MFConfig,
    hyperparameters,
    train_dense,
    train_lstm,
    train_mf,
)
from training.networks import SequenceLSTM
from training.ranking import blended_ranking, model_scorer

log = logging.getLogger(__name__)

MODELS = ("mf", "dense", "lstm")
VALIDATION_FRACTION = 0.05  # of the training split, for early stopping only

Trainer = Callable[[Interactions, Interactions, "Config", torch.Generator, int | None], tuple[nn.Module, FitResult]]
TRAINERS: dict[str, tuple[Callable[[], Config], Trainer]] = {
    "mf": (MFConfig, train_mf),  # type: ignore[dict-item]
    "dense": (DenseConfig, train_dense),  # type: ignore[dict-item]
    "lstm": (LSTMConfig, train_lstm),  # type: ignore[dict-item]
}


@dataclass
class Outcome:
    model: TrainedModel
    fit: FitResult
    test: Metrics | None


def evaluate(name: str, network: nn.Module, train: Interactions, test: Interactions, split: str) -> Metrics:
    """Held-out error of a fitted network; the LSTM predicts each test pair from earlier training ratings."""
    if name == "lstm":
        predicted = predict_sequences(network, train, test, SEQUENCE_LENGTH)
    else:
        predicted = predict_pairs(network, test)
    return Metrics(split=split, n=len(test), **error_metrics(predicted, test.ratings))


def validation_parts(train: Interactions, seed: int) -> tuple[Interactions, Interactions]:
    """``(fit, validation)``: the split of `train` that `train_one` fits and early-stops on."""
    return validation_split(train, VALIDATION_FRACTION, np.random.default_rng(seed))


def train_one(name: str, train: Interactions, seed: int, max_epochs: int | None) -> tuple[nn.Module, FitResult]:
    """Fit one model on `train`, early-stopping on a validation split carved from it."""
    _, trainer = TRAINERS[name]
    fit_data, val = validation_parts(train, seed)
    generator = torch.Generator().manual_seed(seed)
    # max_epochs also caps the MF that dense and lstm pretrain from (it ran its full 100 epochs under --epochs 1).
    network, result = trainer(fit_data, val, config_for(name, max_epochs), generator, max_epochs)
    if isinstance(network, SequenceLSTM):
        # Serve each user's taste after their whole split, validation ratings included (histories.npz has them).
        with torch.inference_mode():
            network.user_taste.copy_(user_tastes(network, train, SEQUENCE_LENGTH))
    return network, result


def config_for(name: str, max_epochs: int | None) -> Config:
    """The hyperparameters `train_one` uses, as recorded in the manifest."""
    config = TRAINERS[name][0]()
    return replace(config, max_epochs=max_epochs) if max_epochs else config


def rank(
    name: str, network: nn.Module, train: Interactions, test: Interactions, seed: int
) -> tuple[float, dict[str, float]]:
    """The popularity weight chosen on `train_one`'s validation split, and test ranking metrics with it."""
    fit_data, val = validation_parts(train, seed)
    result = blended_ranking(model_scorer(name, network), fit=fit_data, validation=val, train=train, test=test)
    return result.weight, result.as_metrics()


def run(
    data: MovieLens,
    *,
    split: str,
    models: tuple[str, ...] = MODELS,
    out: Path | None,
    seed: int = 0,
    max_epochs: int | None = None,
    eval_split: str | None = "u1",
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
) -> list[Outcome]:
    """Train `models` on `split` and export them to `out`.

    Parameters
    ----------
    split : a canonical split (metrics on its test part) or ``full`` (all ratings; the metrics recorded are
        then those of the same recipe trained on `eval_split`'s base and measured on its test part).
    out : model store directory, or None to skip export.
    keep_versions : store versions `out` keeps, for rollback (see `export_store`).
    """
    if out is not None:
        check_export(out, data=data, models=models)  # refuse before training, not after
    torch.manual_seed(seed)
    train, test = data.split(split)
    outcomes = []
    for name in models:
        network, result = train_one(name, train, seed, max_epochs)
        weight, ranking = rank(name, network, train, test, seed)
        metrics: Metrics | None = None
        if len(test):
            metrics = evaluate(name, network, train, test, f"{split}.base->{split}.test")
        elif eval_split:
            e_train, e_test = data.split(eval_split)
            e_net, _ = train_one(name, e_train, seed, max_epochs)
            metrics = evaluate(name, e_net, e_train, e_test, f"{eval_split}.base->{eval_split}.test")
            # The same recipe's ranking on the evaluation split, with the weight it chooses there.
            _, ranking = rank(name, e_net, e_train, e_test, seed)
        if metrics is not None:
            metrics = metrics.model_copy(update={"ranking": ranking})
        model = TrainedModel(
            name=name,
            network=network,
            hyperparameters=hyperparameters(config_for(name, max_epochs)),
            metrics=[metrics] if metrics else [],
            training_seconds=result.seconds,
            epochs=result.epochs,
            popularity_weight=weight,
        )
        outcomes.append(Outcome(model, result, metrics))
    if out is not None:
        export_store(out, [o.model for o in outcomes], data=data, train=train, split=split, keep=keep_versions)
    return outcomes
