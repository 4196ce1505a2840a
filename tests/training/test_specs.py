"""Tests for `training.specs`: one spec per model of the store's contract, and the explicit served history."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from app.artifacts import MODEL_NAMES, SEQUENCE_LENGTH, models_of_kind
from tests.training.conftest import synthetic_interactions
from training import models
from training.data import validation_split
from training.evaluate import user_tastes
from training.networks import SequenceLSTM
from training.pipeline import MODELS, config_for
from training.specs import SPECS


def test_every_model_of_the_contract_has_one_spec() -> None:
    assert tuple(SPECS) == MODELS == MODEL_NAMES
    assert all(spec.name == name for name, spec in SPECS.items())
    assert [name for name, spec in SPECS.items() if spec.kind == "sequence"] == ["lstm"]
    # Anonymous sessions (POST /recommend) are served by the sequence kind, as the contract has it.
    assert [name for name, spec in SPECS.items() if spec.session_scorer is not None] == models_of_kind("sequence")
    for name, spec in SPECS.items():
        assert isinstance(config_for(name, None), spec.config)


def test_the_lstm_fit_serves_the_history_it_is_given() -> None:
    # The served taste (score_all) is the state after `history`, not after the part of it the fit saw.
    data = synthetic_interactions(n=400)
    fit, val = validation_split(data, 0.2, np.random.default_rng(0))
    config = replace(SPECS["lstm"].config(), dim=4, hidden=8, batch_size=64)
    models._shared_pretraining.clear()
    network, _ = SPECS["lstm"].fit(fit, val, config, torch.Generator().manual_seed(0), 1, history=data)
    models._shared_pretraining.clear()
    assert isinstance(network, SequenceLSTM)
    served = network.user_taste.clone()
    assert torch.equal(served, user_tastes(network, data, SEQUENCE_LENGTH))
    assert not torch.allclose(served, user_tastes(network, fit, SEQUENCE_LENGTH))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_ranking_head_folds_the_served_users_from_the_history_it_is_given(name: str) -> None:
    data = synthetic_interactions(n=400)
    fit, val = validation_split(data, 0.2, np.random.default_rng(0))
    spec = SPECS[name]
    tiny = {"mf": {}, "dense": {"hidden": [8, 4]}, "lstm": {"hidden": 8}}[name]
    config = replace(spec.config(), dim=4, batch_size=64, **tiny)
    models._shared_pretraining.clear()
    network, _ = spec.fit(fit, val, config, torch.Generator().manual_seed(0), 1, history=data)
    models._shared_pretraining.clear()
    head = replace(spec.rank_config, dim=8, max_epochs=2, eval_every=1)
    _, on_data = spec.fit_head(network, fit, val, head, torch.Generator().manual_seed(0), history=data)
    served = network.rank_users.clone()
    spec.fit_head(network, fit, val, head, torch.Generator().manual_seed(0), history=fit)
    assert on_data.epochs == 2
    assert served.shape == network.rank_users.shape
    # Users with validation ratings are served differently once those ratings are part of their history.
    changed = np.unique(val.user_ids)
    assert not torch.allclose(served[changed], network.rank_users[changed])
