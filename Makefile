# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= results/demo

.PHONY: demo test test-slow lint bench docs clean

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cli]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.stamp-docs: pyproject.toml $(VENV)/.stamp-base
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $@

# The documentation site in site/; runs every example in examples/ at full size.
docs: $(VENV)/.stamp-docs
	$(VENV)/bin/mkdocs build --strict

demo: $(VENV)/.stamp-base
	$(VENV)/bin/jacscope train-jacobian --out $(OUT)

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check src tests benchmarks examples

# --dist loadscope: each test module runs on one worker, so a module's fixtures (a
# training run, a finished command-line job) are computed once, not once per worker.
test: lint
	$(PY) -m pytest -q -n 2 --dist loadscope

test-slow: $(VENV)/.stamp-test
	$(PY) -m pytest -q -n 2 --dist loadscope -m slow

bench: $(VENV)/.stamp-base
	$(PY) benchmarks/operators.py

clean:
	rm -rf $(VENV) results .pytest_cache
