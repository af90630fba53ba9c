# cachekit workspace. Every target bootstraps what it needs: a virtualenv in
# .venv with editable installs of every workspace package plus the dev tools.
#
#   make demo    the main job on the embedded default (L1 only, no Redis needed)
#   make test    the whole test suite
#   make bench   benchmarks against baselines measured in the same run
#   make soak    the randomized history checker (real processes, Redis faults) with random
#                seeds for SOAK_SECONDS (600); SOAK_SEED=n replays a seed first
#   make lint    ruff (lint + format check) and mypy --strict on src/
#   make dist    sdists and wheels of the four packages in dist/, metadata checked
#   make matrix  the whole suite on Python 3.10-3.13, newest and oldest libraries (noxfile.py)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bootstrapped
# Every workspace package that has code gets an editable install.
PACKAGES := $(sort $(dir $(wildcard cachekit-*/pyproject.toml)))
# Twice the CPUs: many tests wait on Redis (failovers, timeouts, elections) rather than
# compute, so 4 workers on 2 cores ran the main suite in 2.0 min against 3.0 with 2.
PYTEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(2 * (os.cpu_count() or 1))")
# Matrix legs `make test` runs after the main suite (see noxfile.py): the oldest Python with
# the oldest libraries we declare, the newest Python with the newest. A leg whose Python is
# not on the machine is skipped with the reason; with CI=true or CACHEKIT_REQUIRE_PYTHONS=1
# it fails instead. TEST_LEGS= (empty) runs the main suite only.
TEST_LEGS ?= oldest(3.10) newest(3.13)
NOX := PYTEST_WORKERS=$(PYTEST_WORKERS) $(BIN)/nox --envdir .nox $(if $(filter true 1,$(CI) $(CACHEKIT_REQUIRE_PYTHONS)),--error-on-missing-interpreters,--no-error-on-missing-interpreters)

.PHONY: demo test matrix bench soak lint format bootstrap clean dist

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
	$(if $(strip $(TEST_LEGS)),$(NOX) -s $(foreach leg,$(TEST_LEGS),"$(leg)") -- $(PYTEST_ARGS))

matrix: $(STAMP)
	$(NOX) -- $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Runs of SOAK_RUN_SECONDS each, a new seed per run, until SOAK_SECONDS have passed.
SOAK_SECONDS ?= 600
SOAK_RUN_SECONDS ?= 60
SOAK_SEED ?=
soak: $(STAMP)
	$(BIN)/python tests/history/history_run.py --soak $(SOAK_SECONDS) --seconds $(SOAK_RUN_SECONDS) $(if $(strip $(SOAK_SEED)),--seed $(SOAK_SEED))

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
	rm -rf $(VENV) .mypy_cache .ruff_cache .bench .nox
