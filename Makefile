# The two commands of the README: `make up` runs the system, `make test` proves it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(VENV)/uv/bin/uv
# uv installs exactly what uv.lock holds; pyproject.toml's [tool.uv] requires this release.
UV_VERSION := 0.13.9
# uv trusts the system's certificates (a proxy's own CA included) and never fetches a Python.
export UV_SYSTEM_CERTS := 1
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compiled once at install: where PYTHONDONTWRITEBYTECODE is set (CI's machines), every process
# would otherwise compile its imports anew, about 3 s of CPU per service start.
export UV_COMPILE_BYTECODE := 1

.PHONY: install up test lint lock schemas broker-files kubernetes

# Only Python and pip must exist first: pip puts uv beside the venv's packages (not among
# them, so the sync below leaves the venv holding exactly the lock).
$(BIN)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade --target $(VENV)/uv "uv==$(UV_VERSION)"
	$(UV) sync --quiet --frozen --extra dev --python $(BIN)/python
	touch $@

install: $(BIN)/.installed

up: install
	$(BIN)/orderbus up $(ARGS)

# After editing pyproject.toml's dependencies: resolve again and commit uv.lock.
lock: install
	$(UV) lock

lint: install
	$(UV) lock --check --quiet
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# KEDA's schemas for tests/unit/test_kubernetes.py, from the npm registry (skipped without npm).
tests/kubernetes/node_modules/.installed: tests/kubernetes/package-lock.json
	if ! command -v npm >/dev/null; then echo "make: no npm: the KEDA schema tests will skip"; \
	elif npm ci --prefix tests/kubernetes --no-audit --no-fund --silent; then touch $@; \
	else echo "make: npm ci failed (no registry?): the KEDA schema tests will skip"; fi

test: lint tests/kubernetes/node_modules/.installed
	$(BIN)/pytest

schemas: install
	$(BIN)/python -m contracts.export

broker-files: install
	$(BIN)/python -m orderbus.broker_access

# After changing a service's subscriptions: the KEDA overlays of deploy/kubernetes.
kubernetes: install
	$(BIN)/python -m orderbus.autoscaling
