# Two commands from a fresh clone: `make run` serves the default model, `make test` runs the suite.
# Each creates .venv if there is none and installs what it needs from pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= models/model.npz
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bench lint train clean

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
	SENSOR_MODEL_PATH=$(MODEL) SENSOR_BIND=$(HOST):$(PORT) exec $(VENV)/bin/gunicorn -c gunicorn.conf.py service.wsgi:app

# Debian's prometheus package gives the tests promtool and a real Prometheus. Installed when running
# as root with apt-get; otherwise those tests skip and say why. Re-checked while the binary is missing.
$(VENV)/.installed-prometheus: | $(PY)
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	else echo "prometheus/promtool missing and not installable here: their tests will be skipped"; fi
	@if command -v promtool >/dev/null; then touch $@; fi

test: $(VENV)/.installed-dev $(VENV)/.installed-prometheus
	$(PY) -m pytest

bench: $(VENV)/.installed-dev
	$(PY) -m bench $(BENCH_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) models reports bench/results
