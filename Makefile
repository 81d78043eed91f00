# proton_easy: `make test` and `make demo` work from a fresh clone (Python 3.9+, Java 17+,
# Maven; or Docker instead of Java and Maven). Everything else is installed into .venv.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help venv fetch fetch-all test demo broker bench lint clean

help:
	@echo "make test    create .venv, install, fetch Artemis, run the whole test suite"
	@echo "make demo    start a local Artemis, run examples/demo.py against it, stop it"
	@echo "make broker  run a local Artemis in the foreground (Ctrl-C stops it)"
	@echo "make bench   benchmarks against a local Artemis (a few minutes; BENCH_ARGS=--quick)"
	@echo "make lint    ruff check"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Downloads Artemis once (with Maven) into ~/.cache/proton_easy; later runs find it there.
fetch: venv
	$(PY) -m proton_easy.testing fetch

# The suite's broker matrix also runs ActiveMQ Classic and Qpid Broker-J (fetched once).
fetch-all: venv
	$(PY) -m proton_easy.testing fetch --brokers all

test: fetch-all
	$(VENV)/bin/pytest -ra $(PYTEST_ARGS)

demo: fetch
	$(PY) -m proton_easy.testing run -- $(abspath $(PY)) examples/demo.py

broker: fetch
	$(PY) -m proton_easy.testing broker

bench: fetch
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
