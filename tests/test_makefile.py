"""What `make` would run on a fresh clone (``make -n``, nothing executed): torch from PyTorch's CPU index by
default and overridable, `make serve` without the dev toolchain, `make test` with it, the README's promises."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _dry_run(target: str, tmp_path: Path, *variables: str) -> list[str]:
    # A venv that does not exist: make plans every step of a fresh set-up.
    out = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}", *variables],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def _torch_line(lines: list[str]) -> str:
    [line] = [x for x in lines if re.search(r"pip install .*torch==", x)]
    return line


def test_torch_comes_from_the_cpu_index_by_default_and_the_index_can_be_changed(tmp_path: Path) -> None:
    assert f"--index-url {CPU_INDEX} torch==2.13.0" in _torch_line(_dry_run("serve", tmp_path))
    mirror = _torch_line(_dry_run("serve", tmp_path, "TORCH_INDEX_URL=https://mirror.example/whl/cpu"))
    assert "--index-url https://mirror.example/whl/cpu torch==2.13.0" in mirror
    assert "--index-url" not in _torch_line(_dry_run("serve", tmp_path, "TORCH_INDEX_URL="))


def test_serve_installs_the_runtime_only_and_test_the_dev_toolchain(tmp_path: Path) -> None:
    serve = _dry_run("serve", tmp_path)
    assert any(re.search(r"pip install .*-e \.$", x) for x in serve), serve
    assert not any("[dev]" in x for x in serve), serve
    test = _dry_run("test", tmp_path)
    assert any("-e '.[dev]'" in x for x in test), test
    assert any("scripts/system-deps.sh" in x for x in test)


def test_the_pytorch_index_pin_matches_pyproject_and_the_dockerfile() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject
    assert f"--index-url {CPU_INDEX} torch==2.13.0" in (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize(
    "promise",
    [
        "download.pytorch.org/whl/cpu",  # what the first run downloads, and from where
        "TORCH_INDEX_URL",
        "apt-get install",  # make test installs chromium and wrk when missing
        "scripts/system-deps.sh",
    ],
)
def test_the_readme_says_what_the_first_run_does(promise: str) -> None:
    assert promise in (REPO / "README.md").read_text()


def test_the_readme_has_exactly_two_set_up_commands_and_ci_runs_one_of_them() -> None:
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", quick, re.S)[:1]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make serve", "make test"]
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")
