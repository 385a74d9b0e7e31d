# revocast — every target sets up what it needs first (virtualenv, packages,
# Kafka jars, redis-server), so a fresh clone needs only `make demo` / `make test`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= bench-out

.PHONY: .redis-server .kafka-jars setup demo test test-unit bench bench-quick soak lint schemas docs clean

setup: $(STAMP) .redis-server .kafka-jars

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench,dev]'
	touch $(STAMP)

# Debian's redis-server, and kcat (tests write records no Python client would), installed
# when missing (the machines here run as root).
.redis-server:
	@{ command -v redis-server && command -v kcat; } >/dev/null 2>&1 || { \
	  echo "installing redis-server and kcat (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server kcat >/dev/null; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing: install it or set REDIS_URL" >&2; exit 1; }
	@command -v kcat >/dev/null 2>&1 || { echo "kcat is missing: apt-get install kcat" >&2; exit 1; }

# Apache Kafka's broker jars from Maven Central into ~/.cache/revocast (once; offline afterwards).
.kafka-jars: $(STAMP)
	$(BIN)/python -m devstack fetch

demo: setup
	$(BIN)/python -m demo

test: setup
	$(BIN)/pytest

test-unit: setup
	$(BIN)/pytest -m "not integration"

bench: setup
	$(BIN)/python -m bench --out $(OUT)

bench-quick: setup
	$(BIN)/python -m bench --quick --out $(OUT)

soak: setup
	$(BIN)/python -m bench --soak --out $(OUT)/soak

lint: $(STAMP)
	$(BIN)/ruff check schemas producer consumers revocast devstack bench demo tests
	$(BIN)/mypy

schemas: $(STAMP)
	$(BIN)/python -m schemas.export

# README's reference tables (topics, dead-letter headers and reasons, event types, receipt
# fields), generated from the code; tests/cli/test_reference.py fails when they drift.
docs: $(STAMP)
	$(BIN)/python -m revocast.reference --readme README.md

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
