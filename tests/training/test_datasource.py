"""Tests for `training.datasource`: never touch the internet, a local HTTP server stands in for GroupLens."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training.datasource import CACHE_ENV, DATA_ENV, DataSourceError, default_cache_dir, resolve_data_dir

# Read at import time, before the autouse fixture clears the variable; the real files are only ever read.
_REAL_DATA = Path(os.environ.get(DATA_ENV) or Path(__file__).resolve().parents[3] / "shared/data/ml-100k")


@pytest.fixture
def real_data() -> Path:
    """The real files are a required part of the test environment: missing, the test fails."""
    assert (_REAL_DATA / "u.data").is_file(), f"MovieLens 100K not found at {_REAL_DATA}; set {DATA_ENV}"
    return _REAL_DATA


TINY_FILES = {
    "u.data": "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t878542960\n",
    "u.item": "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
    "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A developer's own RECSYS_DATA_DIR or cache must neither satisfy nor be touched by these tests.
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _make_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    """A zip shaped like the official one (an ``ml-100k/`` folder), with made-up contents."""
    return _make_zip(tmp_path / "ml-100k.zip", {f"ml-100k/{n}": t for n, t in TINY_FILES.items()})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class FakeServer:
    base_url: str
    files: dict[str, bytes]
    requests: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@pytest.fixture
def server(tiny_zip: Path) -> Iterator[FakeServer]:
    """Serve ``/ml-100k.zip`` on 127.0.0.1 (a free port) and count every request; other paths are 404."""
    state = FakeServer(base_url="", files={"/ml-100k.zip": tiny_zip.read_bytes()})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a port that was free a moment ago and has nothing listening: connection refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-100k.zip"


def _leftovers(cache: Path) -> list[str]:
    """Names of temporary files or directories the resolver left in the cache."""
    return sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) if cache.exists() else []


# --- local sources ---------------------------------------------------------------------------------------


def test_directory_source_is_returned_as_is(tmp_path: Path, real_data: Path) -> None:
    cache = tmp_path / "cache"
    assert resolve_data_dir(_REAL_DATA, cache_dir=cache, download=False) == _REAL_DATA
    assert not cache.exists()  # a plain directory needs no cache


def test_directory_holding_ml100k_folder_is_accepted(tmp_path: Path, real_data: Path) -> None:
    parent = _REAL_DATA.parent
    assert _REAL_DATA.name == "ml-100k", "this test needs the real data in a folder named ml-100k"
    assert resolve_data_dir(str(parent), cache_dir=tmp_path / "cache", download=False) == _REAL_DATA


def test_synthetic_directory_and_nested_directory(tmp_path: Path) -> None:
    data = tmp_path / "data" / "ml-100k"
    data.mkdir(parents=True)
    (data / "u.data").write_text(TINY_FILES["u.data"])
    cache = tmp_path / "cache"
    assert resolve_data_dir(data, cache_dir=cache, download=False) == data
    assert resolve_data_dir(data.parent, cache_dir=cache, download=False) == data


def test_zip_source_is_extracted_into_cache(tmp_path: Path, tiny_zip: Path) -> None:
    cache = tmp_path / "cache"
    result = resolve_data_dir(tiny_zip, cache_dir=cache, sha256=_sha256(tiny_zip), download=False)
    assert result == cache / "ml-100k"
    assert (result / "u.data").read_text() == TINY_FILES["u.data"]
    assert (result / "u.item").is_file()
    assert tiny_zip.is_file()  # the user's zip stays where it was
    assert _leftovers(cache) == []


def test_zip_source_replaces_an_older_extraction(tmp_path: Path, tiny_zip: Path) -> None:
    cache = tmp_path / "cache"
    stale = cache / "ml-100k"
    stale.mkdir(parents=True)
    (stale / "u.data").write_text("stale\n")
    (stale / "extra.txt").write_text("from an older zip\n")
    result = resolve_data_dir(tiny_zip, cache_dir=cache, sha256=_sha256(tiny_zip))
    assert (result / "u.data").read_text() == TINY_FILES["u.data"]
    assert not (result / "extra.txt").exists()
    assert _leftovers(cache) == []


def test_zip_with_files_at_top_level_is_accepted(tmp_path: Path) -> None:
    flat = _make_zip(tmp_path / "flat.zip", TINY_FILES)
    result = resolve_data_dir(flat, cache_dir=tmp_path / "cache", sha256=None)
    assert (result / "u.data").read_text() == TINY_FILES["u.data"]


def test_user_zip_with_wrong_checksum_is_reported_and_kept(tmp_path: Path, tiny_zip: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError) as info:
        resolve_data_dir(tiny_zip, cache_dir=cache, sha256="0" * 64)
    message = str(info.value)
    assert str(tiny_zip) in message and "0" * 64 in message and _sha256(tiny_zip) in message
    assert tiny_zip.is_file()  # never delete a user's file
    assert not (cache / "ml-100k").exists()


def test_env_var_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "envdata"
    data.mkdir()
    (data / "u.data").write_text(TINY_FILES["u.data"])
    monkeypatch.setenv(DATA_ENV, str(data))
    assert resolve_data_dir(cache_dir=tmp_path / "cache", download=False) == data


def test_env_var_zip(tmp_path: Path, tiny_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(tiny_zip))
    cache = tmp_path / "cache"
    assert resolve_data_dir(cache_dir=cache, sha256=_sha256(tiny_zip), download=False) == cache / "ml-100k"


def test_explicit_source_wins_over_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    (explicit / "u.data").write_text(TINY_FILES["u.data"])
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "does-not-exist"))
    assert resolve_data_dir(explicit, cache_dir=tmp_path / "cache", download=False) == explicit


def test_missing_env_path_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(DATA_ENV, str(missing))
    with pytest.raises(DataSourceError, match=DATA_ENV) as info:
        resolve_data_dir(cache_dir=tmp_path / "cache", download=False)
    assert str(missing) in str(info.value)


def test_missing_explicit_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "ml-100k"
    with pytest.raises(DataSourceError) as info:
        resolve_data_dir(missing, cache_dir=tmp_path / "cache")
    assert str(missing) in str(info.value)


def test_directory_without_u_data_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match=r"u\.data"):
        resolve_data_dir(empty, cache_dir=tmp_path / "cache", download=False)


def test_file_that_is_not_a_zip_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "ml-100k.zip"
    bogus.write_text("not a zip")
    with pytest.raises(DataSourceError, match="not a readable zip"):
        resolve_data_dir(bogus, cache_dir=tmp_path / "cache", sha256=None)
    assert bogus.is_file()


@pytest.mark.parametrize("evil", ["ml-100k/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_zip_slip_member_is_rejected(tmp_path: Path, evil: str) -> None:
    members = {f"ml-100k/{n}": t for n, t in TINY_FILES.items()} | {evil: "pwned"}
    bad = _make_zip(tmp_path / "bad.zip", members)
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError, match="unsafe zip member"):
        resolve_data_dir(bad, cache_dir=cache, sha256=None)
    assert not (cache / "ml-100k").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert _leftovers(cache) == []


def test_interrupted_extraction_leaves_no_valid_looking_dir(
    tmp_path: Path, tiny_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self: zipfile.ZipFile, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-extraction

    monkeypatch.setattr(zipfile.ZipFile, "extractall", explode)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        resolve_data_dir(tiny_zip, cache_dir=cache, sha256=None)
    assert not (cache / "ml-100k").exists()
    assert _leftovers(cache) == []


# --- cache and download ----------------------------------------------------------------------------------


def test_download_then_cache_reuse(tmp_path: Path, tiny_zip: Path, server: FakeServer) -> None:
    cache = tmp_path / "cache"
    url = server.url("ml-100k.zip")
    first = resolve_data_dir(cache_dir=cache, url=url, sha256=_sha256(tiny_zip))
    assert first == cache / "ml-100k"
    assert (first / "u.data").read_text() == TINY_FILES["u.data"]
    assert server.requests == ["/ml-100k.zip"]
    assert _leftovers(cache) == []

    second = resolve_data_dir(cache_dir=cache, url=url, sha256=_sha256(tiny_zip))
    assert second == first
    assert server.requests == ["/ml-100k.zip"]  # no second request

    # download=False is satisfied by the cache too.
    assert resolve_data_dir(cache_dir=cache, url=url, download=False) == first


def test_cached_zip_is_reused_when_extraction_is_missing(tmp_path: Path, tiny_zip: Path, server: FakeServer) -> None:
    cache = tmp_path / "cache"
    sha = _sha256(tiny_zip)
    resolve_data_dir(cache_dir=cache, url=server.url("ml-100k.zip"), sha256=sha)
    shutil.rmtree(cache / "ml-100k")
    assert resolve_data_dir(cache_dir=cache, url=server.url("ml-100k.zip"), sha256=sha) == cache / "ml-100k"
    assert len(server.requests) == 1


def test_default_cache_dir_respects_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == tmp_path / "xdg-cache" / "recsys"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "recsys"


def test_download_into_default_cache(tmp_path: Path, tiny_zip: Path, server: FakeServer) -> None:
    result = resolve_data_dir(url=server.url("ml-100k.zip"), sha256=_sha256(tiny_zip))
    assert result == tmp_path / "xdg-cache" / "recsys" / "ml-100k"


def test_download_with_wrong_checksum_leaves_nothing(tmp_path: Path, server: FakeServer) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError) as info:
        resolve_data_dir(cache_dir=cache, url=server.url("ml-100k.zip"), sha256="f" * 64)
    message = str(info.value)
    assert "f" * 64 in message and server.url("ml-100k.zip") in message
    assert not (cache / "ml-100k").exists()
    assert not (cache / "ml-100k.zip").exists()
    assert _leftovers(cache) == []


def test_http_404_names_the_ways_to_provide_data(tmp_path: Path, server: FakeServer) -> None:
    cache = tmp_path / "cache"
    url = server.url("missing.zip")
    with pytest.raises(DataSourceError) as info:
        resolve_data_dir(cache_dir=cache, url=url)
    message = str(info.value)
    assert "--data" in message and DATA_ENV in message and url in message and "404" in message
    assert _leftovers(cache) == []
    assert not (cache / "ml-100k").exists()


def test_unreachable_server_is_a_clear_error(tmp_path: Path, closed_port_url: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError) as info:
        resolve_data_dir(cache_dir=cache, url=closed_port_url)
    message = str(info.value)
    assert "--data" in message and DATA_ENV in message and closed_port_url in message
    assert _leftovers(cache) == []


def test_download_disabled_never_touches_the_network(tmp_path: Path, server: FakeServer) -> None:
    url = server.url("ml-100k.zip")
    with pytest.raises(DataSourceError) as info:
        resolve_data_dir(cache_dir=tmp_path / "cache", url=url, download=False)
    message = str(info.value)
    assert "--data" in message and DATA_ENV in message and url in message
    assert server.requests == []
