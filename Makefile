# Everything a newcomer needs: `make serve` runs the service, `make test` runs the tests.
# Both create the virtualenv on first use, so they work on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    ?= $(or $(RECSYS_DATA_DIR),../shared/data/ml-100k)
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: setup serve train models test test-fast lint format bench clean

setup: $(VENV)/.installed

# torch is pinned on its own line first: the CPU wheel for 2.13.0 lies on this disk, anything looser pulls CUDA.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

serve: setup
	$(BIN)/uvicorn app.main:create_app --factory --host $(HOST) --port $(PORT) --no-access-log --timeout-graceful-shutdown 10

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
