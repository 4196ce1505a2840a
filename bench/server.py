"""Start the real service (or a peer) as a subprocess and wait for it; load it with `wrk`: wrk parsing, RSS, CPU.

`serve` is the one way bench/ and tests/ start a server: `serve_command` is the Dockerfile's CMD (the command
`make serve` and docker-compose run too) on a free loopback port, with ``RECSYS_MODELS_DIR`` pointing at the
store under test; `serve` waits for ``/ready``, raises with the server's log if it never gets there, and stops
what it started. Peers (the anchors in bench/anchors, LitServe) pass a command of their own.

Standard library only, and it imports neither tests/ nor training/, so tests may import it and the benchmarks
need nothing from tests/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
# Seconds from start to /ready: ~1-2 s for the committed store, but the 2 cores are shared with other runs.
START_TIMEOUT = 120.0
LARGE_START_TIMEOUT = 600.0  # a 25M-sized store: loading, verifying and indexing it can take minutes
STOP_TIMEOUT = 20.0  # after the stop signal, then SIGKILL; uvicorn's own graceful timeout is 10 s (SERVE_FLAGS)

# The Makefile's SERVE_FLAGS and the Dockerfile's CMD, flag for flag (tests/test_serve_command.py checks it):
# app.protocol bounds header size, request time and connections; see docs/service.md.
SERVE_FLAGS = [
    "--http", "app.protocol:BoundedHttpToolsProtocol", "--timeout-keep-alive", "5", "--limit-concurrency", "256",
    "--backlog", "512", "--no-access-log", "--timeout-graceful-shutdown", "10",
]  # fmt: skip


@dataclass
class Server:
    """A server we started and saw ready; `stop` (or leaving `serve`) ends it and everything it forked."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    ready_seconds: float  # process start -> first 200 from the ready path (and every worker up)
    rss_after_load_mb: float
    stop_signal: signal.Signals = signal.SIGTERM

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        """`sig` to the server process itself (not its workers), as `docker stop` or a supervisor sends it."""
        self.process.send_signal(sig)

    def stop(self) -> int:
        """`stop_signal` to the process group we created (the server and whatever it forked: uvicorn or
        LitServe workers), SIGKILL after `STOP_TIMEOUT`; returns the server's exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # workers may outlive the leader briefly
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return self.process.returncode
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


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


def serve_command(
    port: int, *, workers: int = 1, app: str = "app.main:create_app", app_dir: Path | None = None
) -> list[str]:
    """The Dockerfile's CMD on loopback: ``uvicorn APP --factory --host 127.0.0.1 --port PORT --workers N`` and
    `SERVE_FLAGS`. `app` serves another factory on the same server (the anchors), `app_dir` another checkout's
    app package (the benchmark's "before")."""
    # The console script next to this interpreter, as the image runs the one in /opt/venv/bin.
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    cmd = [uvicorn, app, "--factory", "--host", HOST, "--port", str(port), "--workers", str(workers), *SERVE_FLAGS]
    return cmd + (["--app-dir", str(app_dir)] if app_dir is not None else [])


def start(
    store: Path | None,
    *,
    log_path: Path,
    command: Callable[[int], list[str]] | None = None,
    port: int | None = None,
    workers: int = 1,
    ready_path: str = "/ready",
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Server:
    """Start `command(port)` (default `serve_command`) serving `store`, on `port` or a free one, appending its
    output to `log_path`; return once `ready_path` answers 200 (and, with several `workers`, every worker has
    logged its start-up: /ready answers as soon as one is up). If it exits or `timeout` passes first, stop it
    and raise with the end of its log.

    The environment is this process's without any ``RECSYS_`` variable (a setting in the caller's shell would
    change what is measured or tested), then ``RECSYS_MODELS_DIR=store``, then `env`. The server runs in a
    session of its own, so stopping it reaches whatever it forks and nothing else."""
    port = free_port() if port is None else port
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    if store is not None:
        environ["RECSYS_MODELS_DIR"] = str(store)
    environ.update(env or {})
    cmd = command(port) if command is not None else serve_command(port, workers=workers)
    offset = log_path.stat().st_size if log_path.exists() else 0  # a restart appends to the same log
    began = time.perf_counter()
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            cmd, cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, port, log_path, 0.0, 0.0, stop_signal)
    status: int | None = None  # the last answer to ready_path, for the error
    try:
        while True:
            if status != 200:
                status = _status(f"{server.url}{ready_path}")
            if status == 200 and (workers <= 1 or _started_workers(log_path, offset) >= workers):
                break
            if process.poll() is not None:
                raise RuntimeError(_failure(server, f"exited with status {process.returncode}", status, offset))
            if time.perf_counter() - began > timeout:
                raise RuntimeError(_failure(server, f"not ready after {timeout:.0f} s", status, offset))
            time.sleep(0.05)
    except BaseException:
        server.stop()
        raise
    server.ready_seconds = time.perf_counter() - began
    server.rss_after_load_mb = rss_mb(process.pid)
    return server


@contextmanager
def serve(store: Path | None, *, log_path: Path | None = None, **options: Any) -> Iterator[Server]:
    """`start` a server with `options` (its log in a temporary file unless `log_path` is given), yield it, then
    stop it."""
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="server-"))) / "server.log"
        server = start(store, log_path=log_path, **options)
        try:
            yield server
        finally:
            server.stop()


def _status(url: str) -> int | None:
    """The HTTP status of a GET to `url`, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:  # not listening yet, or reset while starting
        return None


def _started_workers(log: Path, offset: int) -> int:
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().count(b"Application startup complete")


def _failure(server: Server, what: str, status: int | None, offset: int, lines: int = 60) -> str:
    with server.log.open("rb") as f:
        f.seek(offset)
        tail = f.read().decode(errors="replace").splitlines()[-lines:]
    shown = shlex.join(str(a) for a in server.process.args)  # type: ignore[union-attr]
    return (
        f"server {what} (last ready status: {status}); command: {shown}\n"
        f"last {len(tail)} lines of {server.log}:\n" + "\n".join(tail)
    )


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
