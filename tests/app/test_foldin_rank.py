"""The linear view of a module that exports ranking vectors (``rank_item_vectors``, ``rank_user_vector``):
batch ranking by their product, and a folded-in visitor's ranking vector (issue 18, ready for issue 13)."""

from __future__ import annotations

import dataclasses
import warnings
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor, nn

from app.artifacts import ModelEntry
from app.foldin import build_view
from app.handlers import PairHandler
from app.services.batch import score_users

N_USERS, N_ITEMS, DIM = 30, 40, 3


class RankingMF(nn.Module):
    """An MF whose ranking vectors are a linear function of its user factors, as a ranking head would be."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.users = nn.Parameter(torch.randn(N_USERS + 1, DIM, generator=g) * 0.3)
        items = torch.randn(N_ITEMS + 1, DIM, generator=g) * 0.3
        items[0] = 0.0
        self.items = nn.Parameter(items)
        self.bias = nn.Parameter(torch.randn(N_ITEMS + 1, generator=g) * 0.1)
        self.head = nn.Parameter(torch.randn(DIM, DIM + 1, generator=g))
        self.rank_items = nn.Parameter(torch.randn(N_ITEMS + 1, DIM + 1, generator=g))

    @torch.jit.export
    def score_all(self, user: Tensor) -> Tensor:
        return ((self.items @ self.users[user].squeeze(0) + self.bias + 0.5) * 4.0 + 1.0).clamp(1.0, 5.0)

    @torch.jit.export
    def item_embeddings(self) -> Tensor:
        return self.items

    @torch.jit.export
    def rank_item_vectors(self) -> Tensor:
        return self.rank_items

    @torch.jit.export
    def rank_user_vector(self, user: Tensor) -> Tensor:
        return (self.users[user] @ self.head).squeeze(0) + 1.0


def _view() -> tuple[torch.jit.ScriptModule, object]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        module = torch.jit.script(RankingMF().eval())
    empty = np.zeros(0, dtype=np.int64)
    # The view reads the module through its serving handler; an entry naming the model is all it needs here.
    entry = ModelEntry.model_construct(name="mf", kind="pair", sequence_length=None, version="mf-test")
    view = build_view(
        PairHandler(entry, module, np.zeros((N_ITEMS + 1, DIM), dtype=np.float32)),
        n_users=N_USERS,
        indptr=np.zeros(N_USERS + 2, dtype=np.int64),
        history_items=empty,
        history_ratings=empty.astype(np.float32),
    )
    return module, view


def test_the_view_carries_every_known_users_ranking_vector() -> None:
    module, view = _view()
    assert view.exact and view.rank is not None  # type: ignore[attr-defined]
    with torch.no_grad():
        expected = [module.rank_user_vector(torch.tensor([u])).numpy() for u in range(1, N_USERS + 1)]
    np.testing.assert_allclose(view.rank.users[1:], np.stack(expected), atol=1e-5)  # type: ignore[attr-defined]


def test_a_folded_in_known_user_gets_their_own_ranking_vector() -> None:
    module, view = _view()
    quiet = dataclasses.replace(view, noise=1e-9)  # type: ignore[type-var]
    user = 4
    with torch.no_grad():
        stars = module.score_all(torch.tensor([user])).numpy().astype(np.float64)
        expected = module.rank_user_vector(torch.tensor([user])).numpy()
    items = np.flatnonzero((stars > 1.01) & (stars < 4.99))
    items = items[items > 0]
    vector = quiet.rank_vector_of(quiet.fold_in(items, stars[items]))
    np.testing.assert_allclose(vector, expected, atol=1e-3)


def test_batch_ranking_is_the_product_of_ranking_vectors() -> None:
    module, view = _view()
    registry = SimpleNamespace(views={"mf": view}, n_items=N_ITEMS)
    loaded = SimpleNamespace(name="mf", module=module, rank_bonus=np.zeros(N_ITEMS + 1, dtype=np.float32))
    users = np.array([3, 1, 7])
    scores, stars, method = score_users(registry, loaded, users)  # type: ignore[arg-type]
    assert method == "matrix"
    with torch.no_grad():
        for row, user in enumerate(users.tolist()):
            rank = module.rank_item_vectors() @ module.rank_user_vector(torch.tensor([user]))
            np.testing.assert_allclose(scores[row, 1:], rank.numpy()[1:], rtol=1e-5, atol=1e-5)  # 0 is padding
            np.testing.assert_allclose(stars[row, 1:], module.score_all(torch.tensor([user])).numpy()[1:], atol=2e-3)
