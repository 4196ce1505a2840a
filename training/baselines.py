"""Non-learned anchors every model must beat, fitted on the same training split in the same run.

- `GlobalMean`: one number for every pair.
- `BiasBaseline`: ``mu + b_user + b_item`` fitted by regularised alternating least squares (Koren 2010, the
  ``BaselineOnly`` ALS of scikit-surprise). Its item part is the shrunk item mean, so it is also the rating
  prediction of a popularity model.
- `item_popularity`: training rating count per item, for ranking only.

Each exposes ``predict(users, items)`` and ``score_all(users)`` in stars within [1, 5], like the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import Interactions


@dataclass(frozen=True)
class GlobalMean:
    mean: float
    num_items: int

    @classmethod
    def fit(cls, train: Interactions) -> GlobalMean:
        return cls(float(np.mean(train.ratings, dtype=np.float64)), train.num_items)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), self.mean, dtype=np.float32)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """Stars of every item index 0..num_items (0 is padding): ``[len(users), num_items + 1]``."""
        return np.full((len(users), self.num_items + 1), self.mean, dtype=np.float32)


@dataclass(frozen=True)
class BiasBaseline:
    """``r(u, i) ~ mu + b_u + b_i`` with L2 shrinkage of each bias towards 0.

    Parameters
    ----------
    mean : the global mean ``mu`` of the training ratings
    user_bias, item_bias : ``[num_users + 1]`` and ``[num_items + 1]``; index 0 (padding / unknown) stays 0
    """

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray

    # scikit-surprise's BaselineOnly ALS defaults, fixed in advance rather than tuned on any split: a bias
    # estimated from n ratings is shrunk as if it had `reg` extra ratings at 0.
    @classmethod
    def fit(
        cls, train: Interactions, *, reg_user: float = 15.0, reg_item: float = 10.0, iterations: int = 10
    ) -> BiasBaseline:
        """Closed-form alternating updates: each step solves one side exactly given the other.

        Parameters
        ----------
        train : the training ratings
        reg_user, reg_item : ridge penalties of the user and item biases
        iterations : item-then-user sweeps of the convex objective; 10 is surprise's default

        Returns
        -------
        The fitted baseline.
        """
        if len(train) == 0:
            raise ValueError("BiasBaseline.fit: no training ratings")
        users, items = train.user_ids, train.item_ids
        r = train.ratings.astype(np.float64)
        mu = float(r.mean())
        n_user = np.bincount(users, minlength=train.num_users + 1)
        n_item = np.bincount(items, minlength=train.num_items + 1)
        bu = np.zeros(train.num_users + 1)
        bi = np.zeros(train.num_items + 1)
        for _ in range(iterations):
            bi = _shrunk_mean(np.bincount(items, r - mu - bu[users], minlength=len(bi)), n_item + reg_item)
            bu = _shrunk_mean(np.bincount(users, r - mu - bi[items], minlength=len(bu)), n_user + reg_user)
        return cls(mu, bu, bi)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raw = self.mean + self.user_bias[users] + self.item_bias[items]
        return np.clip(raw, 1.0, 5.0).astype(np.float32)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """Stars of every item index 0..num_items (0 is padding): ``[len(users), num_items + 1]``."""
        raw = self.mean + self.user_bias[users][:, None] + self.item_bias[None, :]
        return np.clip(raw, 1.0, 5.0).astype(np.float32)


def _shrunk_mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    # Unrated indices (padding, users or items absent from the split) keep bias 0, even without shrinkage.
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def item_popularity(train: Interactions) -> np.ndarray:
    """Training rating count of each item index 0..num_items (index 0 is padding and counts 0)."""
    return np.bincount(train.item_ids, minlength=train.num_items + 1).astype(np.int64)
