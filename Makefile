# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use,
# installing the exact versions of requirements/dev.lock (hash-checked), then the project itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/dev.lock

.PHONY: run test lint bench lock clean

run: $(STAMP)  ## the service on http://127.0.0.1:8000, with embedded Postgres and Redis unless ROOMS_*_URL are set
	$(BIN)/roomservice dev

test: $(STAMP)  ## the test suite, against embedded servers unless ROOMS_TEST_*_URL are set
	@command -v promtool > /dev/null || echo "promtool not installed: the alert-rule tests (tests/deploy/test_rules.py) are skipped; apt-get install prometheus"
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)  ## every benchmark; docs/performance.md says what each measures
	$(BIN)/python bench/run.py
	$(BIN)/python bench/worker_bench.py
	$(BIN)/python bench/join_bench.py
	$(BIN)/python bench/flood_bench.py

clean:
	rm -rf $(VENV) .venv-lock .data .pytest_cache .mypy_cache .ruff_cache

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

lock:  ## resolve requirements/*.lock again from pyproject.toml's ranges (newest versions; needs PyPI)
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet 'uv>=0.9,<1'
	.venv-lock/bin/uv pip compile pyproject.toml --universal --generate-hashes --python-version 3.11 \
		--extra dev -o requirements/dev.lock --quiet
	.venv-lock/bin/uv pip compile pyproject.toml --universal --generate-hashes --python-version 3.11 \
		--extra otel -o requirements/main.lock --quiet
