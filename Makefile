# Two commands from a fresh clone: `make run` serves the default model, `make test` runs the suite.
# Each creates .venv if there is none and installs what it needs from pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= models/model.npz
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bench lint train clean system-tools

# Real programs the tests drive, as command:Debian-package. Installed with apt-get when missing and
# run as root (as on CI and the team's machines); elsewhere the tests that need one skip, saying so.
SYSTEM_TOOLS := wrk:wrk promtool:prometheus chromium:chromium chromedriver:chromium-driver

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per extra: re-installs when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[$*]'
	touch $@

$(VENV)/.installed-serve: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(MODEL): | $(VENV)/.installed-train
	$(PY) -m training --out $(MODEL)

train: $(VENV)/.installed-train
	$(PY) -m training --out $(MODEL)

run: $(VENV)/.installed-train $(MODEL)
	@echo "model card: http://$(HOST):$(PORT)/  (API docs: http://$(HOST):$(PORT)/docs)"
	SENSOR_MODEL_PATH=$(MODEL) SENSOR_BIND=$(HOST):$(PORT) exec $(VENV)/bin/gunicorn -c gunicorn.conf.py service.wsgi:app

system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
	  command -v $${tool%%:*} >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (Debian packages the tests use)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	elif [ -n "$$missing" ]; then echo "not installed:$$missing (tests that need them skip)"; fi

test: $(VENV)/.installed-dev system-tools
	$(PY) -m pytest

bench: $(VENV)/.installed-dev
	$(PY) -m bench $(BENCH_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) models reports bench/results
