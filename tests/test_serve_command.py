"""`make serve`, the Docker image and the tests' server run uvicorn with the same bounding flags."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.e2e.conftest import SERVE_FLAGS

REPO = Path(__file__).resolve().parents[1]
REQUIRED = {"--http", "--timeout-keep-alive", "--limit-concurrency", "--backlog", "--no-access-log"}


def _makefile_flags() -> list[str]:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(r"^SERVE_FLAGS\s*:=\s*(.+)$", text, re.M)
    assert match, "Makefile has no SERVE_FLAGS"
    assert "$(SERVE_FLAGS)" in text.split("\nserve:", 1)[1].split("\n\n", 1)[0]
    return shlex.split(match.group(1))


def _dockerfile_flags() -> list[str]:
    cmd = next(line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith('CMD ["sh"'))
    words = shlex.split(json.loads(cmd.removeprefix("CMD "))[2])
    return words[words.index("$WEB_CONCURRENCY") + 1 :]


def test_the_server_flags_are_the_same_everywhere() -> None:
    assert _makefile_flags() == SERVE_FLAGS == _dockerfile_flags()
    assert set(SERVE_FLAGS) >= REQUIRED
