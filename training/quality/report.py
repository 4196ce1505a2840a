"""The quality report: tables, prose and ``report.md`` from the experiment's results
(`training.quality.experiment`); the charts it shows are drawn by `training.quality.charts`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from training.data import MovieLens
from training.pipeline import all_hyperparameters
from training.quality.charts import plot_anchors, plot_distributions, plot_learning_curves, plot_ranking, plot_temporal
from training.quality.experiment import (
    FOLDS,
    TEMPORAL_LAST,
    ModelRun,
    SplitResult,
    mean_std,
    ndcg_mean,
    runs_by_name,
    same_second_share,
)
from training.ranking import K, metric_names
from training.specs import MODELS, SPECS
from training.targets import (
    ANCHORS,
    TARGET_5FOLD_BEST,
    TARGET_NDCG_BEST,
    TARGET_NDCG_EVERY,
    TARGETS_U1,
    TUTORIAL_RMSE_SCALED,
)


def pm(values: list[float], digits: int = 4) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def error_table(results: list[SplitResult]) -> str:
    folds = [r.split for r in results]
    rows = []
    for name, runs in runs_by_name(results, rated=True).items():
        rmse, mae = [r.rmse for r in runs], [r.mae for r in runs]
        rows.append(
            [f"**{name}**" if name in MODELS else name, pm(rmse), pm(mae), pm([x / 4 for x in rmse])]
            + [f"{x:.4f}" for x in rmse]
        )
    return markdown_table(["model", "RMSE ★", "MAE ★", "RMSE [0,1]", *(f"{f} RMSE" for f in folds)], rows)


def ranking_table(results: list[SplitResult]) -> str:
    """Every ranker (ours, then the peers) with fold-mean metrics and NDCG@10 per fold."""
    names = (*metric_names(K), f"coverage@{K}", f"mean_count@{K}")
    rows = []
    for name, runs in runs_by_name(results).items():
        if not runs[0].ranking:
            continue
        label = f"**{name}**" if name in MODELS else name
        rows.append(
            [label, *(pm([r.ranking[n] for r in runs], 0 if n.startswith("mean") else 4) for n in names)]
            + [f"{r.ranking[names[0]]:.4f}" for r in runs]
        )
    header = [
        "ranker",
        *("NDCG@10", "Precision@10", "Recall@10", "HitRate@10", "coverage", "mean count of items shown"),
        *(f"{r.split} NDCG@10" for r in results),
    ]
    return markdown_table(header, rows)


def _wp(run: ModelRun) -> str:
    return (
        f"w = {run.params.get('w', run.weight):g}, p = {run.params.get('p', 0.0):g} "
        f"(p adds {run.params.get('p_gain', 0.0):+.4f})"
    )


def choices_table(results: list[SplitResult]) -> str:
    """What validation chose per fold: the rating weight of our models, the peers' hyperparameters."""
    rows = []
    for name, runs in runs_by_name(results).items():
        if not runs[0].ranking or name == "popularity":
            continue
        chosen = [json.dumps({k: v for k, v in r.params.items() if k != "seed"}) if r.is_peer else _wp(r) for r in runs]
        rows.append([name, pm([r.validation_ndcg for r in runs]), "; ".join(chosen)])
    return markdown_table(["ranker", "validation NDCG@10", "chosen on validation, per fold"], rows)


