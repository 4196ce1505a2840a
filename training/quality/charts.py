"""The quality report's charts, drawn from the experiment's results (`training.quality.experiment`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.quality.experiment import TEMPORAL_LAST, SplitResult, mean_std, runs_by_name
from training.ranking import K
from training.specs import MODELS
from training.targets import ANCHORS, TUTORIAL_RMSE_SCALED


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(results: list[SplitResult], models: tuple[str, ...], path: Path) -> None:
    plt = _pyplot()
    by_name = runs_by_name(results)
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.5), squeeze=False)
    for col, name in enumerate(models):
        for run in by_name.get(name, []):
            epochs = np.arange(1, len(run.train_loss) + 1)
            axes[0, col].plot(epochs, run.train_loss, label=run.split)
            (line,) = axes[1, col].plot(epochs, run.val_rmse, label=run.split)
            axes[1, col].plot(run.best_epoch, run.val_rmse[run.best_epoch - 1], "o", color=line.get_color())
        axes[0, col].set_title(name)
        axes[0, col].set_ylabel("training loss ([0,1] scale, incl. penalty)")
        axes[1, col].set_ylabel("validation RMSE ★ (dot: kept epoch)")
        axes[1, col].set_xlabel("epoch")
        axes[0, col].legend(fontsize=7)
    fig.suptitle("Learning curves per fold (validation = 5% of each fold's base)")
    _save(plt, fig, path)


def plot_anchors(results: list[SplitResult], path: Path) -> None:
    plt = _pyplot()
    by_name = runs_by_name(results, rated=True)
    labels, values, errors, colors = [], [], [], []
    protocol = f"{len(results)}-fold" if len(results) > 1 else results[0].split
    for name, runs in by_name.items():
        mean, std = mean_std([r.rmse for r in runs])
        labels.append(f"ours: {name} ({protocol})")
        values.append(mean)
        errors.append(0.0 if np.isnan(std) else std)
        colors.append("tab:blue" if name in MODELS else "tab:gray")
    for system, proto, rmse, _ in ANCHORS:
        labels.append(f"{system} ({proto})")
        values.append(rmse)
        errors.append(0.0)
        colors.append("tab:orange")
    tutorial = [(f"tutorial {n} (u1)", 4 * v) for n, v in TUTORIAL_RMSE_SCALED.items()]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 0.38 * len(labels) + 1.5), gridspec_kw={"width_ratios": [3, 1.2]})
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, xerr=errors, color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0.85, max(values) + 0.03)
    ax.set_xlabel("test RMSE ★ (lower is better; error bars: ± 1 std over folds)")
    for yy, v, e in zip(y, values, errors, strict=True):
        ax.text(v + e + 0.002, yy, f"{v:.3f}", va="center", fontsize=7)
    y2 = np.arange(len(tutorial) + 1)[::-1]
    best = min(mean_std([r.rmse for r in by_name[n]])[0] for n in by_name if n in MODELS) if by_name else 0
    ax2.barh(y2, [best] + [v for _, v in tutorial], color=["tab:blue"] + ["tab:red"] * len(tutorial))
    ax2.set_yticks(y2, ["ours: best model", *(t for t, _ in tutorial)], fontsize=8)
    ax2.set_xlabel("RMSE ★ (tutorial: [0,1] value x 4)")
    fig.suptitle("RMSE: ours vs published anchors on ML-100K")
    _save(plt, fig, path)


def plot_ranking(results: list[SplitResult], path: Path) -> None:
    """NDCG@10 per fold and the fold mean, our models beside the peers."""
    plt = _pyplot()
    by_name = {n: r for n, r in runs_by_name(results).items() if r[0].ranking}
    ndcg = f"ndcg@{K}"
    labels = [r.split for r in results] + (["mean"] if len(results) > 1 else [])
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(labels) + 3), 4.6))
    width = 0.8 / max(len(by_name), 1)
    x = np.arange(len(labels))
    ours = plt.get_cmap("Blues")
    peers = plt.get_cmap("Oranges")
    n_ours = sum(n in MODELS for n in by_name)
    for j, (name, runs) in enumerate(by_name.items()):
        values = [r.ranking[ndcg] for r in runs]
        if len(results) > 1:
            values.append(mean_std(values)[0])
        if name in MODELS:
            color = ours(0.45 + 0.5 * j / max(n_ours, 1))
        else:
            color = peers(0.3 + 0.6 * (j - n_ours) / max(len(by_name) - n_ours, 1))
        ax.bar(x + (j - len(by_name) / 2 + 0.5) * width, values, width, label=name, color=color)
    ax.set_xticks(x, labels)
    ax.set_ylabel(f"test NDCG@{K}")
    ax.set_ylim(0, None)
    ax.set_title("Top-10 ranking per fold: ours (blue) vs peers (orange), same run, same protocol")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    _save(plt, fig, path)


def plot_distributions(results: list[SplitResult], path: Path) -> None:
    plt = _pyplot()
    names = [n for n in results[0].predictions if n != "global mean"]  # a constant: one spike
    actual = np.concatenate([r.actual for r in results])
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), sharey=True, squeeze=False)
    bins = np.arange(0.75, 5.5, 0.25)
    for ax, name in zip(axes[0], names, strict=True):
        predicted = np.concatenate([r.predictions[name] for r in results])
        share = np.array([np.mean(actual == s) for s in range(1, 6)])
        ax.bar(np.arange(1, 6), share / 0.25, width=0.25, color="lightgray", label="actual")
        ax.hist(predicted, bins=bins, density=True, histtype="step", lw=1.8, label="predicted")
        ax.set_title(f"{name}: sd {predicted.std():.2f} vs {actual.std():.2f}", fontsize=9)
        ax.set_xlabel("stars")
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Predicted vs actual test ratings (all folds pooled)")
    _save(plt, fig, path)


def plot_temporal(random: list[SplitResult], temporal: SplitResult, path: Path) -> None:
    plt = _pyplot()
    by_name = runs_by_name(random, rated=True)
    names = [r.name for r in temporal.runs if not np.isnan(r.rmse)]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    random_mean = [mean_std([r.rmse for r in by_name[n]])[0] if n in by_name else 0 for n in names]
    folds = ", ".join(r.split for r in random)
    ax.bar(x - 0.2, random_mean, 0.4, label=f"random folds ({folds}) mean")
    ax.bar(
        x + 0.2,
        [r.rmse for r in temporal.runs if not np.isnan(r.rmse)],
        0.4,
        label=f"last {TEMPORAL_LAST} per user",
    )
    ax.set_xticks(x, names)
    ax.set_ylim(0.8, None)
    ax.set_ylabel("test RMSE ★")
    ax.set_title("Random split vs temporal hold-out")
    ax.legend(fontsize=8)
    _save(plt, fig, path)
