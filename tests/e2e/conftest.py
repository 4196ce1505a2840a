"""A real uvicorn process, started as docs/service.md documents it, on a free loopback port.

Helpers for talking raw HTTP/1.1 over a socket, for what an HTTP client library will not do on request:
chunked bodies with no Content-Length, and a request whose body is only half sent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 90.0  # seconds; loading is ~1 s, but the 2 shared cores may be busy with other tests


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# The Makefile's SERVE_FLAGS and the Dockerfile's CMD, flag for flag (tests/test_serve_command.py checks it).
SERVE_FLAGS = [
    "--http", "app.protocol:BoundedHttpToolsProtocol", "--timeout-keep-alive", "5", "--limit-concurrency", "256",
    "--backlog", "512", "--no-access-log", "--timeout-graceful-shutdown", "10",
]  # fmt: skip


def command(port: int) -> list[str]:
    """The documented production command (docs/service.md), on loopback."""
    return [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", HOST, "--port", str(port),
        *SERVE_FLAGS,
    ]  # fmt: skip


@contextmanager
def running_server(store: Path, log: Path, **env: str) -> Iterator[Server]:
    """Start uvicorn on `store`, wait for /ready, yield; stop it (this process only) if still running."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    environ.update(RECSYS_MODELS_DIR=str(store), **env)
    with log.open("wb") as out:
        process = subprocess.Popen(command(port), cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process=process, port=port, log=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not become ready:\n{server.log_text()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def connect(server: Server) -> socket.socket:
    return socket.create_connection((HOST, server.port), timeout=10)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: status, lower-cased headers, body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body