PROTOCOL = """\
## Protocol

- **Folds**: the canonical GroupLens splits {folds} (`uN.base` to train, `uN.test` to measure; the five
  test files partition the 100,000 ratings). Means are over folds, ± the sample standard deviation (ddof 1).
- **Models** are trained by `training.pipeline.train_one`, the recipe `python -m training` exports: early
  stopping on a validation split of 5% of the fold's *base*, drawn with the run's seed. Hyperparameters are
  the `training.models` and `training.specs` defaults at the time of the run (listed at the end), fixed
  before this command ran (chosen on the validation split of u1.base, never on a test file); nothing here
  tunes them. The MF also
  learns user (age band, gender, occupation from `u.user`) and item (genres from `u.item`) feature vectors,
  folded into its rows after training; dense and LSTM start from such an MF of their width.
- **Baselines** are fitted on the same base in the same run: the global mean, and the user + item bias
  baseline `mu + b_u + b_i` (ridge-regularised, 10 closed-form alternating sweeps, scikit-surprise's
  `BaselineOnly` defaults reg_u = 15, reg_i = 10). For rating prediction the popularity model *is* the bias
  baseline (its item part is the shrunk item mean); popularity proper (training rating count) is a ranking
  baseline only.
- **Ranking**: a test item rated ≥ 4 is relevant; every test user with at least one relevant item ranks all
  items they did not rate in the fold's base (rated items are excluded, nothing else is). Precision, Recall
  (hits / relevant items), NDCG (binary gains, log2 discount, ideal DCG over min(#relevant, 10)) and HitRate
  at 10 are averaged over those users; ties go to the lower item index. Coverage is the share of the catalog
  in anyone's top 10, "mean count" the mean training rating count of the items shown. Our models rank by
  their served ranking score, `rank_all(user)` (`app/artifacts.py`): a softmax head learnt from implicit
  feedback plus `w` times the rating score (`training.rank_heads`), with the user vectors folded from the
  whole base as the exported artifact holds them.
- **Peers** (`training.peers`), fitted on the same base in the same run with binary feedback: popularity
  (training count), item-KNN (cosine, `k` neighbours per item), EASE (Steck 2019, closed form, `lambda`) and
  implicit ALS (the `implicit` package, 15 iterations, `factors`, `regularization`, `alpha`). Their
  hyperparameters, like our `w` and our heads' early stopping, are chosen per fold by NDCG@10 on the
  *validation split of the base* (its ratings ≥ 4 ranked among the items unrated in the rest of the base,
  fitted on that rest); then they are refitted on the whole base.
- **Sessions** measure `POST /recommend`: each test user's latest 9 training ratings are an anonymous
  session (`rank_next`), relevant are their test items rated ≥ 4, and only the session's items are
  excluded, as the endpoint does; popularity is measured the same way.
- **The test split is never seen** by fitting, early stopping or any choice; it is read only to score
  finished models.
"""

TIMESTAMP_NOTE = """\
## Notes on the data and the training code

- {share:.1f}% of ratings share their timestamp with the same user's previous rating (ML-100K users rated
  in bursts). LSTM training (`Interactions.to_histories`) orders such ties by item index and lets each rating
  see the earlier ones of its burst, while `evaluate.predict_sequences` (validation and test) uses only
  ratings *strictly before* the query's second. The LSTM is evaluated on contexts that differ from its
  training contexts for about half of the ratings.
"""


def ranking_targets(results: list[SplitResult]) -> list[list[str]]:
    """Rows (target, goal, measured, verdict) for the ranking targets, on u1 and on the fold means."""
    rows: list[list[str]] = []
    views = [(r.split, [r]) for r in results if r.split == "u1"]
    if len(results) > 1:
        views.append((f"{len(results)}-fold mean", results))
    for label, view in views:
        by_name = runs_by_name(view)
        ours = {n: ndcg_mean(by_name[n]) for n in MODELS if n in by_name and by_name[n][0].ranking}
        if not ours:
            continue
        best = max(ours, key=ours.__getitem__)
        peers = {n: ndcg_mean(by_name[n]) for n in ("ALS", "EASE") if n in by_name and by_name[n][0].ranking}
        if label == "u1":
            for n, v in ours.items():
                rows.append([f"{n} NDCG@10 on u1", f"≥ {TARGET_NDCG_EVERY}", f"{v:.4f}", _met(v >= TARGET_NDCG_EVERY)])
            v = ours[best]
            rows.append([f"best ({best}) on u1", f"≥ {TARGET_NDCG_BEST}", f"{v:.4f}", _met(v >= TARGET_NDCG_BEST)])
        if "ALS" in peers:
            worst = min(ours, key=ours.__getitem__)
            rows.append(
                [
                    f"every model ≥ ALS, {label}",
                    f"≥ {peers['ALS']:.4f}",
                    f"{ours[worst]:.4f} ({worst}, the lowest)",
                    _met(ours[worst] >= peers["ALS"]),
                ]
            )
        if "EASE" in peers:
            rows.append(
                [
                    f"best ≥ EASE, {label}",
                    f"≥ {peers['EASE']:.4f}",
                    f"{ours[best]:.4f} ({best})",
                    _met(ours[best] >= peers["EASE"]),
                ]
            )
    return rows


