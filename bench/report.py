# ruff: noqa: RUF001 - the Markdown uses the multiplication sign on purpose
"""Render bench results as docs/benchmarks.md and docs/img/bench_serving.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Route name -> minimum requests/s as a share of GET /health.
RATIO_TARGETS = {
    "POST /predict/mf (1 item)": 0.70,
    "GET /recommend/{u}?model=mf": 0.60,
    "GET /recommend/{u}?model=dense": 0.50,
    "GET /recommend/{u}?model=lstm": 0.40,
}
P99_TARGET_MS = 25.0
SCALE_P99_TARGET_MS = 50.0
TRAINING_RATIO_TARGET = 300.0
TRAINING_WALL_TARGET_S = 90.0  # all three models, rating and ranking objectives (issue 13; 60 s before the heads)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _ok(met: bool) -> str:
    return "met" if met else "**not met**"


def training_section(t: dict[str, Any], cmd: str) -> list[str]:
    loop = t["loop_only"]
    lines = [
        "## Training speed",
        "",
        f"Command: `{cmd}` (its `training` part). One process: ML-100K `u1.base` minus the pipeline's "
        f"validation share ({t['n_train']:,} ratings), in {t.get('rounds', 1)} rounds that each time the three "
        "loops below back to back, so drift in the machine's speed hits both sides of a ratio alike; the table "
        "shows the round with the median ratio.",
        "",
        "| loop | ratings/s | seconds/epoch |",
        "|---|---:|---:|",
        f"| `train_mf`, batch {loop.get('batch_size', '?')}, one epoch with its validation pass | "
        f"{t['minibatch_ratings_per_s']:,.0f} | {t['minibatch_seconds_per_epoch']:.2f} |",
        f"| `train_mf` inner loop only, first {loop['batches']} minibatches (no validation) | "
        f"{loop['ratings_per_s']:,.0f} | {loop['epoch_seconds_extrapolated']:.2f} (extrapolated) |",
        f"| one rating per optimizer step, same network/optimizer/loss/lr, {t['single_steps']} steps | "
        f"{t['single_ratings_per_s']:,.0f} | {t['n_train'] / t['single_ratings_per_s']:.1f} (extrapolated) |",
        "",
        f"**Minibatch / single-sample ratio: {t['ratio']:.0f}×** (inner loop only: "
        f"{t['ratio_loop_only']:.0f}×; every round: {', '.join(f'{r:.0f}×' for r in t.get('ratios', []))}); "
        f"target ≥ {TRAINING_RATIO_TARGET:.0f}× — {_ok(t['ratio'] >= TRAINING_RATIO_TARGET)}.",
        "",
    ]
    cli = t.get("cli")
    if cli and cli.get("timed_out_after_s"):
        lines += [
            f"Whole pipeline: `{cli['command']}` (with `OMP_NUM_THREADS` as below) did **not finish within "
            f"{cli['timed_out_after_s']:.0f} s**, when the benchmark stopped it — target < "
            f"{TRAINING_WALL_TARGET_S:.0f} s **not met** on this run.",
            "",
        ]
    elif cli:
        wall = cli["reported_seconds"] or cli["process_seconds"]
        lines += [
            f"Whole pipeline: `{cli['command']}` took **{wall:.1f} s** by its own table "
            f"({cli['process_seconds']:.1f} s process wall time including interpreter start); "
            f"target < {TRAINING_WALL_TARGET_S:.0f} s — {_ok(wall < TRAINING_WALL_TARGET_S)}.",
            "",
            "```",
            cli["table"],
            "```",
            "",
        ]
    return lines


def serving_section(s: dict[str, Any], cmd: str, image: str) -> list[str]:
    routes = s["routes"]
    w = routes[0]["command"].split(" http")[0]
    lines = [
        "## Serving",
        "",
        f"Command: `{cmd}` (its `serving` part). Store: {s['store']}; dataset split "
        f"`{s['dataset']['split']}`, "
        f"{s['dataset']['n_users']} users × {s['dataset']['n_items']} items.",
        f"Server: `{s['server_command']}` (one uvicorn worker, as `make serve`). Load: `{w} URL` (POST bodies from a "
        "Lua script), "
        "on the same 2 shared cores as the server, loopback only.",
        "",
        f"- process start → first 200 from `/ready`: **{s['ready_seconds']:.2f} s**",
        f"- server RSS (VmRSS) after load: **{s['rss_after_load_mb']:.0f} MiB**; after all load tests: "
        f"{s['rss_after_load_test_mb']:.0f} MiB",
        "",
        "| route | requests/s | ratio to /health | target | p50 ms | p90 ms | p99 ms | non-2xx | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in routes:
        target = RATIO_TARGETS.get(r["name"])
        shown = f"≥ {target:.2f}" if target else "-"
        met = (target is None or r["ratio"] >= target) and r["p99_ms"] <= P99_TARGET_MS and r["non_2xx"] == 0
        lines.append(
            f"| `{r['name']}` | {r['requests_per_s']:,.0f} | {r['ratio']:.2f} | "
            f"{shown} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['non_2xx']} | {_ok(met)} |"
        )
    lines += [
        "",
        f"Latency target: p99 ≤ {P99_TARGET_MS:.0f} ms on every route. Non-2xx must be 0 "
        "(wrk's `Non-2xx or 3xx responses`).",
        "",
        f"![Serving throughput and p99]({image})",
        "",
    ]
    if s.get("routes_two_workers"):
        lines += [
            "### Two workers",
            "",
            "The same routes and load on `--workers 2` (`WEB_CONCURRENCY=2`, one worker per core; wrk still "
            "shares the cores). Ratios are to this run's own `/health`.",
            "",
            "| route | requests/s | ratio to /health | p50 ms | p99 ms | non-2xx | p99 ≤ 25 ms |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in s["routes_two_workers"]:
            met = r["p99_ms"] <= P99_TARGET_MS and r["non_2xx"] == 0
            lines.append(
                f"| `{r['name']}` | {r['requests_per_s']:,.0f} | {r['ratio']:.2f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['non_2xx']} | {_ok(met)} |"
            )
        lines.append("")
    return lines


def scale_section(c: dict[str, Any], cmd: str) -> list[str]:
    b = c["build"]
    tr = c["training"]
    frac = c["n_ratings"] / 25_000_095
    per_batch = tr["seconds_per_batch"]
    lines = [
        "## Scale: a MovieLens-25M-sized store",
        "",
        f"Command: `{cmd}` (its `scale` part). No download: random-weight networks of the shipped shapes "
        "(`MFConfig`, `DenseConfig`, `LSTMConfig`) for 162,541 users × 62,423 items (random `user_taste`), and "
        f"**{c['n_ratings']:,} uniformly random ratings ({frac:.0%} of 25M's count)** for the "
        "histories, exported "
        "with `training.export.export_store` and served by the same uvicorn command.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| synthetic data / export | {b['generate_s']:.1f} s / {b['export_s']:.1f} s |",
        f"| store size on disk | {b['store_mb']:.0f} MiB |",
        f"| process start → `/ready` 200 | {c['ready_seconds']:.1f} s (registry's own load_seconds: "
        f"{c.get('registry_load_seconds')}) |",
        f"| server RSS after load | {c['rss_after_load_mb']:.0f} MiB |",
    ]
    for r in c["routes"]:
        met = r["p99_ms"] < SCALE_P99_TARGET_MS and r["non_2xx"] == 0
        lines.append(
            f"| `{r['name']}` | {r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
            f"p99 **{r['p99_ms']:.1f} ms** ({_ok(met)}, target < {SCALE_P99_TARGET_MS:.0f} ms), "
            f"non-2xx {r['non_2xx']} |"
        )
    for r in c.get("routes_one_connection", []):
        lines.append(
            f"| `{r['name']}`, 1 connection | {r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, non-2xx {r['non_2xx']} |"
        )
    lines += [
        "",
        "Training throughput at scale: `train_mf`'s real loss and optimizer (via `fit` replaced by a timer), "
        f"first {tr['batches']} minibatches of {tr.get('batch_size', '?')} on {tr['n_ratings']:,} synthetic "
        f"ratings over the 25M-sized index space: **{tr['ratings_per_s']:,.0f} ratings/s**, "
        f"{per_batch * 1000:.0f} ms per minibatch.",
        "",
        f"- one epoch of those {tr['n_ratings']:,} ratings: ≈ {_duration(tr['epoch_seconds_extrapolated'])}",
        f"- one epoch of 25M ratings *if* per-batch cost stayed constant: ≈ "
        f"{tr['epoch_seconds_at_25m_if_linear'] / 3600:.1f} h",
        "- per-minibatch cost here vs on ML-100K is in the next section: with sparse embedding gradients "
        "(SparseAdam) a step touches only the rows of its batch, so it should not grow with the catalog.",
        "",
    ]
    return lines


def super_linear_notes(results: dict[str, Any]) -> list[str]:
    notes = ["## What grows super-linearly", ""]
    t, c = results.get("training"), results.get("scale")
    if t and c:
        small = t["loop_only"]["seconds_per_batch"]
        big = c["training"]["seconds_per_batch"]
        notes.append(
            f"- MF training per minibatch: {small * 1000:.1f} ms on ML-100K vs {big * 1000:.0f} ms on "
            f"{c['training']['n_ratings']:,} ratings × 162,541 users ({big / small:.0f}× for "
            f"{c['training']['n_ratings'] / t['n_train']:.0f}× the ratings, same batch size); a ratio near 1 "
            "means an epoch grows linearly with ratings."
        )
    s = results.get("serving")
    if s and c:
        notes.append(
            f"- Start → ready: {s['ready_seconds']:.1f} s (ML-100K) vs {c['ready_seconds']:.1f} s "
            "(25M-sized); "
            f"RSS {s['rss_after_load_mb']:.0f} → {c['rss_after_load_mb']:.0f} MiB. "
            "Compare with the ~170× more users and ~37× more items to judge linearity."
        )
        p99s = {r["name"].split("=")[-1]: r["p99_ms"] for r in c["routes"]}
        small = {r["name"].split("=")[-1]: r["p99_ms"] for r in s["routes"] if "recommend" in r["name"]}
        notes.append(
            "- `/recommend` p99 (ms), ML-100K → 25M-sized: "
            + ", ".join(f"{m} {small.get(m, float('nan')):.1f} → {p99s[m]:.1f}" for m in p99s)
            + " (scoring every item is linear in items, ~37× more)."
        )
    notes.append("")
    return notes


def chart(serving: dict[str, Any], path: Path) -> None:
    routes = serving["routes"]
    names = [r["name"].replace(" (", "\n(").replace("?", "\n?") for r in routes]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    a.barh(names, [r["ratio"] for r in routes], color="tab:blue")
    for k, r in enumerate(routes):
        target = RATIO_TARGETS.get(r["name"])
        if target:
            a.plot([target, target], [k - 0.4, k + 0.4], color="tab:red", lw=2)
    a.set_xlabel("requests/s as a share of GET /health (red: target)")
    a.invert_yaxis()
    b.barh(names, [r["p99_ms"] for r in routes], color="tab:orange")
    b.axvline(P99_TARGET_MS, color="tab:red", lw=1, ls="--")
    b.set_xlabel(f"p99 latency, ms (dashed: {P99_TARGET_MS:.0f} ms target)")
    b.invert_yaxis()
    b.set_yticklabels([])
    fig.suptitle("Serving under wrk -t2 -c32 (one uvicorn worker, 2 shared cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results: dict[str, Any], docs: Path) -> None:
    cmd = results["command"]
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench --data DIR`); raw figures in `bench/out/results.json`. "
        "Targets are ratios measured within one run, so they hold on a loaded machine; absolute times are "
        "context only.",
        "",
        f"Last run: `{cmd}` — {results.get('seconds', float('nan')):.0f} s in all; "
        f"Python {m['python']}, torch {m['torch']} "
        f"({m['torch_threads']} intra-op threads), {m['cpus']} CPUs shared with other work "
        f"(load average {m['load_average_at_start'][0]:.1f} at start, "
        f"{m.get('load_average_at_end', [float('nan')])[0]:.1f} at end). "
        "Training here and in subprocesses runs with one intra-op thread (`--threads 1`, "
        "`OMP_NUM_THREADS=1`), as the server does: in a side measurement on this loaded 2-core box, two "
        "threads made both training loops ~10× slower (OpenMP spin-waiting).",
        "",
    ]
    if "training" in results:
        lines += training_section(results["training"], results["training"].get("from_earlier_command", cmd))
    if "serving" in results:
        image = "img/bench_serving.png"
        chart(results["serving"], docs / image)
        lines += serving_section(results["serving"], results["serving"].get("from_earlier_command", cmd), image)
    if "scale" in results:
        lines += scale_section(results["scale"], results["scale"].get("from_earlier_command", cmd))
    lines += super_linear_notes(results)
    (docs / "benchmarks.md").write_text("\n".join(lines).rstrip() + "\n")
