# cachekit workspace. Every target bootstraps what it needs: a virtualenv in
# .venv with editable installs of every workspace package plus the dev tools.
#
#   make demo    the main job on the embedded default (L1 only, no Redis needed)
#   make test    the whole test suite
#   make bench   benchmarks against baselines measured in the same run
#   make lint    ruff (lint + format check) and mypy --strict on src/
#   make dist    sdists and wheels of the four packages in dist/, metadata checked

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bootstrapped
# Every workspace package that has code gets an editable install.
PACKAGES := $(sort $(dir $(wildcard cachekit-*/pyproject.toml)))
PYTEST_WORKERS ?= 2

.PHONY: demo test bench lint format bootstrap clean dist

$(STAMP): pyproject.toml $(wildcard cachekit-*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --group dev $(foreach p,$(PACKAGES),-e ./$(p))
	@touch $@

bootstrap: $(STAMP)

demo: $(STAMP)
	@env -u CACHEKIT_REDIS_URL -u REDIS_URL -u CACHEKIT_BACKEND $(BIN)/cachekit demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

dist: $(STAMP)
	$(BIN)/python scripts/build_dist.py dist

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .bench
