"""The three networks, as `nn.Module`s that `torch.jit.script` compiles as they are.

Each `forward` works on the tutorial's [0,1] rating scale ((r - 1) / 4) and is what training fits. The exported
methods (`predict`, `score_all`/`score_next`, `item_embeddings`) are the serving contract described in
`app/artifacts.py`: they return stars clamped to [1, 5]. Index 0 of every embedding is padding / unknown.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def to_stars(scaled: Tensor) -> Tensor:
    return (scaled * 4.0 + 1.0).clamp(1.0, 5.0)


class MatrixFactorization(nn.Module):
    """Dot product of user and item embeddings plus global, user and item biases."""

    def __init__(self, n_users: int, n_items: int, dim: int, global_mean: float = 0.5) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(n_users + 1, dim)
        self.item_factors = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.user_bias = nn.Embedding(n_users + 1, 1)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.global_bias = nn.Parameter(torch.tensor([global_mean]))
        for emb in (self.user_factors, self.item_factors):
            nn.init.normal_(emb.weight, std=0.01)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        dot = (self.user_factors(users) * self.item_factors(items)).sum(-1)
        return dot + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + self.global_bias

    @torch.jit.export
    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        return to_stars(self.forward(users, items))

    @torch.jit.export
    def score_all(self, user: Tensor) -> Tensor:
        p = self.user_factors(user)  # [1, d]
        scaled = self.item_factors.weight @ p.squeeze(0) + self.item_bias.weight.squeeze(-1)
        return to_stars(scaled + self.user_bias(user).squeeze() + self.global_bias)

    @torch.jit.export
    def item_embeddings(self) -> Tensor:
        return self.item_factors.weight


class DenseNet(nn.Module):
    """Concatenated user and item embeddings -> ReLU hidden layers -> one rating."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        hidden: list[int],
        dropout: float,
        global_mean: float = 0.5,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.user_emb = nn.Embedding(n_users + 1, dim)
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        for emb in (self.user_emb, self.item_emb):
            nn.init.normal_(emb.weight, std=0.05)
        self.first = nn.Linear(2 * dim, hidden[0])
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        for a, b in zip(hidden[:-1], hidden[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden[-1], 1))
        self.rest = nn.Sequential(*layers)
        self.input_dropout = nn.Dropout(dropout)
        nn.init.constant_(layers[-1].bias, global_mean)  # type: ignore[arg-type]

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        x = torch.cat([self.user_emb(users), self.item_emb(items)], dim=-1)
        return self.rest(self.first(self.input_dropout(x))).squeeze(-1)

    @torch.jit.export
    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        return to_stars(self.forward(users, items))

    @torch.jit.export
    def score_all(self, user: Tensor) -> Tensor:
        # The first layer on a concatenation is a sum of a user half and an item half: compute the user half
        # once instead of repeating the user's embedding for every item.
        w = self.first.weight
        user_half = self.user_emb(user) @ w[:, : self.dim].t() + self.first.bias  # [1, h]
        item_half = self.item_emb.weight @ w[:, self.dim :].t()  # [n_items + 1, h]
        return to_stars(self.rest(item_half + user_half).squeeze(-1))

    @torch.jit.export
    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight


class SequenceLSTM(nn.Module):
    """An LSTM over a user's items in time order, with the ratings of earlier positions as input.

    The state after positions < k becomes a taste vector that is matched against item k's embedding, so the
    prediction at k depends on items <= k and ratings < k only, and scoring every candidate next item is one
    matrix product.
    """

    def __init__(self, n_items: int, dim: int, hidden: int, global_mean: float = 0.5) -> None:
        super().__init__()
        self.item_in = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.item_out = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.lstm = nn.LSTM(dim + 2, hidden, batch_first=True)
        self.taste = nn.Linear(hidden, dim + 1)  # taste vector and a sequence-level bias
        self.global_bias = nn.Parameter(torch.tensor([global_mean]))
        for emb in (self.item_in, self.item_out):
            nn.init.normal_(emb.weight, std=0.05)
        nn.init.zeros_(self.item_bias.weight)

    def context(self, items: Tensor, ratings: Tensor) -> Tensor:
        """Taste vectors [B, L, dim + 1]: position k summarises items < k and ratings < k."""
        known = (ratings > 0).to(torch.float32)
        centred = ((ratings - 1.0) / 4.0 - 0.5) * known
        x = torch.cat([self.item_in(items), centred.unsqueeze(-1), known.unsqueeze(-1)], dim=-1)
        out, _ = self.lstm(x)
        shifted = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)
        return self.taste(shifted)

    def forward(self, items: Tensor, ratings: Tensor) -> Tensor:
        t = self.context(items, ratings)
        q = self.item_out(items)
        dot = (t[..., :-1] * q).sum(-1)
        return dot + t[..., -1] + self.item_bias(items).squeeze(-1) + self.global_bias

    @torch.jit.export
    def predict(self, items: Tensor, ratings: Tensor) -> Tensor:
        return to_stars(self.forward(items, ratings))

    @torch.jit.export
    def score_next(self, items: Tensor, ratings: Tensor) -> Tensor:
        # Append a placeholder position: its taste vector is the state after the whole context.
        pad = torch.zeros_like(items[:, :1])
        t = self.context(torch.cat([items, pad], 1), torch.cat([ratings, pad.to(ratings.dtype)], 1))[0, -1]
        scaled = self.item_out.weight @ t[:-1] + t[-1] + self.item_bias.weight.squeeze(-1) + self.global_bias
        return to_stars(scaled)

    @torch.jit.export
    def item_embeddings(self) -> Tensor:
        return self.item_out.weight
