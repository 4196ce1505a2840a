"""Run the real service as a subprocess and load it with `wrk`: start → /ready time, RSS, wrk parsing.

The server is started exactly as the README does (``uvicorn app.main:create_app --factory``), on loopback,
with ``RECSYS_MODELS_DIR`` pointing at the store under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only


@dataclass
class Server:
    pid: int
    url: str
    ready_seconds: float  # process start -> first 200 from /ready
    rss_after_load_mb: float


@dataclass
class WrkResult:
    name: str
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    command: str
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` from /proc (VmRSS, in MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def uvicorn_command(
    port: int, workers: int = 1, app: str = "app.main:create_app", app_dir: Path | None = None
) -> list[str]:
    """uvicorn as `make serve` runs it (uvicorn's access log off); `app_dir` serves another checkout's app."""
    uvicorn = Path(sys.executable).with_name("uvicorn")
    cmd = [str(uvicorn), app, "--factory", "--host", HOST, "--port", str(port), "--no-access-log"]
    if app_dir is not None:
        cmd += ["--app-dir", str(app_dir)]
    return cmd + (["--workers", str(workers)] if workers > 1 else [])


@contextmanager
def serve(
    store: Path,
    *,
    timeout: float = 600.0,
    log_path: Path | None = None,
    workers: int = 1,
    command: Callable[[int], list[str]] | None = None,
    ready_path: str = "/ready",
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start uvicorn on `store` (or `command(port)`), wait for `ready_path` (and, with several `workers`, for
    every worker's start-up line in `log_path`: /ready answers as soon as one is up), yield, then stop what we
    started: the process and its children, which run in a session of their own (LitServe forks workers)."""
    port = free_port()
    env = {**os.environ, "RECSYS_MODELS_DIR": str(store), **(env or {})}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    start = time.perf_counter()
    cmd = command(port) if command else uvicorn_command(port, workers)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before /ready (log: {log_path})")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"server not ready after {timeout} s (log: {log_path})")
            try:
                with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        while workers > 1 and log_path and log_path.read_bytes().count(b"Application startup complete") < workers:
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"not all {workers} workers ready after {timeout} s (log: {log_path})")
            time.sleep(0.05)
        ready = time.perf_counter() - start
        yield Server(pid=proc.pid, url=url, ready_seconds=ready, rss_after_load_mb=rss_mb(proc.pid))
    finally:
        _stop_group(proc)
        if log_path:
            log.close()  # type: ignore[union-attr]


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we created (our server and whatever it forked), SIGKILL after 20 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # children (LitServe workers) may outlive the leader briefly
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of `pids` so far, from /proc (clock ticks)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def group_pids(pgid: int) -> list[int]:
    """Every process in process group `pgid` (a server and the workers it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    """POST `body` as JSON and return the decoded answer."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def lua_post(path: Path, body: dict[str, Any]) -> Path:
    """A wrk script that POSTs `body` as JSON on every request."""
    text = json.dumps(body).replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(f"wrk.method = 'POST'\nwrk.body = '{text}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    return path


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"unparsable wrk latency {value!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(name: str, output: str, command: str) -> WrkResult:
    """Requests/s, the 50/75/90/99 percentiles of `--latency`, non-2xx and socket errors from wrk's text."""
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if rps is None or len(pct) != 4 or total is None:
        raise RuntimeError(f"could not parse wrk output for {name}:\n{output}")
    return WrkResult(
        name=name,
        requests_per_s=float(rps.group(1)),
        p50_ms=pct[50],
        p75_ms=pct[75],
        p90_ms=pct[90],
        p99_ms=pct[99],
        requests=int(total.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        command=command,
    )


def run_wrk(
    name: str,
    url: str,
    *,
    script: Path | None = None,
    threads: int = 2,
    connections: int = 32,
    duration: int = 10,
) -> WrkResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found; run `bash scripts/system-deps.sh`")
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    shown = " ".join(["wrk", *cmd[1:]])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    return parse_wrk(name, out, shown)
