"""The three networks, as `nn.Module`s that `torch.jit.script` compiles as they are.

Each `forward` works on the tutorial's [0,1] rating scale ((r - 1) / 4) and is what training fits. The exported
methods (`predict`, `score_all`/`score_next`, `item_embeddings`) are the serving contract described in
`app/artifacts.py`: they return stars clamped to [1, 5]. Index 0 of every embedding is padding / unknown.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn


def to_stars(scaled: Tensor) -> Tensor:
    return (scaled * 4.0 + 1.0).clamp(1.0, 5.0)


def init_normal(embedding: nn.Embedding, std: float) -> None:
    """Normal weights, with the padding row left at zero (`normal_` would overwrite it, and `padding_idx`
    then freezes that random row)."""
    nn.init.normal_(embedding.weight, std=std)
    if embedding.padding_idx is not None:
        with torch.no_grad():
            embedding.weight[embedding.padding_idx].zero_()


class MatrixFactorization(nn.Module):
    """Dot product of user and item embeddings plus global, user and item biases."""

    def __init__(self, n_users: int, n_items: int, dim: int, global_mean: float = 0.5) -> None:
        super().__init__()
        # Sparse gradients: a minibatch updates only the rows it touches, so a step costs the same whatever
        # the number of users and items (dense Adam would sweep every row of every table on every step).
        self.user_factors = nn.Embedding(n_users + 1, dim, sparse=True)
        self.item_factors = nn.Embedding(n_items + 1, dim, padding_idx=0, sparse=True)
        self.user_bias = nn.Embedding(n_users + 1, 1, sparse=True)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0, sparse=True)
        self.global_bias = nn.Parameter(torch.tensor([global_mean]))
        for emb in (self.user_factors, self.item_factors):
            init_normal(emb, std=0.01)
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

    # --- ranking contract (issue 13), thin stand-ins over the rating head --------------------------------------
    # The ranking rewrite replaces these bodies; retrieval (app/retrieval.py) needs only the signatures and
    # rank_all(user) == rank_item_vectors() @ rank_user_vector(user). The item bias is the last column, so the
    # ranking score is one inner product (the user bias and global mean do not change a user's order); in stars
    # (to_stars' slope), so today's popularity blend, in stars, adds on the same scale.
    @torch.jit.export
    def rank_item_vectors(self) -> Tensor:
        return torch.cat([self.item_factors.weight, self.item_bias.weight], dim=1) * 4.0

    @torch.jit.export
    def rank_user_vector(self, user: Tensor) -> Tensor:
        return torch.cat([self.user_factors(user).squeeze(0), torch.ones(1)])

    @torch.jit.export
    def rank_all(self, user: Tensor) -> Tensor:
        return self.rank_item_vectors() @ self.rank_user_vector(user)

    # --- end of ranking contract stand-ins ----------------------------------------------------------------------


class FeaturedMF(nn.Module):
    """MF whose user and item vectors and biases also sum side-feature embeddings (SVDFeature, Chen et al. 2012):
    a user's age band, gender and occupation, the mean over an item's genres. Training only: the features of a
    user or item never change, so `fold` adds them into a plain `MatrixFactorization`'s rows for export.
    """

    user_weights: Tensor
    item_weights: Tensor

    def __init__(self, mf: MatrixFactorization, user_features: Tensor, item_features: Tensor, n_uf: int, n_if: int):
        super().__init__()
        self.mf = mf
        dim = mf.user_factors.embedding_dim
        # Feature weights per user and item (multi-hot; an item's genres share 1): each row's feature part is
        # then one small matrix product, whose cost per step depends on the number of features only.
        self.register_buffer("user_weights", _multi_hot(user_features, n_uf, mean=False))
        self.register_buffer("item_weights", _multi_hot(item_features, n_if, mean=True))
        # One column per factor, plus the bias; zero at first, so training starts as plain MF does.
        self.user_side = nn.Linear(n_uf, dim + 1, bias=False)
        self.item_side = nn.Linear(n_if, dim + 1, bias=False)
        nn.init.zeros_(self.user_side.weight)
        nn.init.zeros_(self.item_side.weight)

    def sides(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """The feature parts ``[B, dim + 1]`` of the users' and items' vectors, the bias last."""
        return self.user_side(self.user_weights[users]), self.item_side(self.item_weights[items])

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self.score(users, items, *self.sides(users, items))

    def score(self, users: Tensor, items: Tensor, user_side: Tensor, item_side: Tensor) -> Tensor:
        p = self.mf.user_factors(users) + user_side[:, :-1]
        q = self.mf.item_factors(items) + item_side[:, :-1]
        bias = self.mf.user_bias(users).squeeze(-1) + self.mf.item_bias(items).squeeze(-1)
        return (p * q).sum(-1) + bias + user_side[:, -1] + item_side[:, -1] + self.mf.global_bias

    def predict(self, users: Tensor, items: Tensor) -> Tensor:
        return to_stars(self.forward(users, items))

    @torch.no_grad()
    def fold(self) -> MatrixFactorization:
        """The plain MF that predicts as this one does (up to float rounding); its tables are changed in place."""
        users = torch.arange(self.mf.user_factors.num_embeddings)
        items = torch.arange(self.mf.item_factors.num_embeddings)
        user_side, item_side = self.sides(users, items)
        self.mf.user_factors.weight += user_side[:, :-1]
        self.mf.item_factors.weight += item_side[:, :-1]
        self.mf.user_bias.weight += user_side[:, -1:]
        self.mf.item_bias.weight += item_side[:, -1:]
        return self.mf


def _multi_hot(features: Tensor, n: int, mean: bool) -> Tensor:
    """``[rows, n]`` weights from feature indices ``[rows, k]`` (1..n; 0 is padding), rows summing to 1 if `mean`."""
    weights = torch.zeros(len(features), n + 1).scatter_(1, features, 1.0)[:, 1:]
    return weights / weights.sum(-1, keepdim=True).clamp(min=1) if mean else weights


class DenseNet(nn.Module):
    """Concatenated user and item embeddings -> ReLU hidden layers -> one rating, plus user and item biases.

    The biases carry the strong main effects (generous users, loved films), so the hidden layers spend their
    capacity on the interaction.
    """

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
        self.user_bias = nn.Embedding(n_users + 1, 1)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        for emb in (self.user_emb, self.item_emb):
            init_normal(emb, std=0.05)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)
        self.first = nn.Linear(2 * dim, hidden[0])
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        for a, b in itertools.pairwise(hidden):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden[-1], 1))
        self.rest = nn.Sequential(*layers)
        self.input_dropout = nn.Dropout(dropout)
        nn.init.constant_(layers[-1].bias, global_mean)  # type: ignore[arg-type]

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        x = torch.cat([self.user_emb(users), self.item_emb(items)], dim=-1)
        out = self.rest(self.first(self.input_dropout(x))).squeeze(-1)
        return out + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)

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
        out = self.rest(item_half + user_half).squeeze(-1) + self.item_bias.weight.squeeze(-1)
        return to_stars(out + self.user_bias(user).squeeze())

    @torch.jit.export
    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight

    # --- ranking contract (issue 13), thin stand-in over the rating head; the ranking rewrite replaces it -------
    @torch.jit.export
    def rank_all(self, user: Tensor) -> Tensor:
        return self.score_all(user)

    # --- end of ranking contract stand-ins ----------------------------------------------------------------------


class SequenceLSTM(nn.Module):
    """An LSTM over a user's items in time order, with the ratings of earlier positions as input.

    The state after positions < k becomes a taste vector that is matched against item k's embedding, so the
    prediction at k depends on items <= k and ratings < k only, and scoring every candidate next item is one
    matrix product. Beside the LSTM state, the taste carries running sums over the same causal prefix, as in
    Koren's asymmetric SVD: rating-weighted and plain item vectors of the items seen so far, and the mean
    rating. An LSTM learns to accumulate such sums over hundreds of steps only slowly (alone it reached RMSE
    0.974 on u1, worse than user and item biases); the sums give it the user's stable taste and leave it the
    drift.

    Training runs each user's whole history in windows of `SEQUENCE_LENGTH` steps, carrying the state across
    windows, so a user's taste is the state after their whole history, exported as `user_taste` (one row a
    user). An anonymous sequence starts from the zero state, as every user's history does in training.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        hidden: int,
        dropout: float = 0.0,
        global_mean: float = 0.5,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.hidden = hidden
        self.dropout = nn.Dropout(dropout)
        self.item_in = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.item_out = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.item_rated = nn.Embedding(n_items + 1, dim, padding_idx=0)  # weighted by the centred rating
        self.item_seen = nn.Embedding(n_items + 1, dim, padding_idx=0)  # whether or not rated
        self.lstm = nn.LSTM(dim + 2, hidden, batch_first=True)
        self.taste = nn.Linear(hidden + 2, dim + 1)  # taste vector and a sequence-level bias
        self.prior_count = 3.0  # shrinks the running mean of few ratings towards 0
        self.global_bias = nn.Parameter(torch.tensor([global_mean]))
        # Taste after each user's whole training history; filled in by training before export.
        self.register_buffer("user_taste", torch.zeros(n_users + 1, dim + 1))
        for emb in (self.item_in, self.item_out):
            init_normal(emb, std=0.05)
        for emb in (self.item_bias, self.item_rated, self.item_seen):
            nn.init.zeros_(emb.weight)

    def run(
        self, items: Tensor, ratings: Tensor, state: tuple[Tensor, Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Taste vectors [B, L + 1, dim + 1] (position k summarises items < k and ratings < k; the last one
        the whole input) and the final state: the LSTM's (h, c) and the running sums."""
        known = (ratings > 0).to(torch.float32)
        seen = (items > 0).to(torch.float32)
        centred = ((ratings - 1.0) / 4.0 - 0.5) * known
        x = torch.cat([self.dropout(self.item_in(items)), centred.unsqueeze(-1), known.unsqueeze(-1)], dim=-1)
        if state is None:
            zeros = torch.zeros(1, items.shape[0], self.hidden)
            state = (zeros, zeros, torch.zeros(items.shape[0], 2 * self.dim + 3))
        out, (h, c) = self.lstm(x, (state[0], state[1]))
        parts = [
            self.item_rated(items) * centred.unsqueeze(-1),
            self.item_seen(items),
            centred.unsqueeze(-1),
            known.unsqueeze(-1),
            seen.unsqueeze(-1),
        ]
        sums = torch.cumsum(torch.cat(parts, dim=-1), dim=1) + state[2].unsqueeze(1)
        prefix = torch.cat([state[2].unsqueeze(1), sums], dim=1)  # [B, L + 1, .]: before each position
        d = self.dim
        n_known, n_seen = prefix[..., 2 * d + 1 : 2 * d + 2], prefix[..., 2 * d + 2 :]
        mean = prefix[..., 2 * d : 2 * d + 1] / (n_known + self.prior_count)
        hidden = torch.cat([state[0][-1].unsqueeze(1), out], dim=1)
        taste = self.taste(torch.cat([self.dropout(hidden), mean, torch.log1p(n_known) / 5.0], dim=-1))
        stable = prefix[..., :d] / (n_known + 1.0).sqrt() + prefix[..., d : 2 * d] / (n_seen + 1.0).sqrt()
        taste = taste + torch.cat([stable, torch.zeros_like(mean)], dim=-1)
        return taste, (h, c, sums[:, -1])

    def score_taste(self, taste: Tensor, items: Tensor) -> Tensor:
        """[0,1]-scale prediction of `items` for taste vectors of the same leading shape."""
        dot = (taste[..., :-1] * self.item_out(items)).sum(-1)
        return dot + taste[..., -1] + self.item_bias(items).squeeze(-1) + self.global_bias

    def forward(self, items: Tensor, ratings: Tensor) -> Tensor:
        taste, _ = self.run(items, ratings)
        return self.score_taste(taste[:, :-1], items)

    @torch.jit.export
    def predict(self, items: Tensor, ratings: Tensor) -> Tensor:
        return to_stars(self.forward(items, ratings))

    def _score_all(self, taste: Tensor) -> Tensor:
        scaled = self.item_out.weight @ taste[:-1] + taste[-1] + self.item_bias.weight.squeeze(-1)
        return to_stars(scaled + self.global_bias)

    @torch.jit.export
    def score_next(self, items: Tensor, ratings: Tensor) -> Tensor:
        taste, _ = self.run(items, ratings)
        return self._score_all(taste[0, -1])

    @torch.jit.export
    def score_all(self, user: Tensor) -> Tensor:
        return self._score_all(self.user_taste[user].squeeze(0))

    @torch.jit.export
    def item_embeddings(self) -> Tensor:
        return self.item_out.weight

    # --- ranking contract (issue 13), thin stand-ins over the rating head --------------------------------------
    # The ranking rewrite replaces these bodies. The taste's last entry is a per-sequence bias (it does not
    # change the order), so the query is the taste's item part and a 1 for the item-bias column; in stars, as mf's.
    @torch.jit.export
    def rank_item_vectors(self) -> Tensor:
        return torch.cat([self.item_out.weight, self.item_bias.weight], dim=1) * 4.0

    @torch.jit.export
    def rank_user_vector(self, user: Tensor) -> Tensor:
        return torch.cat([self.user_taste[user].squeeze(0)[:-1], torch.ones(1)])

    @torch.jit.export
    def rank_session_vector(self, items: Tensor, ratings: Tensor) -> Tensor:
        taste, _ = self.run(items, ratings)
        return torch.cat([taste[0, -1, :-1], torch.ones(1)])

    @torch.jit.export
    def rank_all(self, user: Tensor) -> Tensor:
        return self.rank_item_vectors() @ self.rank_user_vector(user)

    @torch.jit.export
    def rank_next(self, items: Tensor, ratings: Tensor) -> Tensor:
        return self.rank_item_vectors() @ self.rank_session_vector(items, ratings)

    # --- end of ranking contract stand-ins ----------------------------------------------------------------------
