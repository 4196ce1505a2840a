"""Linear views of the loaded models, computed once at load: batched scoring and folding in new users.

A model store serves the users it was trained on. Two features need more than one ``score_all`` call per user:
scoring a thousand known users at once (`POST /recommend/batch`, ``python -m app.batch``) and scoring a visitor
who is in no table (`POST /recommend` with ``model=mf|dense``: a few rated films in, a personalised list out).
Both use the same object, a `LinearView` per model: every known user's predicted stars written as

    stars(u, i) = clip(offset[i] + basis[i] · coef[u], low, high)

with ``basis`` ``[n_items + 1, r]`` and ``coef`` ``[n_users + 1, r]``, numpy arrays built here from the
module's public contract only (``score_all`` and ``item_embeddings``, called through its `app.handlers`
handler), so nothing depends on how a module stores its weights.

- **mf and lstm** (``linear`` in their `app.artifacts.MODELS` contract) are exactly linear in
  ``[item_embeddings(), 1]``: MF's score is ``q_i · p_u + b_i + b_u + g`` and the LSTM's
  ``item_out_i · taste_u + b_i + taste_bias_u + g``. `build_view` recovers ``coef`` and ``offset`` (the
  item biases, up to an equivalent re-parametrisation) from every known user's ``score_all`` by least
  squares, treating stars clamped at 1 or 5 as unknown (hard-impute), and *verifies* the result
  reproduces ``score_all`` (``exact``). Batch scoring is then one matrix product.
- **dense** is not linear in any item vectors (a ReLU network on the user and item embeddings). Its view is
  the network's own best rank-r linear approximation over the known users: the leading singular directions of
  its centred prediction matrix (r = embedding width + 1, as for MF). It is used to fold in new users only;
  batch scoring of known dense users stays a ``score_all`` loop, because the contract gives dense no batched
  method and an approximation must not stand in for a known user's exact scores.

Folding in is Bayesian linear regression with an empirical prior (ALS's user step with a fitted ridge): the
known users' coefficients give a Gaussian prior (mean, covariance), the training ratings' residual variance
around the model's own predictions gives the noise, and a visitor's coefficient is the posterior mean given
their rated items. No rated items gives the average known user; many give a user close to how the model
would have fitted them. There is no tuned hyperparameter: both scales are measured on the training data.

Ranking vectors: a model whose contract has ``rank_item_vectors() -> [n_items + 1, d]`` and
``rank_user_vector(user) -> [d]`` (inner-product ranking) gets a `RankView` as well: batch ranking is
``rank_user[users] @ rank_items.T``, and a folded-in user's ranking vector is the known users' linear
regression of ranking vector on rating coefficient, applied to the folded-in coefficient (the conditional mean
of a joint Gaussian over known users), so no score scale has to be guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from app.handlers import ModelHandler

log = logging.getLogger(__name__)

CLAMP_EPS = 1e-4  # a prediction this near the scale's ends may have been clamped: its true value is unknown
EXACT_TOLERANCE = 2e-3  # stars; a view reproducing score_all to this is used in place of it
IMPUTE_ROUNDS = 200  # hard-impute rounds at most; a few suffice unless many predictions are clamped
CHUNK_USERS = 4096  # score_all rows gathered per block (bounds memory to CHUNK_USERS x n_items floats)


@dataclass(frozen=True, eq=False)
class RankView:
    """Inner-product ranking vectors of every known user and item, and how to derive a new user's."""

    items: np.ndarray  # [n_items + 1, d] rank_item_vectors()
    users: np.ndarray  # [n_users + 1, d] rank_user_vector(u), row 0 zero
    mean: np.ndarray  # [d] mean known-user ranking vector
    from_coef: np.ndarray  # [r, d]: rank vector = mean + (coef - coef mean) @ from_coef


