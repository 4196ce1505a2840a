# Targets:
#   api      (default, last stage) the inference service: venv + app/ + models_store/, non-root, no CUDA.
#   trainer  the same plus training/, for `python -m training ...` (see docker-compose.yml, profile "train").
# Build:  docker build -t recsys-api .          docker build --target trainer -t recsys-trainer .

# ---------------------------------------------------------------------------------------------------------
# builder: everything that needs pip and a network lives here and never reaches the final images.
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from PyTorch's CPU index: the default PyPI wheel drags in ~3 GB of CUDA libraries.
# Keep this pin equal to pyproject.toml's (tests/test_docker.py checks it).
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Only [project].dependencies (not the dev extra, not the project itself: installing the package would put
# training/ into the api image's site-packages). torch==2.13.0 is already satisfied by 2.13.0+cpu above.
# Copying pyproject.toml alone keeps this layer cached across code changes.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip check

# Nothing at run time loads these, and they are ~300 MB of a ~1.1 GB venv: C++ headers and CMake files (only
# for compiling extensions, and the image has no compiler), C++ test binaries and protoc, and the test
# suites of pandas, numpy, sympy and networkx. Imports, TorchScript load/save and autograd work without them.
RUN site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$site/torch/include" "$site/torch/share" "$site/torch/test" \
        "$site"/torch/bin/*Test "$site"/torch/bin/test_* "$site"/torch/bin/protoc* "$site/pandas/tests" \
    && find "$site/numpy" "$site/sympy" "$site/networkx" -depth -type d -name tests -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------------------
# runtime: what both images share. No compiler, no pip cache, no source tree beyond what is copied below.
FROM python:3.11-slim AS runtime

# RECSYS_MODELS_DIR  where the service reads manifest.json, catalog.json and the TorchScript files
# HOST / PORT        where uvicorn listens
# WEB_CONCURRENCY    uvicorn worker processes; each loads its own copy of the models, so memory scales with it
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RECSYS_MODELS_DIR=/srv/models_store \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=1

# A fixed numeric uid so orchestrators can check runAsNonRoot and bind mounts can be chowned to it.
RUN groupadd --system --gid 10001 recsys \
    && useradd --system --no-log-init --uid 10001 --gid recsys --home-dir /nonexistent --shell /usr/sbin/nologin recsys

COPY --from=builder /opt/venv /opt/venv

WORKDIR /srv
# Owned by root and read-only for the service user: the api never writes into its own code or artifacts.
COPY app/ ./app/
COPY models_store/ ./models_store/
# Bytecode compiled at build time, because the container runs with a read-only root filesystem.
RUN python -m compileall -q app

# ---------------------------------------------------------------------------------------------------------
# trainer: `docker compose --profile train run --rm trainer` retrains into a mounted models directory.
# pandas, tqdm and httpx are already runtime dependencies in pyproject.toml, so only the code is added.
FROM runtime AS trainer

COPY training/ ./training/
RUN python -m compileall -q training

USER 10001:10001
CMD ["python", "-m", "training", "--help"]

# ---------------------------------------------------------------------------------------------------------
# api: the default target. New artifacts are picked up by restarting the container.
FROM runtime AS api

USER 10001:10001
EXPOSE 8000

# slim has no curl; urlopen raises (exit 1) on connection errors and on any non-2xx status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/ready', timeout=4)"]

# sh -c so HOST, PORT and WEB_CONCURRENCY come from the environment at run time; exec so uvicorn is PID 1 and
# gets SIGTERM from `docker stop` directly (graceful shutdown instead of a SIGKILL after 10 s). The flags after
# --workers are the Makefile's SERVE_FLAGS (tests/test_serve_command.py keeps them equal): see docs/service.md.
CMD ["sh", "-c", "exec uvicorn app.main:create_app --factory --host \"$HOST\" --port \"$PORT\" --workers \"$WEB_CONCURRENCY\" --http app.protocol:BoundedHttpToolsProtocol --timeout-keep-alive 5 --limit-concurrency 256 --backlog 512 --no-access-log --timeout-graceful-shutdown 10"]
