# Everything a newcomer needs: `make serve` runs the service, `make test` runs the tests.
# Both create the virtualenv on first use, so they work on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    ?= $(or $(RECSYS_DATA_DIR),../shared/data/ml-100k)
HOST    ?= 127.0.0.1
PORT    ?= 8000

# PyTorch's CPU-only wheels (~200 MB for torch 2.13.0) instead of PyPI's default Linux wheel, which pulls ~3 GB
# of CUDA libraries. `make TORCH_INDEX_URL=<mirror>` uses another index; `make TORCH_INDEX_URL=` pip's own.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))

.PHONY: setup runtime serve train models test test-fast lint format bench clean

# Two stamps in one venv: `make serve` needs only the runtime dependencies, everything else the dev toolchain too.
setup: $(VENV)/.installed-dev
runtime: $(VENV)/.installed-runtime

# torch is pinned and installed first, from TORCH_INDEX_URL; the project's own `torch==2.13.0` is then already
# satisfied by 2.13.0+cpu, as in the Dockerfile. pip's configured find-links and extra indexes still apply: where
# the index cannot be reached (probed first, 10 s), pip is told not to retry it (5 retries per package otherwise)
# and finds a local CPU wheel if there is one, as on the CI machine; else it fails with the message below, never
# falling back to the CUDA build.
$(VENV)/.installed-runtime: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	retries=""; if [ -n "$(TORCH_INDEX_URL)" ] && ! $(BIN)/python -c "import sys, urllib.request; \
		urllib.request.urlopen(sys.argv[1], timeout=10)" "$(TORCH_INDEX_URL)/torch/" 2>/dev/null; then \
		echo "make: $(TORCH_INDEX_URL) is unreachable; looking in pip's configured sources only" >&2; \
		retries="--retries 0"; fi; \
	$(BIN)/pip install --quiet $$retries $(TORCH_INDEX) torch==2.13.0 || { \
		echo "make: could not install torch 2.13.0 from $(or $(TORCH_INDEX_URL),pip's default index)." >&2; \
		echo "make: pass a reachable mirror (make TORCH_INDEX_URL=<url> ...), or TORCH_INDEX_URL= for pip's" >&2; \
		echo "make: default index (on Linux that is the ~3 GB CUDA build)." >&2; exit 1; }
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-runtime
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The same server flags as the Dockerfile's CMD and the tests' server (tests/test_serve_command.py checks it):
# app.protocol bounds header size, request time and connections; see docs/service.md.
SERVE_FLAGS := --http app.protocol:BoundedHttpToolsProtocol --timeout-keep-alive 5 --limit-concurrency 256 \
	--backlog 512 --no-access-log --timeout-graceful-shutdown 10

serve: runtime
	$(BIN)/uvicorn app.main:create_app --factory --host $(HOST) --port $(PORT) $(SERVE_FLAGS)

train: setup
	$(BIN)/python -m training --data $(DATA) --split u1 --out bench/out/u1-store

# Regenerates the committed default artifacts (trained on all of ML-100K); one store version, so git does not
# carry the previous models too.
models: setup
	$(BIN)/python -m training --data $(DATA) --split full --out models_store --keep-versions 1

test: setup lint
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	bash scripts/system-deps.sh
	$(BIN)/python -m bench --data $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