@dataclass(frozen=True, eq=False)
class LinearView:
    """``stars(u, i) = clip(offset[i] + basis[i] · coef[u], low, high)`` for every known user, and a fold-in prior."""

    basis: np.ndarray  # [n_items + 1, r] float64, row 0 zero
    offset: np.ndarray  # [n_items + 1] float64 unclamped stars of a user with coef 0
    coef: np.ndarray  # [n_users + 1, r] float64, row 0 zero
    exact: bool  # reproduces score_all within EXACT_TOLERANCE stars for every known user and item
    max_error: float  # largest |view - score_all| in stars over known users and items
    prior_mean: np.ndarray  # [r] mean known-user coefficient
    prior_precision: np.ndarray  # [r, r] inverse covariance of the known users' coefficients
    noise: float  # variance (stars^2) of training ratings around the model's own predictions
    rank: RankView | None = None
    low: float = 1.0  # the store's rating scale (manifest dataset.rating_min..rating_max)
    high: float = 5.0
    _coef32: np.ndarray = field(init=False, repr=False)
    _basis32_t: np.ndarray = field(init=False, repr=False)
    _offset32: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # float32 copies for batch scoring: half the memory traffic of float64, and float32 is what score_all
        # computes in (the view agrees with it to ~1e-4 stars either way).
        object.__setattr__(self, "_coef32", self.coef.astype(np.float32))
        object.__setattr__(self, "_basis32_t", np.ascontiguousarray(self.basis.T, dtype=np.float32))
        object.__setattr__(self, "_offset32", self.offset.astype(np.float32))

    def stars(self, users: np.ndarray) -> np.ndarray:
        """Predicted stars ``[len(users), n_items + 1]`` float32 of known user indices, one matrix product."""
        out = _mm(self._coef32[users], self._basis32_t)
        out += self._offset32
        clipped: np.ndarray = np.clip(out, self.low, self.high, out=out)
        return clipped

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """The posterior-mean coefficient ``[r]`` of a user who gave `ratings` (stars) to item indices `items`."""
        if len(items) == 0:
            return self.prior_mean.copy()
        rows = self.basis[items]
        residual = ratings.astype(np.float64) - self.offset[items] - rows @ self.prior_mean
        precision = self.prior_precision + rows.T @ rows / self.noise
        coef: np.ndarray = self.prior_mean + np.linalg.solve(precision, rows.T @ residual / self.noise)
        return coef

    def stars_of(self, coef: np.ndarray) -> np.ndarray:
        """Predicted stars ``[n_items + 1]`` of a (folded-in) coefficient."""
        out: np.ndarray = np.clip(self.basis @ coef + self.offset, self.low, self.high)
        return out

    def rank_vector_of(self, coef: np.ndarray) -> np.ndarray | None:
        """The ranking vector of a folded-in coefficient, where the module exports ranking vectors."""
        if self.rank is None:
            return None
        vector: np.ndarray = self.rank.mean + (coef - self.prior_mean) @ self.rank.from_coef
        return vector


def build_view(
    model: ModelHandler,
    *,
    n_users: int,
    indptr: np.ndarray,
    history_items: np.ndarray,
    history_ratings: np.ndarray,
    scale: tuple[float, float] = (1.0, 5.0),
) -> LinearView:
    """The `LinearView` of a pair model or the LSTM's known users (see the module docstring)."""
    name, linear = model.name, model.contract.linear
    # [n_users, n_items + 1], column 0 padding
    stars = model.stars_users(np.arange(1, n_users + 1)).astype(np.float64) if n_users else np.zeros((0, 0))
    embeddings = model.item_embeddings()
    if linear:
        basis = np.c_[embeddings, np.ones(len(embeddings))]
        basis[0] = 0.0
        offset, coef = _fit_linear(stars, basis, scale)
    else:
        offset, coef, basis = _fit_low_rank(stars, rank=embeddings.shape[1] + 1)
    low, high = scale
    fitted = np.clip(_mm(coef, basis.T) + offset, low, high)
    max_error = float(np.abs(fitted[:, 1:] - stars[:, 1:]).max()) if stars.size else 0.0
    exact = linear and max_error <= EXACT_TOLERANCE
    mean = coef.mean(axis=0)
    covariance = np.cov(coef, rowvar=False) if len(coef) > 1 else np.eye(coef.shape[1])
    covariance = np.atleast_2d(covariance)
    # A direction no known user varies in (e.g. an all-zero factor) gets a tiny variance, not a singular matrix.
    jitter = 1e-6 * max(float(np.trace(covariance)) / len(covariance), 1e-12)
    precision = np.linalg.inv(covariance + jitter * np.eye(len(covariance)))
    noise = _residual_variance(stars, indptr, history_items, history_ratings)
    rank = _rank_view(model, n_users, coef) if model.contract.rank_vectors else None
    padded = np.vstack([np.zeros((1, coef.shape[1])), coef])
    log.info("%s: linear view rank %d, max error %.2g stars (exact: %s)", name, basis.shape[1], max_error, exact)
    return LinearView(
        basis=np.ascontiguousarray(basis),
        offset=offset,
        coef=padded,
        exact=exact,
        max_error=max_error,
        prior_mean=mean,
        prior_precision=precision,
        noise=noise,
        rank=rank,
        low=low,
        high=high,
    )