def ranking_section(results: list[SplitResult]) -> list[str]:
    s = ["## Ranking: ours vs peers\n", ranking_table(results) + "\n", "![ranking](img/ranking.png)\n"]
    targets = ranking_targets(results)
    if targets:
        s.append("### Ranking targets\n")
        s.append(markdown_table(["target", "goal", "measured", ""], targets) + "\n")
    s.append("### Chosen on validation\n")
    s.append(choices_table(results) + "\n")
    s.append(
        "`w` is the weight of the model's [0,1]-scale rating score added to its softmax logit: the head says "
        "who will watch a film, the rating head whether they will like it, and relevance here means both "
        "(watched, and rated ≥ 4). `p` weighs a popularity prior, log1p(count) / log1p(max count), folded "
        "into the head's item biases (so the score stays an inner product); both are chosen together on "
        "validation from the grids in `training.rank_heads.RankConfig`.\n"
    )
    for name in (n for n in MODELS if SPECS[n].session_scorer is not None):
        s += sessions_section(results, name)
    return s


def sessions_section(results: list[SplitResult], name: str) -> list[str]:
    """`POST /recommend` quality of session model `name` beside popularity, per fold (none if not measured)."""
    rows = []
    for r in results:
        if name in r.sessions:
            ours, pop = r.sessions[name], r.sessions["popularity"]
            rows.append(
                [r.split]
                + [f"{ours[n]:.4f} / {pop[n]:.4f}" for n in metric_names(K)]
                + [f"{ours[f'coverage@{K}']:.3f} / {pop[f'coverage@{K}']:.3f}"]
            )
    if not rows:
        return []
    s = ["### Sessions: `POST /recommend` from the latest 9 training ratings\n"]
    header = ["fold", *(f"{n} {name} / popularity" for n in metric_names(K)), "coverage"]
    s.append(markdown_table(header, rows) + "\n")
    gains = [
        r.sessions[name][f"ndcg@{K}"] / r.sessions["popularity"][f"ndcg@{K}"] for r in results if name in r.sessions
    ]
    s.append(
        f"The session path's NDCG@10 is {min(gains):.2f}-{max(gains):.2f}x popularity's across folds (only the "
        "session's items are excluded, so already-seen films compete, for both).\n"
    )
    return s


