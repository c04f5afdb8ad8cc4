# Every install step lives here: a fresh machine needs only python3, gcc and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

.PHONY: demo test test-slow bench lint clean twins

$(PY):
	$(PYTHON) -m venv $(VENV)

DEMO_STAMP := $(VENV)/.demo-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

$(STAMP): $(PY) pyproject.toml setup.py
	$(PIP) install --quiet -e '.[test,dev,data,train,mpi]'
	rm -f $(VENV)/.installed-*
	touch $@

# the demo needs only the data and train extras (no PyTorch, no test or dev tools)
$(DEMO_STAMP): $(PY) pyproject.toml setup.py
	$(PIP) install --quiet -e '.[data,train]'
	rm -f $(VENV)/.demo-*
	touch $@

demo: $(DEMO_STAMP)
	$(VENV)/bin/graphc demo

# tests/conftest.py points GRAPHC_CACHE_DIR at a throw-away directory (unless it is set), so the
# suite never fills the user's real compile cache
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q --doctest-modules graphc tests

# Exit code 5 means no slow test exists yet; that is not a failure.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests || [ $$? -eq 5 ]

bench: $(STAMP)
	$(VENV)/bin/graphc bench --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check graphc tests examples

# The bench's JAX 0.12 and PyTensor 3.3 twins need Python 3.12 (the main venv may be older): a
# venv of their own that `graphc bench` runs their child processes in when it exists
# (GRAPHC_BENCH_TWINS_PYTHON overrides the interpreter). `make test` never needs it.
TWINS_PYTHON ?= $(shell for p in $$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null) python3.12; do $$p -c "" 2>/dev/null && echo $$p && break; done)
TWINS := .venv-twins

twins: $(TWINS)/.installed

$(TWINS)/.installed: pyproject.toml setup.py
	@test -n "$(TWINS_PYTHON)" || { echo "make twins: no python3.12 found (set TWINS_PYTHON=...)"; exit 1; }
	$(TWINS_PYTHON) -m venv $(TWINS)
	$(TWINS)/bin/python -m pip install --quiet -e . jax==0.12.0.1 jaxlib==0.12.0.1 pytensor==3.3.8
	touch $@

clean:
	rm -rf $(VENV) .venv-twins build *.egg-info .pytest_cache .hypothesis
