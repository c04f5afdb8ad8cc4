# Every install step lives here: a fresh machine needs only python3, gcc and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

.PHONY: demo test test-slow bench lint clean

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

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
