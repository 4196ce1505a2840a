"""The experiment: splits, our models trained with the production recipe, baselines and peers, measured on each
split's test part. Returns data (`SplitResult`); `training.quality.report` and `training.quality.charts` make
the report from it.

Protocol: hyperparameters are the `training.models` and `training.specs` defaults, fixed before this runs; the
weights of each model's ranking score are chosen on the validation split of each fold's base; a fold's test file
is read only to score the finished models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from app.artifacts import SEQUENCE_LENGTH, context_length
from training.baselines import BiasBaseline, GlobalMean
from training.data import Interactions
from training.evaluate import error_metrics
from training.fit import FitResult
from training.peers import PEERS, PeerResult, choose_and_fit
from training.pipeline import heldout_metrics, train_one, validation_parts
from training.ranking import K, RankingTask, Scorer, latest_contexts
from training.specs import SPECS

log = logging.getLogger(__name__)

FOLDS = ("u1", "u2", "u3", "u4", "u5")
TEMPORAL_LAST = 10  # ratings per user held out at the end of their history
SESSION_LENGTH = context_length(SEQUENCE_LENGTH)  # POST /recommend's context: a test user's latest 9 ratings


@dataclass
class ModelRun:
    """One model (or baseline, or peer) trained on one split's base and measured on its test part."""

    name: str
    split: str
    rmse: float
    mae: float
    seconds: float = 0.0  # wall time of fitting and predicting (peers: choosing, fitting and ranking)
    fit: FitResult | None = None  # ours: curves, epochs and the ranking head's result (`fit.ranking`)
    peer: PeerResult | None = None  # peers: the hyperparameters chosen on validation
    ranking: dict[str, float] = field(default_factory=dict)  # test ranking metrics

    @property
    def is_peer(self) -> bool:
        return self.peer is not None

    @property
    def epochs(self) -> int:
        return self.fit.epochs if self.fit else 0

    @property
    def best_epoch(self) -> int:
        return self.fit.best_epoch if self.fit else 0

    @property
    def train_loss(self) -> list[float]:
        return self.fit.train_loss if self.fit else []

    @property
    def val_rmse(self) -> list[float]:
        return self.fit.val_rmse if self.fit else []

    @property
    def weight(self) -> float:
        """Ours: the weight of the rating score in the ranking score, chosen on validation."""
        return self.fit.ranking.weight if self.fit and self.fit.ranking else 0.0

    @property
    def params(self) -> dict[str, Any]:
        """What validation chose: a peer's hyperparameters; for ours the weights ``w`` (rating score) and ``p``
        (popularity prior) of the ranking score, and ``p_gain``, what the prior adds on validation (best NDCG@10
        over all (w, p) minus the best at p = 0)."""
        if self.peer is not None:
            return self.peer.params
        if self.fit is None or self.fit.ranking is None:
            return {}
        ranked = self.fit.ranking
        return {
            "w": ranked.weight,
            "p": ranked.popularity_weight,
            "p_gain": max(ranked.weight_ndcg.values(), default=0.0)
            - max((v for (_, p), v in ranked.weight_ndcg.items() if p == 0.0), default=0.0),
        }

    @property
    def validation_ndcg(self) -> float:
        """NDCG@10 on the validation split of the base, as chosen (NaN for the baselines)."""
        if self.peer is not None:
            return self.peer.validation_ndcg
        if self.fit is not None and self.fit.ranking is not None:
            return max(self.fit.ranking.weight_ndcg.values(), default=float("nan"))
        return float("nan")

    def to_json(self) -> dict[str, Any]:
        """The run as ``quality.json`` records it (the fit's curves inline, not the ranking head's grids)."""
        return {
            "name": self.name,
            "split": self.split,
            "rmse": self.rmse,
            "mae": self.mae,
            "seconds": self.seconds,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "train_loss": self.train_loss,
            "val_rmse": self.val_rmse,
            "weight": self.weight,
            "params": self.params,
            "validation_ndcg": self.validation_ndcg,
            "ranking": self.ranking,
        }


