"""Where a request's time goes: py-spy samples a running server under wrk load, and every sample is charged to
one stage of the request by the innermost frame that names a stage.

Stages, innermost wins (logging called from the middleware is logging; the model called from a handler is the
model call):

- server: uvicorn, the event loop, HTTP parsing and the socket writes of the response
- middleware: the service's and the framework's middleware stack, Prometheus metrics, the request id
- routing + params: route matching, dependency injection, query/path/body parsing and validation
- model call: the TorchScript call and the numpy work around it (masking, top-k, lookups)
- response building: building the response objects (pydantic models, per-item dicts or fragments)
- serialisation: turning them into JSON bytes (pydantic-core, orjson, FastAPI's serialize_response)
- logging: the access log and anything else the logging module does

py-spy attaches to the server process by pid (``py-spy record --pid``) and records only on-CPU Python stacks
(time idle in the event loop is not a sample), at ``--rate`` Hz.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

STAGES = (
    "server",
    "middleware",
    "routing + params",
    "model call",
    "response building",
    "serialisation",
    "logging",
)

# (stage, regex over "function (file)"); checked for each frame, root to leaf, and the last match wins.
_RULES: list[tuple[str, re.Pattern[str]]] = [
    (stage, re.compile(pattern))
    for stage, pattern in [
        ("server", r"\((uvicorn|asyncio|uvloop|httptools)/"),
        ("middleware", r"\(app/middleware\.py|\(app/metrics\.py|\(prometheus_client/|\(starlette/middleware/"),
        ("middleware", r"\(fastapi/(middleware|telemetry|_body_limit)|\(starlette/_exception_handler"),
        ("middleware", r"^(FastAPI|Starlette)\.__call__ |\(app/logs\.py\)$|^(accepted|new)_request_id "),
        ("routing + params", r"\(starlette/routing\.py|\(fastapi/routing\.py|\(fastapi/dependencies/"),
        ("routing + params", r"\(fastapi/_compat/|\(starlette/(requests|datastructures)\.py|\(app/deps\.py"),
        ("routing + params", r"^(_handle_request|recommend_items|recommend_session|predict_\w+) \(app/routers/"),
        ("routing + params", r"^(_words|_genres|_ids|_invalid) \(app/routers/"),
        ("model call", r"\(app/services/|\(app/registry\.py|\(torch/|\(numpy/|anchors/work\.py"),
        ("response building", r"\(pydantic/main\.py|^_(items|predictions|fragments?|page_json)\w* \(app/"),
        ("response building", r"\(app/schemas\.py|\(app/responses\.py"),
        ("serialisation", r"^serialize_response |^_prepare_response_content |\(fastapi/encoders\.py"),
        ("serialisation", r"\(starlette/responses\.py|^(dumps|render) |\(orjson|\(json/|dump_json \(pydantic/"),
        ("serialisation", r"^ModelField\.serialize"),
        ("logging", r"\(logging/|^(KeyValueFormatter|JsonFormatter)\.|^_(fields|timestamp|value) \(app/logs"),
        # uvicorn's send is reached through every middleware's send wrapper: it is the server's socket write.
        ("server", r"^RequestResponseCycle\.send "),
    ]
]


def classify(stack: list[str]) -> str:
    stage = "server"
    for frame in stack:
        frame = re.sub(r":\d+\)$", ")", frame)
        for name, rule in _RULES:
            if rule.search(frame):
                stage = name
    return stage


def parse_raw(text: str) -> tuple[Counter[str], int]:
    """Samples per stage from py-spy's ``--format raw`` output (collapsed stacks, ``a;b;c count``)."""
    stages: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        stages[classify(stack.split(";"))] += n
        total += n
    return stages, total


def record(py_spy: Path, pid: int, seconds: float, out: Path, rate: int = 500) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid` for `seconds`; the caller drives load meanwhile and waits for the process."""
    cmd = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate)]
    cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached before the load starts
    return proc


def breakdown(raw: Path, requests_per_s: float) -> dict[str, object]:
    """Shares of on-CPU samples per stage and a first estimate of microseconds per request (share times
    1e6 / req/s, as if the process was on CPU all the time; `bench.serving` rescales by measured CPU time)."""
    stages, total = parse_raw(raw.read_text())
    share = {s: stages.get(s, 0) / total if total else 0.0 for s in STAGES}
    per_request = 1e6 / requests_per_s if requests_per_s else float("nan")
    return {
        "samples": total,
        "share": share,
        "us_per_request": {s: share[s] * per_request for s in STAGES},
        "requests_per_s": requests_per_s,
    }
