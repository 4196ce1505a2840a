"""`make serve`, the Docker image and the server the tests and benchmarks start run the same command."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from bench.server import SERVE_FLAGS, serve_command

REPO = Path(__file__).resolve().parents[1]
REQUIRED = {"--http", "--timeout-keep-alive", "--limit-concurrency", "--backlog", "--no-access-log"}


def _makefile_flags() -> list[str]:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(r"^SERVE_FLAGS\s*:=\s*(.+)$", text, re.M)
    assert match, "Makefile has no SERVE_FLAGS"
    assert "$(SERVE_FLAGS)" in text.split("\nserve:", 1)[1].split("\n\n", 1)[0]
    return shlex.split(match.group(1))


def _dockerfile_command() -> list[str]:
    """The api image's CMD: ``sh -c "exec uvicorn ..."``, the words after ``exec``."""
    cmd = next(line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith('CMD ["sh"'))
    words = shlex.split(json.loads(cmd.removeprefix("CMD "))[2])
    assert words[0] == "exec"
    return words[1:]


def test_the_server_flags_are_the_same_everywhere() -> None:
    docker = _dockerfile_command()
    assert _makefile_flags() == SERVE_FLAGS == docker[docker.index("$WEB_CONCURRENCY") + 1 :]
    assert set(SERVE_FLAGS) >= REQUIRED


def test_bench_and_tests_start_the_images_command() -> None:
    ours = serve_command(8123, workers=3)
    assert Path(ours[0]).name == "uvicorn"
    image = [{"$HOST": "127.0.0.1", "$PORT": "8123", "$WEB_CONCURRENCY": "3"}.get(w, w) for w in _dockerfile_command()]
    assert ours[1:] == image[1:] and image[0] == "uvicorn"
