# mailtape: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
WORKDIR ?= demo-site
PYTEST_ARGS ?=

.PHONY: demo test bench scenarios venv venv-test debian-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

## The main job on an embedded default site, in a fresh work folder ($(WORKDIR)).
demo: venv
	rm -rf $(WORKDIR)
	$(VENV)/bin/mailtape demo --workdir $(WORKDIR)

## Debian packages the tests use (Dovecot, ndmjob, ...): installed when missing and we are root.
debian-deps:
	bash .ci/debian-deps

## Every test, with the bounded CI profile for hypothesis.
test: venv-test debian-deps
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -n 2 -m "not scenarios" $(PYTEST_ARGS)

## Speed and memory targets, as ratios against baselines measured in the same run.
bench: venv-test
	$(PY) -m benchmarks

## A long property-based scenario campaign across both cores.
scenarios: venv-test
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -n 2 -m scenarios tests/scenarios $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache .hypothesis bench.json
