"""The benchmark's own environment for what the service must not depend on: LitServe (the peer anchor) and
py-spy (the profiler), in a venv of their own next to bench/out.

Created on first use with the same torch pin as the service (``torch==2.13.0``, the CPU wheel on this disk),
so LitServe loads the very TorchScript artifacts the service serves. ``--peers-venv`` points elsewhere.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tomllib
from pathlib import Path

from bench.server import REPO

log = logging.getLogger(__name__)

DEFAULT_VENV = REPO / "bench" / "out" / "peers-venv"
# torch first, on its own: the pinned CPU build; then the peer, the profiler and the service's own runtime
# dependencies, since bench/anchors/work.py loads the models through app.registry (faiss, pydantic-settings, ...).
PACKAGES = (
    ["torch==2.13.0"],
    [
        "litserve==0.2.19",
        "py-spy==0.4.3",
        *tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"],
    ],
)


def ensure(venv: Path = DEFAULT_VENV) -> Path:
    """The venv's python, creating the venv and installing PACKAGES if it is not there yet."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"  # holds PACKAGES as installed, so a changed list installs again
    if marker.is_file() and marker.read_text() == repr(PACKAGES):
        return python
    log.info("creating the benchmark's peer environment in %s (LitServe, py-spy, torch 2.13.0)", venv)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for group in PACKAGES:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *group], check=True)
    marker.write_text(repr(PACKAGES))
    return python


def py_spy(venv: Path = DEFAULT_VENV) -> Path:
    return ensure(venv).with_name("py-spy")
