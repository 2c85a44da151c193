# vhr: `make demo` and `make test` work on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-out
# Fontsource handwriting faces (npm pack, pinned in vhrdata/synth/fontsource.py), merged per face; not committed.
FONTS_CACHE ?= $(HOME)/.cache/vhr/fonts

.PHONY: venv demo test test-real bench clean fonts

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@bash scripts/make_venv.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[train,test,jax,export,serve,lite,browser]'
	@touch $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh "$(DEMO_DIR)"

test: $(STAMP)
	@bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2

# The tests that use ../shared/data/cinnamon-0916 (they also run in `make test` when it is present).
test-real: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m real

# Speed measurements; each prints JSON with ratios measured in one run.
bench: $(STAMP)
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/synth.py
	$(BIN)/python benchmarks/augment.py
	$(BIN)/python benchmarks/model_throughput.py

# Fetch and merge the handwriting fonts into $(FONTS_CACHE)/ttf (synth falls back to system fonts without them).
fonts: $(STAMP)
	$(BIN)/python scripts/fetch_fonts.py --cache "$(FONTS_CACHE)"

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info
