# ruff: noqa: RUF001 - the Markdown uses the multiplication sign on purpose
"""Render bench results as docs/benchmarks.md and docs/img/bench_serving.png."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Route name -> minimum requests/s as a share of the bare-ASGI floor doing the same model work (issue 17);
# every route not named here: DEFAULT_FLOOR_TARGET.
FLOOR_TARGETS = {
    "POST /predict/mf (1 item)": 0.60,
    "GET /recommend/{u}?model=mf": 0.60,
}
DEFAULT_FLOOR_TARGET = 0.50
# Route name -> minimum requests/s as a multiple of LitServe serving the same artifact.
PEER_TARGETS = {"GET /recommend/{u}?model=mf": 2.0}
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
            f"Whole pipeline: `{cli['command']}` took **{wall:.1f} s** by its own summary "
            f"({cli['process_seconds']:.1f} s process wall time including interpreter start); "
            f"target < {TRAINING_WALL_TARGET_S:.0f} s — {_ok(wall < TRAINING_WALL_TARGET_S)}.",
            "",
            "```",
            cli["table"],
            "```",
            "",
        ]
    return lines


SERVER_NAMES = {
    "service": "service",
    "service2": "service, 2 workers",
    "before": "before",
    "floor": "bare ASGI (floor)",
    "framework": "minimal FastAPI",
    "peer": "LitServe",
}


def _ratio(r: dict[str, Any], server: str) -> str:
    x = r["ratios"].get(server)
    if x is None:
        return "-"
    spread = f" ({x['min']:.2f}–{x['max']:.2f})" if len(x["per_round"]) > 1 else ""
    return f"{x['median']:.2f}{spread}"


def _rps(r: dict[str, Any], server: str) -> str:
    x = r["servers"].get(server)
    return f"{x['requests_per_s']:,.0f}" if x else "-"


def _framework_ceiling(r: dict[str, Any]) -> str:
    """The minimal FastAPI app's requests/s over the floor's, per round: what any FastAPI app can reach."""
    fw, floor = r["servers"].get("framework"), r["servers"].get("floor")
    if not fw or not floor:
        return "-"
    ratios = [a["requests_per_s"] / b["requests_per_s"] for a, b in zip(fw["runs"], floor["runs"], strict=True)]
    ratios.sort()
    median = statistics.median(ratios)
    spread = f" ({ratios[0]:.2f}–{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    return f"{median:.2f}{spread}"


def serving_verdicts(r: dict[str, Any]) -> tuple[bool, bool | None]:
    """(floor ratio met, peer ratio met or None where the route has no peer target)."""
    floor = r["ratios"].get("floor", {}).get("median", 0.0)
    floor_ok = floor >= FLOOR_TARGETS.get(r["name"], DEFAULT_FLOOR_TARGET)
    peer_target = PEER_TARGETS.get(r["name"])
    peer_ok = None if peer_target is None else r["ratios"].get("peer", {}).get("median", 0.0) >= peer_target
    return floor_ok, peer_ok


def serving_section(s: dict[str, Any], cmd: str, image: str) -> list[str]:
    routes = s["routes"]
    servers = s["servers"]
    anchors = s.get("anchor_commands", {})
    lines = [
        "## Serving",
        "",
        f"Command: `{cmd}` (its `serving` part). Store: {s['store']}; dataset split "
        f"`{s['dataset']['split']}`, {s['dataset']['n_users']} users × {s['dataset']['n_items']} items.",
        "",
        f"Servers, all on one uvicorn per server, loaded one at a time with `wrk -t2 -c{s['connections']} "
        f"-d{s['duration_s']}s --latency` (POST bodies from a Lua script) on the same 2 shared cores, loopback "
        f"only; {s['rounds']} rounds over every route and server, servers in a rotating order, so each ratio "
        "compares runs seconds apart. Figures are medians over rounds; a ratio's range over the rounds is in "
        "brackets: that is how noisy this shared machine is.",
        "",
        f"- **service**: `{s['server_command']}` (one worker, as `make serve`)",
    ]
    if "service2" in servers:
        lines.append("- **service, 2 workers**: the same with `--workers 2` (one per core)")
    if "before" in servers:
        lines.append(
            "- **before**: the same command serving the `app/` of the commit before this work (`--baseline-app`)"
        )
    lines += [
        f"- **floor**: `{anchors.get('floor', 'bench.anchors.bare')}` — a bare ASGI app, no framework, doing each "
        "route's model work (MF `score_all`, seen items masked, top-10 with titles, orjson; `predict` for one item)",
        f"- **framework**: `{anchors.get('framework', 'bench.anchors.minimal')}` — the same work in the least FastAPI "
        "app (typed parameters, a pydantic body, orjson bytes returned, no middleware)",
    ]
    if "peer" in servers:
        lines.append(
            f"- **peer**: `{anchors.get('peer', 'LitServe')}` — LitServe serving the same artifacts with the same "
            "work; its routes are POST only, so `/recommend` takes the user, k and model as a JSON body"
        )
    lines += [
        "",
        f"- service: process start → first 200 from `/ready`: **{s['ready_seconds']:.2f} s**; RSS after load "
        f"**{s['rss_after_load_mb']:.0f} MiB**, after all load tests {s['rss_after_load_test_mb']:.0f} MiB",
        "",
        "Requests/s:",
        "",
        "| route | " + " | ".join(SERVER_NAMES[k] for k in servers) + " |",
        "|---|" + "---:|" * len(servers),
    ]
    for r in routes:
        lines.append(f"| `{r['name']}` | " + " | ".join(_rps(r, k) for k in servers) + " |")
    others = [k for k in servers if k not in ("service", "service2")]
    lines += [
        "",
        "The service's requests/s as a ratio of each (median over rounds, range in brackets), with the targets "
        f"of issue 17 (floor: ≥ 0.60 for `/predict/mf` and `/recommend` mf, ≥ {DEFAULT_FLOOR_TARGET:.2f} for "
        "the rest; LitServe: ≥ 2× for `/recommend` mf):",
        "",
        "| route | " + " | ".join(f"÷ {SERVER_NAMES[k]}" for k in others) + " | floor target | verdict | "
        "minimal FastAPI ÷ floor | 2 workers ÷ LitServe |",
        "|---|" + "---:|" * len(others) + "---:|---|---:|---:|",
    ]
    for r in routes:
        floor_ok, peer_ok = serving_verdicts(r)
        target = f"≥ {FLOOR_TARGETS.get(r['name'], DEFAULT_FLOOR_TARGET):.2f}"
        if r["name"] in PEER_TARGETS:
            target += f"; peer ≥ {PEER_TARGETS[r['name']]:.1f}"
        met = floor_ok and peer_ok is not False
        ratios = " | ".join(_ratio(r, k) for k in others)
        two = r.get("ratios_two_workers", {}).get("peer")
        two_shown = f"{two['median']:.2f} ({two['min']:.2f}–{two['max']:.2f})" if two else "-"
        lines.append(f"| `{r['name']}` | {ratios} | {target} | {_ok(met)} | {_framework_ceiling(r)} | {two_shown} |")
    lines += [
        "",
        "`minimal FastAPI ÷ floor` is the framework's own ceiling: the least FastAPI app doing the same work, "
        "as a share of the bare floor, in the same rounds; a ratio to the floor above it would need the "
        "service to do less per request than FastAPI itself does. `2 workers ÷ LitServe`: LitServe runs an "
        "HTTP process and an inference worker per endpoint, two busy processes per request, so on a machine "
        "this loaded it gets about twice the CPU share of a one-process server; the service on two workers "
        "is the like-for-like match (the verdict uses the one-worker ratio).",
        "",
        "CPU time per request (µs, all of a server's processes, from `/proc` during the same runs): less "
        "sensitive to the machine's load than requests/s, which also depend on how much CPU the server got.",
        "",
        "| route | " + " | ".join(SERVER_NAMES[k] for k in servers) + " | p99 ms: service (max over rounds) | "
        "p99 ms: floor |",
        "|---|" + "---:|" * len(servers) + "---:|---:|",
    ]
    for r in routes:
        cpu = [f"{r['servers'][k]['cpu_us_per_request']:.0f}" if k in r["servers"] else "-" for k in servers]
        svc = r["servers"]["service"]
        floor_p99 = f"{r['servers']['floor']['p99_ms']:.1f}" if "floor" in r["servers"] else "-"
        lines.append(
            f"| `{r['name']}` | "
            + " | ".join(cpu)
            + f" | {svc['p99_ms']:.1f} ({svc['p99_ms_max']:.1f}) | {floor_p99} |"
        )
    non_2xx = sum(x["non_2xx"] for r in routes for x in r["servers"].values())
    errors = {k: sum(r["servers"][k]["socket_errors"] for r in routes if k in r["servers"]) for k in servers}
    shown = ", ".join(f"{SERVER_NAMES[k]} {n}" for k, n in errors.items() if n) or "none"
    lines += [
        "",
        f"Non-2xx responses over all of these runs: {non_2xx}. wrk socket errors (requests unanswered within "
        f"wrk's 2 s timeout on this loaded machine): {shown}.",
        "",
        f"![Serving: ratio to the floor and p99]({image})",
        "",
    ]
    lines += inprocess_section(s)
    lines += profile_section(s)
    if "service2" in servers:
        lines += [
            "### Two workers",
            "",
            "The service on `--workers 2` (`WEB_CONCURRENCY=2`, one worker per core; wrk and everything else "
            "on the machine still share the cores), in the same rounds as above. Target: p99 ≤ "
            f"{P99_TARGET_MS:.0f} ms on every route; the floor's p99 in the same rounds shows how much of a "
            "tail the machine's load alone puts on a request.",
            "",
            "| route | requests/s | p50 ms | p99 ms (median of rounds) | p99 ms (worst round) | floor p99 ms | "
            "non-2xx | p99 ≤ 25 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in routes:
            x = r["servers"]["service2"]
            met = x["p99_ms"] <= P99_TARGET_MS and x["non_2xx"] == 0
            floor_p99 = f"{r['servers']['floor']['p99_ms']:.1f}" if "floor" in r["servers"] else "-"
            lines.append(
                f"| `{r['name']}` | {x['requests_per_s']:,.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
                f"{x['p99_ms_max']:.2f} | {floor_p99} | {x['non_2xx']} | {_ok(met)} |"
            )
        lines.append("")
    return lines


def inprocess_section(s: dict[str, Any]) -> list[str]:
    found = s.get("inprocess")
    if not found:
        return []
    table = found["us_per_request"]
    apps = [a for a in ("service", "before", "floor", "framework") if a in next(iter(table.values()))]
    lines = [
        "### In-process: CPU per request without sockets",
        "",
        "`python -m bench.inprocess_asgi` (run by the serving part): each app called directly as an ASGI "
        f"callable, its lifespan started as uvicorn would, {found['calls']}, process CPU time. No uvicorn, no "
        "wrk and no loopback, so what is left is what each app does per request, and the shared machine's "
        "load moves it far less than requests/s. Over the wire every server also pays uvicorn's parsing and "
        "the socket writes, the same for all, which pulls ratios towards 1. The ratios are of µs the other "
        "way round, i.e. requests/s as a share when CPU-bound (floor ÷ service is the service's share of the "
        "floor)." + (f" Command: `{found['command']}`." if found.get("command") else ""),
        "",
        "| route | " + " | ".join(f"{SERVER_NAMES[a]} µs" for a in apps) + " | floor ÷ service | "
        "framework ÷ service | framework ÷ floor |",
        "|---|" + "---:|" * (len(apps) + 3),
    ]
    for route, by_app in table.items():
        svc, floor, fw = by_app["service"], by_app["floor"], by_app["framework"]
        cells = " | ".join(f"{by_app[a]:.0f}" for a in apps)
        lines.append(f"| `{route}` | {cells} | {floor / svc:.2f} | {fw / svc:.2f} | {floor / fw:.2f} |")
    lines.append("")
    return lines


def profile_section(s: dict[str, Any]) -> list[str]:
    profiles = s.get("profiles") or {}
    if not profiles:
        return []
    from bench.profile import STAGES

    lines = [
        "### Where a request's time goes",
        "",
        "py-spy (`py-spy record --pid PID --rate 500 --format raw`, from the benchmark's own environment) "
        "sampling each server while wrk loads it; every sample is charged to the innermost frame that names "
        "a stage (`bench/profile.py`), and the shares are scaled by the CPU time per request measured in the "
        "same run (which py-spy's pauses inflate a little). µs per request; `before` → `service` where both "
        "were measured, then the floor's total for the same route:",
        "",
        "| route | " + " | ".join(STAGES) + " | total | floor total |",
        "|---|" + "---:|" * (len(STAGES) + 2),
    ]
    for name, by_server in profiles.items():
        svc, before, floor = by_server.get("service"), by_server.get("before"), by_server.get("floor")
        if not svc or "us_per_request" not in svc:
            continue
        cells = []
        for stage in STAGES:
            now = svc["us_per_request"][stage]
            if before and "us_per_request" in before:
                cells.append(f"{before['us_per_request'][stage]:.0f} → {now:.0f}")
            else:
                cells.append(f"{now:.0f}")
        total = f"{svc['cpu_us_per_request']:.0f}"
        if before and "cpu_us_per_request" in before:
            total = f"{before['cpu_us_per_request']:.0f} → {total}"
        floor_total = f"{floor['cpu_us_per_request']:.0f}" if floor and "cpu_us_per_request" in floor else "-"
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {total} | {floor_total} |")
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
        small = {
            r["name"].split("=")[-1]: r["servers"]["service"]["p99_ms"] if "servers" in r else r["p99_ms"]
            for r in s["routes"]
            if "recommend" in r["name"]
        }
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
    a.barh(names, [r["ratios"].get("floor", {}).get("median", 0.0) for r in routes], color="tab:blue")
    for k, r in enumerate(routes):
        target = FLOOR_TARGETS.get(r["name"], DEFAULT_FLOOR_TARGET)
        a.plot([target, target], [k - 0.4, k + 0.4], color="tab:red", lw=2)
    a.set_xlabel("requests/s as a share of the bare-ASGI floor (red: target)")
    a.invert_yaxis()
    b.barh(names, [r["servers"]["service"]["p99_ms"] for r in routes], color="tab:orange")
    b.axvline(P99_TARGET_MS, color="tab:red", lw=1, ls="--")
    b.set_xlabel(f"p99 latency, one worker, ms (dashed: {P99_TARGET_MS:.0f} ms, the two-worker target)")
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
    sections: dict[str, list[str]] = {}
    if "training" in results:
        sections["Training speed"] = training_section(
            results["training"], results["training"].get("from_earlier_command", cmd)
        )
    if "serving" in results:
        image = "img/bench_serving.png"
        chart(results["serving"], docs / image)
        sections["Serving"] = serving_section(
            results["serving"], results["serving"].get("from_earlier_command", cmd), image
        )
    if "scale" in results:
        sections["Scale"] = scale_section(results["scale"], results["scale"].get("from_earlier_command", cmd))
    if "serving" in results and "scale" in results:
        sections["What grows super-linearly"] = super_linear_notes(results)
    path = docs / "benchmarks.md"
    previous = _sections(path.read_text()) if path.exists() else {}
    # A part not measured this time keeps its section from the last run, and so does any section written by
    # hand (the soak run): `--skip` and `--quick` rewrite only what they measured.
    for heading in ORDER:
        if heading in sections:
            lines += sections[heading]
        elif heading in previous:
            lines += previous[heading]
    for heading, text in previous.items():
        if heading not in ORDER:
            lines += text
    path.write_text("\n".join(lines).rstrip() + "\n")


# Sections in the order they appear; "Serving hot path" is written by hand (what changed and why, issue 17)
# and kept next to the figures it explains.
ORDER = ("Training speed", "Serving", "Serving hot path (issue 17)", "Scale", "What grows super-linearly")


def _sections(text: str) -> dict[str, list[str]]:
    """The ``## `` sections of a benchmarks.md, keyed by their heading's first words (``Scale`` for
    ``## Scale: a MovieLens-25M-sized store``), each with its lines and a blank line after."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            key = line[3:].split(":")[0].strip()
            current = found.setdefault(key, [])
        if current is not None:
            current.append(line)
    for lines in found.values():
        while lines and not lines[-1].strip():
            lines.pop()
        lines.append("")
    return found
