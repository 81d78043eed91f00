# proton_easy: `make test` and `make demo` work from a fresh clone (Python 3.9+, Java 17+,
# Maven; or Docker instead of Java and Maven). Everything else is installed into .venv.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
PORT ?=

# The tests that exercise the engine (proton_easy/_engine/): run on the oldest supported proton
# and with proton's private API switched off.
# (the seed's examples, run as processes and stopped with Ctrl-C, run in the whole suite)
ENGINE_TESTS ?= tests/test_send_receive.py tests/test_request_reply.py tests/test_transactions.py \
	tests/test_hot_path.py tests/test_failover.py tests/test_engine.py tests/test_drop_window.py
VENV039 ?= .venv-proton039
STAMP039 := $(VENV039)/.installed

.PHONY: help venv fetch fetch-all test demo broker bench lint typecheck clean test-proton039 \
	test-pure-proton

help:
	@echo "make test    create .venv, install, fetch Artemis, run the whole test suite"
	@echo "make demo    start a local Artemis, run examples/demo.py against it, stop it"
	@echo "make broker  run a local Artemis in the foreground (Ctrl-C stops it; PORT=0: any free port)"
	@echo "make bench   benchmarks against a local Artemis (a few minutes; BENCH_ARGS=--quick)"
	@echo "make lint    ruff check"
	@echo "make test-proton039    the engine tests on python-qpid-proton 0.39 (own venv)"
	@echo "make test-pure-proton  the engine tests with PROTON_EASY_PURE_PROTON=1"

$(PY):
	$(PYTHON) -m venv $(VENV)

# python-qpid-proton has no wheel on PyPI: pip compiles it. Before installing (and again if that
# fails) tools/check_build_deps.py says in one message which compiler, headers or tools are missing.
$(STAMP): $(PY) setup.cfg pyproject.toml
	@$(PY) tools/check_build_deps.py before
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

# mypy --strict over the whole package (and the build-dependency check)
typecheck: venv
	$(VENV)/bin/mypy --strict proton_easy tools/check_build_deps.py

# python-qpid-proton 0.39.0 is an sdist: building it needs gcc, Python headers and OpenSSL headers.
$(STAMP039): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV039)
	$(VENV039)/bin/python -m pip install --quiet --disable-pip-version-check \
		'python-qpid-proton==0.39.0' -e '.[test]'
	@touch $(STAMP039)

# Both without the benchmark harness's smoke run (a minute and a half of the benchmark's own
# peers and HA pairs, not of the engine's paths; it runs in the whole suite).
NOT_ENGINE := --deselect tests/test_hot_path.py::test_benchmark_harness_smoke_run

test-proton039: fetch $(STAMP039)
	$(VENV039)/bin/pytest -ra $(PYTEST_ARGS) $(ENGINE_TESTS) $(NOT_ENGINE)

# (also without the 1000-Client leak check, which takes minutes there: each Container builds
# its SSL domains eagerly; it runs on 0.39 and in the whole suite)
test-pure-proton: fetch
	PROTON_EASY_PURE_PROTON=1 $(VENV)/bin/pytest -ra $(PYTEST_ARGS) $(ENGINE_TESTS) $(NOT_ENGINE) \
		--deselect tests/test_send_receive.py::test_no_threads_or_sockets_left_behind

clean:
	rm -rf $(VENV) $(VENV039) .pytest_cache .ruff_cache *.egg-info
