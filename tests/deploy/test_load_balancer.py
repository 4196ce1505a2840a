"""Replicas behind a real load balancer: two real servers behind nginx with deploy/nginx/nginx.conf.

No cluster exists here, so this is the replica behaviour the Kubernetes manifests rely on, shown on loopback:
under load one replica restarts (SIGTERM, graceful shutdown, started again) and the other hot-reloads a new
model version, and not one request fails. The scenario lives in `bench.replicas` (also a benchmark CLI).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from bench import replicas

REPO = Path(__file__).resolve().parents[2]


def test_the_recommended_config_is_valid_nginx_with_only_addresses_swapped(tmp_path: Path) -> None:
    original = replicas.NGINX_CONF.read_text()
    rendered = replicas.render_nginx_conf(original, [40001, 40002], 40003)
    changed = [(a, b) for a, b in zip(original.splitlines(), rendered.splitlines(), strict=True) if a != b]
    assert [b.split()[1] for _, b in changed] == ["127.0.0.1:40001", "127.0.0.1:40002", "127.0.0.1:40003;"]
    assert all(a.rstrip().endswith("# address") for a, _ in changed)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "nginx.conf").write_text(rendered)
    out = subprocess.run(
        [replicas.nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "error.log"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    # What the zero-failure run below depends on.
    for directive in ("proxy_next_upstream error", "non_idempotent", "max_fails=1", "keepalive "):
        assert directive in original, directive


def test_restart_and_hot_reload_behind_nginx_lose_no_request(tmp_path: Path) -> None:
    result = replicas.run(tmp_path, REPO / "models_store")
    assert result.failures == [], result.failures[:10]
    assert result.requests >= 500
    # A really was down for a while and B answered everything meanwhile.
    assert result.restart_exit_status == -signal.SIGTERM  # graceful: uvicorn re-raises the signal it handled
    assert result.during_restart > 0
    # B swapped in the new mf version; A came back on it; both then took traffic through nginx.
    assert result.reload["changed"] == ["mf"]
    assert result.new_mf_version in result.versions_seen
    assert result.served_by_restarted > 0 and result.served_by_reloaded > 0
