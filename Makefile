# carepress: `make build` sets up a fresh machine and builds outputs/; `make test` runs the tests.
# Every set-up step is idempotent: it skips what is already there.
SHELL := /bin/bash
.DEFAULT_GOAL := build

# Debian's Python 3.11, built with profile-guided and link-time optimisation: carepress takes about
# a fifth less CPU under it than under a Python built without them (pyenv's 3.11.7 on this machine:
# a cold build of the 1,000 synthetic topics, 62.8 against 51.2 CPU-s; the same files).
PYTHON ?= /usr/bin/python3.11
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3.11 python3.11-venv chromium libharfbuzz-subset0 poppler-utils default-jre-headless
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

export PUPPETEER_SKIP_DOWNLOAD := 1
export PUPPETEER_EXECUTABLE_PATH := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: build test bench deps apt venv npm pyc schema clean

deps: apt venv npm pyc

# Debian packages: Python 3.11 and its venv module (see PYTHON), Chromium (axe-core, Ace, WebVTT
# checks), HarfBuzz subsetting (7x faster WeasyPrint), poppler (pdftoppm/pdftotext), Java
# (EPUBCheck, Nu HTML Checker).
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if command -v java >/dev/null 2>&1; then missing=$${missing/default-jre-headless/}; fi; \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "apt: all present"; fi

# A venv made with another Python than $(PYTHON) (an older checkout's) is made again.
venv:
	@if [ -f $(VENV)/pyvenv.cfg ] && ! grep -qx "executable = $$(readlink -f $(PYTHON))" $(VENV)/pyvenv.cfg; then \
	  echo "venv: made with another Python; making it again with $(PYTHON)"; rm -rf $(VENV); fi
	@$(MAKE) --no-print-directory $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e '.[test]' 2>&1 | grep -v -e "is ignored" -e "^ *$$" || true
	$(PY) -c "import pipeline, weasyprint, ebooklib, pypandoc, playwright, epubcheck"
	@touch $@

# Byte-compile the package (an editable install is not compiled, and PYTHONDONTWRITEBYTECODE
# may be set): every carepress process then starts about 40 ms sooner. Only changed files compile.
pyc: venv
	@$(PY) -m compileall -q pipeline

npm: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build: deps
	$(VENV)/bin/carepress build

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: deps
	$(VENV)/bin/carepress bench

schema: venv
	$(VENV)/bin/carepress schema

clean:
	rm -rf outputs/content.json outputs/dedupe-report.json outputs/pdf outputs/epub outputs/html outputs/captions outputs/bench
