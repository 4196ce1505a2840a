"""Two replicas of the real server behind nginx, under load, while one restarts and the other hot-reloads.

``python -m bench.replicas`` prints the run; ``tests/deploy/test_load_balancer.py`` runs the same scenario and
requires zero failed requests. Everything listens on 127.0.0.1 on free ports, the load is bounded in count and
time, and only the processes started here are stopped.

The scenario (docs/scaling.md):

1. replicas A and B (`bench.server.start`: the Dockerfile's command, which ``make serve`` runs too, each on
   its own port with ``RECSYS_MODELS_DIR`` pointing at a copy of the store) and nginx with
   ``deploy/nginx/nginx.conf`` (only its addresses swapped) in front, as a foreground process;
2. client threads send a mix of GET and POST requests through nginx and record every answer;
3. a new mf version is written into the store (as a retraining would), A gets SIGTERM, exits gracefully and
   is started again on the same port (on the new store), and once it is ready B gets ``POST /admin/reload``;
4. the load goes on for a while, then stops. A failure is any answer but 200 or any transport error.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import torch

from app.artifacts import MANIFEST_FILE, MODULE_META_FILE, VERSIONS_DIR
from bench.server import HOST, REPO, Server, free_port, start

NGINX_CONF = REPO / "deploy" / "nginx" / "nginx.conf"
ADMIN_KEY = "replicas-bench-admin-key-0123456789"
MAX_SECONDS = 120.0  # hard bound on the whole load phase
CLIENTS = 4
REJOIN_TIMEOUT = 30.0  # seconds after the reload for both replicas to be taking traffic through nginx
# (method, path, json body): each kind of route, GET and POST, every model.
REQUESTS: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "/recommend/196?k=10&model=mf", None),
    ("POST", "/predict/dense", {"user_id": 196, "item_ids": [242, 302, 377]}),
    ("GET", "/items/50/similar?k=5&model=mf", None),
    ("POST", "/recommend", {"items": [50, 172, 181], "ratings": [5, 5, 4], "k": 5}),
    ("GET", "/recommend/22?k=5&model=lstm&genres=Comedy", None),
]


@dataclass
class Replica:
    name: str
    port: int
    store: Path
    log: Path
    server: Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> float:
        """Start the server (on its own port again after a restart) and wait for /ready; returns the seconds
        that took."""
        env = {"RECSYS_ADMIN_API_KEY": ADMIN_KEY, "RECSYS_LOG_FORMAT": "json"}
        self.server = start(self.store, log_path=self.log, port=self.port, env=env)
        return self.server.ready_seconds

    def terminate(self) -> int:
        """SIGTERM (graceful shutdown) and wait; returns the exit status."""
        assert self.server is not None
        self.server.signal(signal.SIGTERM)
        return self.server.process.wait(timeout=30)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def requests_served(self) -> int:
        """Requests this process answered on the routes the load uses (from its own /metrics)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("recsys_http_requests_total{") and ('route="/recommend' in line or "/predict" in line):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


@dataclass
class Nginx:
    port: int
    prefix: Path
    server: Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, upstream_ports: list[int]) -> None:
        conf = self.prefix / "nginx.conf"
        conf.write_text(render_nginx_conf(NGINX_CONF.read_text(), upstream_ports, self.port))
        (self.prefix / "tmp").mkdir(exist_ok=True)
        # In the foreground, so it is a child of this process. As root, nginx would hand its workers to
        # 'nobody', who cannot enter the private temporary directory; keep them as the current user.
        directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        command = [nginx_binary(), "-p", str(self.prefix), "-c", str(conf), "-e", "error.log", "-g", directives]
        try:
            # SIGQUIT is nginx's graceful stop: finish open requests, then exit.
            self.server = start(
                None,
                log_path=self.prefix / "nginx.out",
                command=lambda _: command,
                port=self.port,
                ready_path="/health",
                timeout=20,
                stop_signal=signal.SIGQUIT,
            )
        except RuntimeError as e:  # nginx writes its errors to error.log (the config says so), not to stdout
            raise RuntimeError(f"nginx did not start: {e}\n{self.error_log()}") from None

    def error_log(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.prefix / "nginx.out", self.prefix / "error.log")]
        return "\n".join(p for p in parts if p)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def nginx_binary() -> str:
    found = shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed: run scripts/system-deps.sh (make test does)")
    return found


def render_nginx_conf(text: str, upstream_ports: list[int], listen_port: int) -> str:
    """`deploy/nginx/nginx.conf` with the addresses marked ``# address`` (upstreams in order, then listen)
    replaced; nothing else changes."""
    ports = iter([*upstream_ports, listen_port])
    lines = []
    marked = 0
    for line in text.splitlines():
        if line.rstrip().endswith("# address"):
            marked += 1
            line = re.sub(r"127\.0\.0\.1:\d+", f"{HOST}:{next(ports)}", line)
        lines.append(line)
    if marked != len(upstream_ports) + 1:
        raise ValueError(f"{NGINX_CONF} marks {marked} addresses, expected {len(upstream_ports) + 1}")
    return "\n".join(lines) + "\n"


