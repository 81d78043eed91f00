# proton_easy: `make test` and `make demo` work from a fresh clone (Python 3.9+, Java 17+,
# Maven; or Docker instead of Java and Maven). Everything else is installed into .venv.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
PORT ?=

.PHONY: help venv fetch fetch-all test demo broker bench lint typecheck clean

help:
	@echo "make test    create .venv, install, fetch Artemis, run the whole test suite"
	@echo "make demo    start a local Artemis, run examples/demo.py against it, stop it"
	@echo "make broker  run a local Artemis in the foreground (Ctrl-C stops it; PORT=0: any free port)"
	@echo "make bench   benchmarks against a local Artemis (a few minutes; BENCH_ARGS=--quick)"
	@echo "make lint    ruff check"

$(PY):
	$(PYTHON) -m venv $(VENV)

# python-qpid-proton has no wheel on PyPI: pip compiles it. When that fails,
# tools/check_build_deps.py says in one message which compiler, headers or tools are missing.
$(STAMP): $(PY) setup.cfg pyproject.toml
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' || \
	  { $(PY) tools/check_build_deps.py missing; exit 1; }
	@$(PY) tools/check_build_deps.py ssl
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
	$(PY) -m proton_easy broker $(if $(PORT),--port $(PORT))

bench: fetch
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

# mypy --strict over the modules that are fully typed so far
TYPED := proton_easy/_errors.py proton_easy/_options.py proton_easy/_tls.py \
	proton_easy/_api.py proton_easy/_trace.py proton_easy/_logging.py \
	proton_easy/cli.py proton_easy/testing/plugin.py tools/check_build_deps.py
typecheck: venv
	$(VENV)/bin/mypy --strict --follow-imports=silent $(TYPED)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
