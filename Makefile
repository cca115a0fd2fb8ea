# tokenguard — `make run` shows it working, `make test` proves it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv run stop test test-fast lint bench bench-e2e clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

## Start idp_mock + tokenguard (+ nginx on 127.0.0.1:8000 when installed) and show a protected call.
run: venv
	$(PY) scripts/run_demo.py

## Stop what `make run` left running.
stop: venv
	$(PY) scripts/run_demo.py --stop

## The whole suite: unit, service, real nginx / Caddy / Redis integration, conformance.
test: lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: venv
	$(PY) -m pytest -q -p no:cacheprovider -m "not integration"

## ruff, the type checker (mypy) and the import contracts (the core stays pure, the suite independent).
lint: venv
	$(PY) -m ruff check tokenguard idp_mock tests scripts
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

## Core micro-benchmark: full DPoP verification vs the raw signature floor, per replay store.
bench: venv
	$(PY) scripts/bench_core.py

## End-to-end: wrk through nginx against tokenguard (needs nginx, wrk, redis-server).
bench-e2e: venv
	$(PY) scripts/bench_e2e.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .run
