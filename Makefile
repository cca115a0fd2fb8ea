# tokenguard — `make run` shows it working, `make test` proves it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv run stop test test-fast lint bench bench-e2e bench-peer bench-hot clean

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

## End-to-end: wrk through nginx, -c16 and -c64: naive stack, empty /auth and ES256 ceiling on the default
## engine, tokenguard (embedded store, Redis), and node-oidc-provider when node/npm are installed; prints the
## issue's ratios and refuses any row with a non-2xx answer (needs nginx, wrk; redis-server, node optional).
bench-e2e: venv
	$(PY) scripts/bench_e2e.py --duration 10 --conns 16,64

## The peer alone: node-oidc-provider's DPoP-checked userinfo through the same nginx (needs node >= 20.18, npm).
bench-peer: venv
	$(PY) scripts/bench/peer_oidc_provider.py --duration 10 --conns 16,64 --layouts 1:memory,2:redis

## Where one verified request's CPU goes inside a worker, stage by stage.
bench-hot: venv
	$(PY) scripts/bench/hot_path.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .run