def temporal_section(results: list[SplitResult], temporal: SplitResult, protocol: str) -> list[str]:
    ndcg = f"ndcg@{K}"
    s = [f"## Temporal check: each user's last {TEMPORAL_LAST} ratings\n"]
    s.append(
        f"Built from `u.data`: each user's last {TEMPORAL_LAST} ratings in `Interactions.time_order()` "
        f"(time, then item index) form the test set ({temporal.n_test} ratings); the rest trains the same "
        "recipes, validation carved from it. The LSTM predicts every test rating with `evaluate.predict_sequences`"
        ", from its state after the user's training ratings before that rating's time, which here is the whole "
        "training history, as the service would; earlier test ratings are never revealed to it.\n"
    )
    random = runs_by_name(results, rated=True)
    random_mean = {n: mean_std([r.rmse for r in runs])[0] for n, runs in random.items()}
    random_ndcg = {n: ndcg_mean(runs) for n, runs in runs_by_name(results).items() if runs[0].ranking}
    rows = []
    for run in temporal.runs:
        rated = not np.isnan(run.rmse)
        rows.append(
            [
                run.name,
                f"{run.rmse:.4f}" if rated else "-",
                f"{run.mae:.4f}" if rated else "-",
                f"{random_mean[run.name]:.4f}" if rated and run.name in random_mean else "-",
                f"{run.ranking[ndcg]:.4f}" if run.ranking else "-",
                f"{random_ndcg[run.name]:.4f}" if run.ranking and run.name in random_ndcg else "-",
            ]
        )
    header = [
        "ranker",
        "RMSE ★",
        "MAE ★",
        f"RMSE, random folds ({protocol} mean)",
        "NDCG@10",
        f"NDCG@10, random folds ({protocol} mean)",
    ]
    s.append(markdown_table(header, rows) + "\n")
    t = {r.name: r.rmse for r in temporal.runs if not np.isnan(r.rmse)}
    if "lstm" in t and "mf" in t:
        verdict = "beats" if t["lstm"] < t["mf"] else "does not beat"
        s.append(
            f"On the temporal split the LSTM's RMSE ({t['lstm']:.4f}) {verdict} MF's ({t['mf']:.4f}): a difference "
            f"of {abs(t['lstm'] - t['mf']):.4f}. The bias baseline scores {t['bias']:.4f}."
        )
    n = {r.name: r.ranking[ndcg] for r in temporal.runs if r.ranking}
    if "lstm" in n and "mf" in n:
        verdict = "≥" if n["lstm"] >= n["mf"] else "<"
        s.append(f"Ranking the next {TEMPORAL_LAST} films: LSTM NDCG@10 {n['lstm']:.4f} {verdict} MF {n['mf']:.4f}.")
    pop = temporal.popularity[ndcg]
    below = [f"{r.name} ({r.ranking[ndcg]:.4f})" for r in temporal.runs if r.ranking and r.ranking[ndcg] < pop]
    s.append(
        f"Rankers below popularity's NDCG@10 ({pop:.4f}) here: {', '.join(below) or 'none'}. Predicting the "
        "next ratings in time leaves far fewer relevant items per user, and popularity is hard to beat there."
    )
    harder = [n for n in t if n in random_mean and t[n] > random_mean[n]]
    s.append(f"Higher RMSE on the temporal split than on the random folds: {', '.join(harder) or 'none'}.\n")
    s.append("![temporal](img/temporal.png)\n")
    return s


def distribution_section(results: list[SplitResult]) -> list[str]:
    s = ["## Predicted vs actual rating distribution\n", "![distribution](img/prediction_distribution.png)\n"]
    actual = np.concatenate([r.actual for r in results])
    rows, narrow = [], []
    for name in results[0].predictions:
        p = np.concatenate([r.predictions[name] for r in results])
        if p.std() < 0.8 * actual.std():
            narrow.append(name)
        rows.append([name, *(f"{v:.3f}" for v in (p.mean(), p.std(), np.mean(p < 2.5), np.mean(p >= 4.5)))])
    a = actual
    rows.append(["actual", *(f"{v:.3f}" for v in (a.mean(), a.std(), np.mean(a < 2.5), np.mean(a >= 4.5)))])
    s.append(markdown_table(["", "mean", "sd", "share < 2.5", "share ≥ 4.5"], rows) + "\n")
    s.append(
        f"Predictions with less than 80% of the actual spread: {', '.join(narrow) or 'none'}. Squared-error "
        "fitting shrinks towards the mean where evidence is thin, so 1-2 and 5 star ratings are "
        "under-predicted: displayed predictions cluster around 3-4 stars, while the order (what ranking "
        "uses) is unaffected by the shrinkage itself.\n"
    )
    return s


