"""The ranking contract's inner-product form (issue 13), which approximate retrieval relies on:
``rank_all(user) == rank_item_vectors() @ rank_user_vector(user)`` for mf and the LSTM (and ``rank_next``
from ``rank_session_vector`` for the LSTM), in eager mode and through TorchScript; dense exports ``rank_all``."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import N_ITEMS, N_USERS, synthetic_networks
from training.export import script


@pytest.mark.parametrize("name", ["mf", "lstm"])
@torch.no_grad()
def test_rank_all_is_one_inner_product(name: str) -> None:
    network = synthetic_networks()[name]
    for module in (network, script(network)):
        vectors = module.rank_item_vectors()
        assert vectors.shape[0] == N_ITEMS + 1
        for user in (1, 7, N_USERS):
            users = torch.tensor([user])
            query = module.rank_user_vector(users)
            torch.testing.assert_close(module.rank_all(users), vectors @ query)
            assert float(query[-1]) == 1.0  # the item-only column is added as is


@torch.no_grad()
def test_rank_next_is_one_inner_product() -> None:
    network = synthetic_networks()["lstm"]
    items = torch.tensor([[0, 0, 0, 0, 0, 3, 9, 27, 4]])
    ratings = torch.tensor([[0, 0, 0, 0, 0, 4.0, 2.0, 5.0, 0]])
    for module in (network, script(network)):
        query = module.rank_session_vector(items, ratings)
        torch.testing.assert_close(module.rank_next(items, ratings), module.rank_item_vectors() @ query)