@dataclass
class SplitResult:
    split: str
    n_test: int
    runs: list[ModelRun]
    popularity: dict[str, float]  # popularity ranking on the test users
    # POST /recommend quality: each session model's ranking from each test user's latest 9 training ratings, and
    # popularity's ("popularity"), all excluding only the session's items as the endpoint does.
    sessions: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: dict[str, list[float]] = field(default_factory=dict)  # test predictions per model, for plots
    actual: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The split as ``quality.json`` records it: everything but the per-rating predictions."""
        return {
            "split": self.split,
            "n_test": self.n_test,
            "runs": [run.to_json() for run in self.runs],
            "popularity": self.popularity,
            "sessions": self.sessions,
        }


def temporal_split(ratings: Interactions, last: int = TEMPORAL_LAST) -> tuple[Interactions, Interactions]:
    """``(train, test)`` with each user's `last` most recent ratings (by `time_order`) in test.

    Raises
    ------
    ValueError
        A user has no more than `last` ratings, so nothing of theirs would be left to train on.
    """
    order = ratings.time_order()
    users = ratings.user_ids[order]
    counts = np.bincount(users, minlength=ratings.num_users + 1)
    if ((counts > 0) & (counts <= last)).any():
        raise ValueError(f"temporal_split: some user has at most {last} ratings")
    from_end = np.cumsum(counts)[users] - np.arange(len(order))  # 1 for each user's latest rating
    test = np.zeros(len(ratings), dtype=bool)
    test[order[from_end <= last]] = True
    return ratings.subset(~test), ratings.subset(test)


def evaluate_split(
    split: str,
    train: Interactions,
    test: Interactions,
    *,
    models: tuple[str, ...],
    seed: int,
    max_epochs: int | None,
) -> SplitResult:
    """Baselines, peers and every model trained on `train` with the production recipe, measured on `test`."""
    fit_data, val = validation_parts(train, seed)
    task = RankingTask.build(train, test)
    result = SplitResult(split, len(test), [], task.evaluate_popularity(), actual=test.ratings.tolist())
    for name, model in (("global mean", GlobalMean.fit(train)), ("bias", BiasBaseline.fit(train))):
        predicted = model.predict(test.user_ids, test.item_ids)
        m = error_metrics(predicted, test.ratings)
        result.runs.append(ModelRun(name, split, m["rmse"], m["mae"]))
        result.predictions[name] = predicted.tolist()

    for name in models:
        spec = SPECS[name]
        start = time.perf_counter()
        network, fitted = train_one(name, train, seed, max_epochs)
        predicted = spec.predict(network, train, test)
        metrics = heldout_metrics(predicted, train, test, f"{split}.base->{split}.test")
        run = ModelRun(name, split, metrics.rmse, metrics.mae, seconds=time.perf_counter() - start, fit=fitted)
        if len(task.users):
            # The served score: rank_all from the user vectors folded from the whole base.
            run.ranking = task.evaluate(spec.scorer(network)(train, task.users), 0.0)
        if spec.session_scorer is not None:
            result.sessions |= session_quality(name, spec.session_scorer(network), train, test)
        result.predictions[name] = predicted.tolist()
        result.runs.append(run)
        log.info(
            "%s %s: RMSE %.4f MAE %.4f NDCG@10 %.4f (popularity %.4f) in %.0f s",
            split,
            name,
            run.rmse,
            run.mae,
            run.ranking.get(f"ndcg@{K}", float("nan")),
            result.popularity[f"ndcg@{K}"],
            run.seconds,
        )
    for name in PEERS:
        start = time.perf_counter()
        chosen, scorer = choose_and_fit(name, fit_data, val, train, seed)
        run = ModelRun(name, split, float("nan"), float("nan"), peer=chosen)
        if len(task.users):
            run.ranking = task.evaluate(scorer(task.users), 0.0)
        run.seconds = time.perf_counter() - start
        result.runs.append(run)
        log.info("%s %s %s: NDCG@10 %.4f", split, name, chosen.params, run.ranking.get(f"ndcg@{K}", float("nan")))
    return result


def session_quality(name: str, scorer: Scorer, train: Interactions, test: Interactions) -> dict[str, dict[str, float]]:
    """`POST /recommend` as a client would use it: each test user's latest SESSION_LENGTH training ratings are
    the session, relevant are their test items rated >= 4, and only the session's items are excluded (the
    endpoint knows nothing else). Returns the metrics of model `name` ranking with `scorer` and popularity's,
    same users."""
    task = RankingTask.build(train, test)
    if len(task.users) == 0:
        return {}
    items, _ = latest_contexts(train, task.users, SESSION_LENGTH)
    exclude = np.zeros_like(task.exclude)
    exclude[np.arange(len(task.users))[:, None], items] = True
    exclude[:, 0] = True
    session = replace(task, exclude=exclude)
    return {
        name: session.evaluate(scorer(train, task.users), 0.0),
        "popularity": session.evaluate_popularity(),
    }


def evaluate_splits(
    splits: Sequence[tuple[str, Interactions, Interactions]],
    *,
    models: tuple[str, ...],
    seed: int,
    max_epochs: int | None,
    jobs: int = 1,
    threads: int = 1,
) -> list[SplitResult]:
    """`evaluate_split` of each ``(name, train, test)``, `jobs` at a time, one process each."""
    options: dict[str, Any] = {"models": models, "seed": seed, "max_epochs": max_epochs}
    if jobs <= 1:
        return [evaluate_split(*split, **options) for split in splits]
    # Each split is independent and seeded the same way, so results do not depend on the number of jobs.
    with ProcessPoolExecutor(jobs, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(evaluate_split, *split, **options) for split in splits]
        return [f.result() for f in futures]


def to_json(results: list[SplitResult], temporal: SplitResult | None) -> dict[str, Any]:
    return {"folds": [r.to_json() for r in results], "temporal": temporal.to_json() if temporal else None}


# --- summaries ----------------------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def runs_by_name(results: list[SplitResult], rated: bool = False) -> dict[str, list[ModelRun]]:
    """Runs grouped by ranker name, in first-seen order; `rated`: only those that predict ratings."""
    out: dict[str, list[ModelRun]] = {}
    for r in results:
        for run in r.runs:
            if not (rated and np.isnan(run.rmse)):
                out.setdefault(run.name, []).append(run)
    return out


def ndcg_mean(runs: list[ModelRun]) -> float:
    return mean_std([r.ranking[f"ndcg@{K}"] for r in runs])[0]


def same_second_share(ratings: Interactions) -> float:
    """Share of ratings whose user rated something else in the same second just before (time order)."""
    order = ratings.time_order()
    u, t = ratings.user_ids[order], ratings.timestamps[order]
    return float(np.mean((u[1:] == u[:-1]) & (t[1:] == t[:-1])))
