"""One declared spec per model: its kind, hyperparameters, fit steps, held-out prediction and ranking scorers.

The pipeline and the quality report look a model's behaviour up here by name (`SPECS`) rather than testing
names or network types, as RecBole's models declare a ``type`` and spotlight's estimators share ``fit`` and
``predict``. A new model is one `ModelSpec` in `SPECS` (and one `ModelContract` in `app.artifacts.MODELS`,
the store's contract, which fixes its kind and sequence length).

Both fit steps take the ratings the exported network serves as each user's history (``history``, the whole
training split in `training.pipeline.train_one`) as an explicit input, apart from the part they fit on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn

from app.artifacts import MODELS as CONTRACTS
from app.artifacts import SEQUENCE_LENGTH, ModelContract, ModelKind, ModelName
from training.data import Interactions
from training.evaluate import predict_pairs, predict_sequences
from training.fit import FitResult
from training.models import (
    Config,
    DenseConfig,
    LSTMConfig,
    MFConfig,
    train_dense,
    train_lstm,
    train_mf,
)
from training.rank_heads import RankConfig, RankResult, train_dense_head, train_lstm_head, train_mf_head
from training.ranking import Scorer, rank_scorer, rank_session_scorer

# The rating objective: ``fit(fit, val, config, generator, max_epochs, *, history) -> (network, FitResult)``
# fits on `fit` and early-stops on `val`; the network serves `history` as each user's past.
Fit = Callable[..., tuple[nn.Module, FitResult]]
# The ranking head, fitted in place on a network whose rating objective is fitted, its served user vectors
# folded from `history`: ``fit_head(network, fit, val, config, generator, *, history) -> (network, RankResult)``.
FitHead = Callable[..., tuple[nn.Module, RankResult]]
# (fitted network, the ratings it was fitted on, held-out pairs) -> predicted stars, one per held-out pair.
Predict = Callable[[nn.Module, Interactions, Interactions], np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    name: ModelName  # as in the store's contract (app.artifacts.MODELS) and on the command line
    config: type[Config]  # the rating objective's hyperparameters; its defaults are the chosen ones
    rank_config: RankConfig  # the ranking head's, chosen on u1.base validation
    fit: Fit
    fit_head: FitHead
    predict: Predict
    # Ranks known users (what GET /recommend serves): rank_all from the user vectors the network holds.
    scorer: Callable[[nn.Module], Scorer] = field(default=rank_scorer)
    # Ranks an anonymous session (what POST /recommend serves), for the models that take one.
    session_scorer: Callable[[nn.Module], Scorer] | None = None

    @property
    def contract(self) -> ModelContract:
        """What the store's contract fixes for this model (kind, sequence length, ...)."""
        return CONTRACTS[self.name]

    @property
    def kind(self) -> ModelKind:
        """``pair`` (a rating per (user, item) pair) or ``sequence`` (along a user's time-ordered history: a
        held-out rating from the ratings before it; it also serves anonymous sessions), as the contract says."""
        return self.contract.kind


def _history_unused(train: Callable[..., tuple[nn.Module, FitResult]]) -> Fit:
    """`train` as a `Fit`: mf and dense fit their user vectors as parameters, so `history` plays no part until
    their ranking heads."""

    def fit(
        fit: Interactions,
        val: Interactions,
        config: Config,
        generator: torch.Generator,
        max_epochs: int | None,
        *,
        history: Interactions,
    ) -> tuple[nn.Module, FitResult]:
        return train(fit, val, config, generator, max_epochs)

    return fit


def _predict_pairs(network: nn.Module, history: Interactions, heldout: Interactions) -> np.ndarray:
    return predict_pairs(network, heldout)


def _predict_sequences(network: nn.Module, history: Interactions, heldout: Interactions) -> np.ndarray:
    # Each held-out pair from the user's history ratings strictly before its time, as the service would.
    return predict_sequences(network, history, heldout, SEQUENCE_LENGTH)


MF = ModelSpec(
    name="mf",
    config=MFConfig,
    rank_config=RankConfig(),
    fit=_history_unused(train_mf),
    fit_head=train_mf_head,
    predict=_predict_pairs,
)
DENSE = ModelSpec(
    name="dense",
    config=DenseConfig,
    # u1 validation NDCG@10 (blended, before the popularity prior; 0.201 with it): 256 wide with 16 hidden 0.189,
    # 128 with 8 0.177 (at about 2/3 the time).
    rank_config=RankConfig(hidden=16),
    fit=_history_unused(train_dense),
    fit_head=train_dense_head,
    predict=_predict_pairs,
)
LSTM = ModelSpec(
    name="lstm",
    config=LSTMConfig,
    # u1 validation NDCG@10 (blended): 1.0 0.198, 0.8 0.198 -- a tie, and prefixes are what sessions and a
    # temporal split look like, so 0.8 (with target_inputs; without it 0.5 scored 0.154, 0.85 0.166, 1.0 0.176).
    rank_config=RankConfig(full_history=0.8),
    fit=train_lstm,
    fit_head=partial(train_lstm_head, window=SEQUENCE_LENGTH),
    predict=_predict_sequences,
    session_scorer=rank_session_scorer,
)

SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (MF, DENSE, LSTM)}
MODELS = tuple(SPECS)  # every model, in the order runs train and report them