def new_mf_version(store: Path) -> str:
    """Write a changed mf artifact into `store` and make it a new live store version, as a retraining would
    (files first, the kept version's manifest, then ``manifest.json`` replaced atomically last); returns the new
    mf version. The artifact keeps the model name it carries inside (`MODULE_META_FILE`)."""
    manifest_path = store / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["models"]["mf"]
    meta = {MODULE_META_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*", category=DeprecationWarning)
        module = torch.jit.load(str(store / entry["file"]), _extra_files=meta)
        with torch.no_grad():
            dict(module.named_parameters())["global_bias"].add_(0.01)
        buffer = io.BytesIO()
        torch.jit.save(module, buffer, _extra_files=meta)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    (store / f"mf-{sha[:12]}.pt").write_bytes(data)
    entry.update(file=f"mf-{sha[:12]}.pt", sha256=sha, version=f"mf-{sha[:12]}")
    now = datetime.now(UTC)
    manifest["created_at"] = now.isoformat()
    manifest["store_version"] = f"{now:%Y%m%dT%H%M%S%f}Z-{sha[:8]}"
    text = json.dumps(manifest, indent=2) + "\n"
    (store / VERSIONS_DIR).mkdir(exist_ok=True)
    (store / VERSIONS_DIR / f"{manifest['store_version']}.json").write_text(text)
    tmp = store / ".manifest-replicas.tmp"
    tmp.write_text(text)
    os.replace(tmp, manifest_path)
    return str(entry["version"])


@dataclass
class Load:
    """Client threads looping over `REQUESTS` through nginx until stopped (or `MAX_SECONDS`)."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)  # X-Model-Version values seen
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int = CLIENTS) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        for i in range(clients):
            t = threading.Thread(target=self._run, args=(i, deadline), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, offset: int, deadline: float) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = offset
            while not self.stop.is_set() and time.monotonic() < deadline:
                method, path, body = REQUESTS[i % len(REQUESTS)]
                i += 1
                try:
                    r = client.request(method, path, json=body)
                    outcome = None if r.status_code == 200 else f"{method} {path}: {r.status_code} {r.text[:200]}"
                    version = r.headers.get("x-model-version")
                except httpx.HTTPError as e:
                    outcome, version = f"{method} {path}: {type(e).__name__}: {e}", None
                with self.lock:
                    if outcome is None:
                        self.ok += 1
                    else:
                        self.failures.append(outcome)
                    if version:
                        self.versions.add(version)

    def count(self) -> int:
        with self.lock:
            return self.ok + len(self.failures)

    def wait_for(self, more: int, timeout: float = 60.0) -> None:
        """Block until `more` further requests have been answered."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the load stalled at {self.count()} requests")
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=40)


@dataclass
class Result:
    requests: int
    failures: list[str]
    seconds: float
    during_restart: int  # requests answered between A's SIGTERM and A ready again (all by B)
    restart_exit_status: int
    restart_ready_seconds: float
    reload: dict[str, object]
    served_by_restarted: int  # requests the restarted A answered after it came back
    served_by_reloaded: int
    new_mf_version: str
    versions_seen: set[str]

    def summary(self) -> str:
        return (
            f"{self.requests} requests in {self.seconds:.1f} s through nginx, {len(self.failures)} failed; "
            f"{self.during_restart} answered while replica A was restarting (SIGTERM exit {self.restart_exit_status}, "
            f"ready again in {self.restart_ready_seconds:.1f} s); reload of B changed {self.reload.get('changed')} "
            f"in {self.reload.get('load_seconds')} s; afterwards A answered {self.served_by_restarted} and B "
            f"{self.served_by_reloaded} requests; mf versions seen: {sorted(self.versions_seen)}"
        )


def run(workdir: Path, source_store: Path, *, log: Callable[[str], None] = lambda _: None) -> Result:
    """The scenario of the module docstring, in `workdir`, on a copy of `source_store`."""
    store = workdir / "store"
    shutil.copytree(source_store, store)
    a = Replica("A", free_port(), store, workdir / "replica-a.log")
    b = Replica("B", free_port(), store, workdir / "replica-b.log")
    prefix = workdir / "nginx"
    prefix.mkdir()
    nginx = Nginx(free_port(), prefix)
    load = Load(nginx.url)
    try:
        a.start()
        b.start()
        nginx.start([a.port, b.port])
        log(f"replicas on :{a.port} and :{b.port}, nginx on :{nginx.port}")
        start = time.monotonic()
        load.start()
        load.wait_for(200)
        version = new_mf_version(store)
        before = load.count()
        status = a.terminate()
        log(f"A stopped with status {status}")
        ready = a.start()
        during = load.count() - before
        log(f"A ready again after {ready:.1f} s; {during} requests meanwhile")
        reload = httpx.post(f"{b.url}/admin/reload", headers={"X-API-Key": ADMIN_KEY}, timeout=120)
        if reload.status_code != 200:
            raise RuntimeError(f"reload of B failed: {reload.status_code} {reload.text}")
        a_before, b_before = a.requests_served(), b.requests_served()
        load.wait_for(300)
        # nginx sends A traffic again once its fail_timeout after A's last refused connection has passed; on a
        # busy machine that may be after these 300 requests, so wait (bounded) for both to have answered some.
        deadline = time.monotonic() + REJOIN_TIMEOUT
        while time.monotonic() < deadline and min(a.requests_served() - a_before, b.requests_served() - b_before) == 0:
            time.sleep(0.25)
        load.finish()
        seconds = time.monotonic() - start
        return Result(
            requests=load.count(),
            failures=list(load.failures),
            seconds=seconds,
            during_restart=during,
            restart_exit_status=status,
            restart_ready_seconds=ready,
            reload=reload.json(),
            served_by_restarted=a.requests_served() - a_before,
            served_by_reloaded=b.requests_served() - b_before,
            new_mf_version=version,
            versions_seen=set(load.versions),
        )
    finally:
        load.finish()
        nginx.stop()
        a.stop()
        b.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, default=REPO / "models_store", help="model store to serve (copied)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recsys-replicas-") as tmp:
        result = run(Path(tmp), args.store, log=lambda line: print(line, flush=True))
    print(result.summary())
    for failure in result.failures[:20]:
        print("  failed:", failure)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
