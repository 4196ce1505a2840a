"""Real sockets against a real uvicorn (the documented command): request heads, request time and connections are
bounded, and the server keeps serving through each attack. RECSYS_REQUEST_TIMEOUT is shortened to keep the
tests quick; every flag is the production one."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.server import HOST, Server, serve
from tests.conftest import SyntheticStore
from tests.e2e.conftest import connect, read_response, request_head

TIMEOUT = 2.0  # RECSYS_REQUEST_TIMEOUT for these servers
LIMIT = 256  # --limit-concurrency in SERVE_FLAGS
pytestmark = pytest.mark.xdist_group("e2e-resources")


@pytest.fixture(scope="module")
def server(synthetic_store: SyntheticStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("resources") / "server.log"
    with serve(synthetic_store.path, log_path=log, env={"RECSYS_REQUEST_TIMEOUT": str(TIMEOUT)}) as running:
        yield running


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sends until it closes `sock`; fails if it is still open after `seconds`."""
    sock.settimeout(seconds)
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    pytest.fail(f"connection still open after {seconds} s; received {data[:200]!r}")


def _healthy(server: Server) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_an_oversized_request_head_is_431_and_closed(server: Server) -> None:
    headers = {f"x-filler-{i}": "a" * 1000 for i in range(1000)}  # a 1 MB head, as 8 MB ones were accepted
    with connect(server) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused before all of it was sent
            sock.sendall(request_head("GET", "/health", headers))
        reply = _closed_within(sock, 10)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    # Just past the limit in one read (a single 20 KB header) is refused too; just under it is served.
    with connect(server) as sock:
        sock.sendall(request_head("GET", "/health", {"x-big": "a" * 20_000}))
        reply = _closed_within(sock, 10)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    with connect(server) as sock:
        sock.sendall(request_head("GET", "/health", {"x-big": "a" * 16_000}))
        assert read_response(sock)[0] == 200
    # A normal head, with a normal amount of headers, is served.
    with connect(server) as sock:
        sock.sendall(request_head("GET", "/health", {f"x-h-{i}": "v" * 100 for i in range(50)}))
        assert read_response(sock)[0] == 200
    assert "request head over" in server.log_text()
    _healthy(server)


def test_slowloris_and_idle_sockets_are_closed_after_the_request_timeout(server: Server) -> None:
    sockets = [connect(server) for _ in range(50)]
    try:
        start = time.monotonic()
        for i, sock in enumerate(sockets):
            if i % 2:  # half send a head that never ends, a byte a second; half never send anything
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: ")
        while time.monotonic() - start < TIMEOUT / 2:
            for sock in sockets[1::2]:
                sock.sendall(b"a")
            time.sleep(0.2)
        _healthy(server)  # while they hang, others are served
        for sock in sockets:
            reply = _closed_within(sock, TIMEOUT + 10)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert time.monotonic() - start < TIMEOUT + 10
    finally:
        for sock in sockets:
            sock.close()
    assert "not received within" in server.log_text()
    _healthy(server)


def test_a_half_sent_body_is_cut_off(server: Server) -> None:
    with connect(server) as sock:
        head = request_head("POST", "/predict/mf", {"content-type": "application/json", "content-length": "100"})
        sock.sendall(head + b'{"user_id": 101,')
        reply = _closed_within(sock, TIMEOUT + 10)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
    _healthy(server)


def test_connections_past_the_limit_are_refused_with_503_not_left_to_exhaust_descriptors(server: Server) -> None:
    idle = [connect(server) for _ in range(LIMIT + 20)]
    try:
        time.sleep(0.5)
        refused = 0
        for sock in idle[LIMIT:]:
            reply = _closed_within(sock, 5)
            refused += reply.startswith(b"HTTP/1.1 503")
        assert refused >= 20 - 2, refused  # a couple may race with connections the server is closing
        assert "over --limit-concurrency" in server.log_text()
    finally:
        for sock in idle:
            sock.close()
    # Once they are gone, connections are served again.
    deadline = time.monotonic() + 10
    while True:
        try:
            _healthy(server)
            break
        except (AssertionError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_keep_alive_still_serves_several_requests_on_one_connection(server: Server) -> None:
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(request_head("GET", "/health", {}))
            assert read_response(sock)[0] == 200
            time.sleep(TIMEOUT * 0.6)  # idle between requests: the keep-alive timer (5 s), not the request's
