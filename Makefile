# vhr: `make demo` and `make test` work on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-out

.PHONY: venv demo test test-fast test-real bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@bash scripts/make_venv.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[test,jax]'
	@touch $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh "$(DEMO_DIR)"

test: $(STAMP)
	@bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-real: $(STAMP)
	VHR_REAL=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m real

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info