def write_report(
    out: Path,
    results: list[SplitResult],
    temporal: SplitResult | None,
    *,
    data: MovieLens,
    models: tuple[str, ...],
    command: str,
    seconds: float,
) -> Path:
    """Charts into ``out/img`` and ``out/report.md`` describing them; returns the report's path."""
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(results, models, img / "learning_curves.png")
    plot_anchors(results, img / "rmse_vs_anchors.png")
    plot_ranking(results, img / "ranking.png")
    plot_distributions(results, img / "prediction_distribution.png")
    if temporal is not None:
        plot_temporal(results, temporal, img / "temporal.png")

    by_name = runs_by_name(results, rated=True)
    folds = ", ".join(r.split for r in results)
    protocol = f"{len(results)}-fold" if len(results) > 1 else results[0].split
    means = {n: mean_std([r.rmse for r in runs])[0] for n, runs in by_name.items()}
    best = min((n for n in means if n in MODELS), key=means.__getitem__, default=None)

    s = ["# Model quality on MovieLens 100K\n"]
    s.append(
        f"Generated by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min "
        f"(torch {torch.__version__}). Every number below comes from that one run; raw values are in "
        "[`quality.json`](quality.json).\n"
    )
    s.append(PROTOCOL.format(folds=folds))
    s.append(f"## Rating prediction ({protocol})\n")
    s.append(error_table(results) + "\n")
    if best is not None:
        bias = means["bias"]
        s.append(
            f"Best model: **{best}**, {means[best]:.4f} mean RMSE ({means[best] - bias:+.4f} against the "
            f"bias baseline's {bias:.4f}).\n"
        )
    s.append("### Against published anchors\n")
    rows = [[f"ours: {n}", protocol, f"{means[n]:.4f}", "this run"] for n in means]
    rows += [[system, proto, f"{v:.3f}", source] for system, proto, v, source in ANCHORS]
    rows += [
        [f"tutorial {n}", "u1", f"{4 * v:.2f} ({v:.2f} on [0,1])", "the tutorial we started from"]
        for n, v in TUTORIAL_RMSE_SCALED.items()
    ]
    s.append(markdown_table(["system", "protocol", "RMSE ★", "source"], rows) + "\n")
    s.append("![RMSE vs anchors](img/rmse_vs_anchors.png)\n")
    targets = []
    u1 = next((r for r in results if r.split == "u1"), None)
    for run in u1.runs if u1 else []:
        if run.name in TARGETS_U1:
            goal = TARGETS_U1[run.name]
            targets.append([f"{run.name} on u1", f"≤ {goal}", f"{run.rmse:.4f}", _met(run.rmse <= goal)])
    if best is not None and len(results) == len(FOLDS):
        ok = _met(means[best] <= TARGET_5FOLD_BEST)
        targets.append([f"best 5-fold mean ({best})", f"≤ {TARGET_5FOLD_BEST}", f"{means[best]:.4f}", ok])
    if targets:
        s.append("### Targets\n")
        s.append(markdown_table(["target", "goal", "measured", ""], targets) + "\n")

    s.append("## Learning curves\n")
    s.append("![learning curves](img/learning_curves.png)\n")
    rows = [
        [
            n,
            ", ".join(f"{r.best_epoch}/{r.epochs}" for r in by_name[n]),
            pm([min(r.val_rmse) for r in by_name[n]]),
            pm([r.seconds for r in by_name[n]], 1),
        ]
        for n in models
        if n in by_name
    ]
    header = ["model", "kept epoch / epochs run, per fold", "best validation RMSE", "seconds per fold"]
    s.append(markdown_table(header, rows) + "\n")
    s += ranking_section(results)
    if temporal is not None:
        s += temporal_section(results, temporal, protocol)
    s += distribution_section(results)
    s.append(TIMESTAMP_NOTE.format(share=100 * same_second_share(data.ratings)))
    s.append("## Hyperparameters of this run\n")
    s += [f"- **{n}**: `{json.dumps(all_hyperparameters(n, None))}`" for n in models]
    path = out / "report.md"
    path.write_text("\n".join(s) + "\n")
    return path


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"