def _fit_linear(
    stars: np.ndarray, basis: np.ndarray, scale: tuple[float, float] = (1.0, 5.0)
) -> tuple[np.ndarray, np.ndarray]:
    """``offset`` and ``coef`` with ``stars ≈ coef @ basis.T + offset`` wherever stars are not clamped.

    Least squares has a closed form when every entry is known: ``offset`` is the mean user's stars projected off
    the basis (any part inside the basis is the same model with shifted coefficients), ``coef`` the projection of
    each user's stars (``offset`` projects to 0). Clamped entries are unknown: they are filled with the current
    fit and the fit repeated (hard-impute), which converges to the exact parameters when the model is linear.
    Only the users with a clamped prediction (a quarter of ML-100K's for MF) change between rounds.
    """
    observed = stars[:, 1:]
    b = basis[1:]
    gram = b.T @ b
    # Normal equations rather than np.linalg.pinv: an r x r solve, not an SVD of the whole catalog's rows.
    pinv = np.linalg.solve(gram + 1e-9 * np.trace(gram) / len(gram) * np.eye(len(gram)), b.T)  # [r, n_items]
    lo, hi = scale
    known = (observed > lo + CLAMP_EPS) & (observed < hi - CLAMP_EPS)
    high, low = observed >= hi - CLAMP_EPS, observed <= lo + CLAMP_EPS
    filled = observed.copy()
    rows = np.flatnonzero(~known.all(axis=1))
    column_sum = filled.sum(axis=0)
    for _ in range(IMPUTE_ROUNDS if len(rows) else 0):
        mean = column_sum / len(filled)
        offset = mean - b @ (pinv @ mean)
        part = filled[rows]
        fit = _mm(_mm(part, pinv.T), b.T) + offset
        error = float(np.abs(fit - observed[rows])[known[rows]].max(initial=0.0))
        # A clamped entry's true value lies beyond the clamp: the fit fills it, but never on the wrong side.
        update = np.where(known[rows], observed[rows], fit)
        update = np.where(high[rows], np.maximum(update, hi), update)
        update = np.where(low[rows], np.minimum(update, lo), update)
        column_sum += (update - part).sum(axis=0)
        filled[rows] = update
        if error < EXACT_TOLERANCE / 10:
            break
    mean = filled.mean(axis=0)
    offset = mean - b @ (pinv @ mean)
    return np.r_[0.0, offset], _mm(filled, pinv.T)


def _fit_low_rank(stars: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best rank-`rank` linear approximation of the known users' stars (centred, by principal components).

    The eigenvectors of the smaller of the two Gram matrices give the same directions as an SVD at a fraction of
    its cost (943 x 943 for ML-100K instead of the 1,682-wide item side).
    """
    observed = stars[:, 1:]
    mean = observed.mean(axis=0)
    centred = observed - mean
    if centred.shape[0] < centred.shape[1]:
        values, vectors = _eigh(_mm(centred, centred.T))
        top = np.argsort(values)[::-1][:rank]
        directions = _mm(centred.T, vectors[:, top])
        directions /= np.maximum(np.linalg.norm(directions, axis=0), 1e-12)
    else:
        values, vectors = _eigh(_mm(centred.T, centred))
        directions = vectors[:, np.argsort(values)[::-1][:rank]]
    coef = _mm(centred, directions)  # [n_users, r]; directions has orthonormal columns
    basis = np.vstack([np.zeros((1, directions.shape[1])), directions])
    return np.r_[0.0, mean], coef, basis


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through torch, on the service's torch threads: numpy's BLAS spun its own threads against the
    other processes of this 2-core machine and ran these products ~30x slower (0.18 s for a 244 x 1682 x 33
    pair)."""
    out: np.ndarray = (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b))).numpy()
    return out


def _eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # torch's LAPACK call on the service's torch threads: numpy's took 17x longer (10.9 s against 0.63 s for
    # ML-100K's 943 x 943) on this 2-core machine while other processes kept it busy.
    values, vectors = torch.linalg.eigh(torch.from_numpy(matrix))
    return values.numpy(), vectors.numpy()


def _residual_variance(
    stars: np.ndarray, indptr: np.ndarray, history_items: np.ndarray, history_ratings: np.ndarray
) -> float:
    """Mean squared difference of the training ratings from the model's predictions of them."""
    if len(history_items) == 0:
        return 1.0
    users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))  # user index of every history entry
    predicted = stars[users - 1, history_items]
    return max(float(np.mean((history_ratings - predicted) ** 2)), 1e-3)


def _rank_view(model: ModelHandler, n_users: int, coef: np.ndarray) -> RankView:
    items = model.item_vectors().astype(np.float64)
    users = np.stack([model.user_vector(u) for u in range(1, n_users + 1)]).astype(np.float64).reshape(n_users, -1)
    mean = users.mean(axis=0)
    centred_coef = coef - coef.mean(axis=0)
    from_coef, *_ = np.linalg.lstsq(centred_coef, users - mean, rcond=None)
    return RankView(
        items=np.ascontiguousarray(items),
        users=np.vstack([np.zeros((1, users.shape[1])), users]),
        mean=mean,
        from_coef=from_coef,
    )
