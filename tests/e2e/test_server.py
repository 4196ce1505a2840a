"""The service as a real uvicorn process (the Dockerfile's command): chunked bodies, JSON logs, SIGHUP reload,
graceful SIGTERM."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from app.artifacts import MANIFEST_FILE
from bench.server import Server, serve
from tests.conftest import SyntheticStore
from tests.e2e.conftest import connect, read_response, request_head

KEY = "e2e-admin-key-0123456789abcdef"
# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status says why it ended:
# killed by SIGTERM (-15 here, 143 in a shell), not 0. A crash or a failed start-up is a positive status.
SIGTERM_EXIT = -signal.SIGTERM
PREDICT = {"user_id": 101, "item_ids": [1001, 1002, 1003]}


def _versions(server: Server) -> dict[str, str]:
    r = httpx.get(f"{server.url}/ready", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["models"]  # type: ignore[no-any-return]


def _json_lines(server: Server) -> list[dict[str, Any]]:
    """The service's own log lines (JSON); uvicorn's start/stop lines keep uvicorn's format."""
    lines = []
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _wait_for(condition: Any, what: str, server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert server.process.poll() is None, f"server exited while waiting for {what}:\n{server.log_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{server.log_text()}"
        time.sleep(0.2)


def _send_chunked(server: Server, chunks: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """POST /predict/mf with Transfer-Encoding: chunked (no Content-Length), stopping early if the server
    answers before the body is complete."""
    head = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    with connect(server) as sock:
        sock.sendall(request_head("POST", "/predict/mf", head))
        for chunk in [*chunks, b""]:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                break  # answered early (413): stop sending
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        return read_response(sock)


def test_a_real_server_limits_chunked_bodies_logs_json_and_reloads_on_sighup(
    synthetic_store: SyntheticStore, other_synthetic_store: SyntheticStore, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    for store in (synthetic_store, other_synthetic_store):
        for path in store.path.iterdir():
            if path.is_dir():  # versions/: both stores' version manifests, as two exports leave them
                shutil.copytree(path, live / path.name, dirs_exist_ok=True)
            else:
                shutil.copy(path, live / path.name)
    shutil.copy(synthetic_store.path / MANIFEST_FILE, live / MANIFEST_FILE)
    env = {
        "RECSYS_ADMIN_API_KEY": KEY,
        "RECSYS_LOG_FORMAT": "json",
        "RECSYS_MAX_BODY_BYTES": "4096",
        "RECSYS_ACCESS_LOG": "true",  # off by default; this test reads the access line
    }
    with serve(live, log_path=tmp_path / "server.log", env=env) as server:
        before = _versions(server)

        # A chunked body within the limit is served; past it, 413 as soon as the limit is crossed.
        body = json.dumps(PREDICT).encode()
        status, headers, answer = _send_chunked(server, [body[:10], body[10:]])
        assert status == 200 and json.loads(answer)["model_version"] == headers["x-model-version"]
        prefix = b'{"user_id": 101, "item_ids": [' + b"1001, " * 100
        status, _, answer = _send_chunked(server, [prefix] * 20 + [b"1001]}"])
        assert status == 413
        assert json.loads(answer)["detail"].startswith("request body too large; at most 4096 bytes")

        # JSON log lines with the request id; the access line holds the route template, not the path.
        r = httpx.get(f"{server.url}/recommend/117?k=2", headers={"X-Request-ID": "e2e-req-1"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "e2e-req-1"

        def logged() -> bool:
            return any(line.get("request_id") == "e2e-req-1" for line in _json_lines(server))

        _wait_for(logged, "the access line", server)
        [access] = [line for line in _json_lines(server) if line.get("request_id") == "e2e-req-1"]
        assert access["logger"] == "app.access" and access["msg"] == "request"
        assert (access["route"], access["status"], access["model"]) == ("/recommend/{user_id}", 200, "mf")

        # SIGHUP: the store now names the other weights; the server swaps them in and keeps serving.
        shutil.copy(other_synthetic_store.path / MANIFEST_FILE, live / ".manifest.tmp")
        os.replace(live / ".manifest.tmp", live / MANIFEST_FILE)
        server.signal(signal.SIGHUP)
        _wait_for(lambda: _versions(server) != before, "the reload on SIGHUP", server)
        after = _versions(server)
        assert all(after[m] != before[m] for m in before)
        r = httpx.post(f"{server.url}/predict/mf", json=PREDICT)
        assert r.json()["model_version"] == after["mf"] == r.headers["x-model-version"]

        # A SIGHUP onto a broken store changes nothing: still ready, same versions, the failure logged.
        (live / MANIFEST_FILE).write_text("{ broken")
        server.signal(signal.SIGHUP)

        def failed() -> bool:
            return any(line["msg"].startswith("reload failed") for line in _json_lines(server))

        _wait_for(failed, "the failed reload", server)
        assert _versions(server) == after
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'recsys_reloads_total{result="failure"} 1.0' in metrics
        assert 'recsys_reloads_total{result="success"} 1.0' in metrics

        # The same over HTTP, with the key.
        shutil.copy(synthetic_store.path / MANIFEST_FILE, live / MANIFEST_FILE)
        assert httpx.post(f"{server.url}/admin/reload").status_code == 401
        r = httpx.post(f"{server.url}/admin/reload", headers={"X-API-Key": KEY}, timeout=60)
        assert r.status_code == 200 and r.json()["models"] == before == _versions(server)

        server.signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == SIGTERM_EXIT
    log = server.log_text()
    assert KEY not in log and "/recommend/117" not in log
    assert "Traceback" not in log


def test_sigterm_lets_in_flight_requests_finish(synthetic_store: SyntheticStore, tmp_path: Path) -> None:
    with serve(synthetic_store.path, log_path=tmp_path / "server.log") as server:
        # Background load: keep-alive clients sending requests until told to stop (bounded in count).
        stop = threading.Event()
        statuses: list[int] = []
        errors: list[tuple[float, str]] = []

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=15) as client:
                for _ in range(5000):
                    if stop.is_set():
                        return
                    try:
                        statuses.append(client.post("/predict/mf", json=PREDICT).status_code)
                    except httpx.TransportError as e:  # after SIGTERM: connection refused or closed
                        errors.append((time.monotonic(), type(e).__name__))
                        time.sleep(0.05)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        # In-flight requests: headers and half of the body sent, so the server has started them.
        body = json.dumps({"user_id": 102, "item_ids": list(range(1001, 1051))}).encode()
        head = request_head(
            "POST", "/predict/dense", {"Content-Type": "application/json", "Content-Length": str(len(body))}
        )
        sockets = [connect(server) for _ in range(4)]
        for sock in sockets:
            sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)
        terminated_at = time.monotonic()
        server.signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "the server exited with requests in flight"
        try:
            for sock in sockets:
                sock.sendall(body[len(body) // 2 :])
            answers = [read_response(sock) for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
        for status, headers, answer in answers:
            assert status == 200, answer
            assert headers["connection"] == "close"  # served, and told the connection ends here
            assert len(json.loads(answer)["predictions"]) == 50
        assert server.process.wait(timeout=30) == SIGTERM_EXIT
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert statuses and set(statuses) == {200}, set(statuses)
    # Requests that failed were refused or cut between requests, after the signal; none got a bad answer.
    assert all(at >= terminated_at for at, _ in errors), errors
    log = server.log_text()
    assert "Waiting for connections to close" in log
    assert "Application shutdown complete" in log and "Finished server process" in log
    assert "Traceback" not in log
