# carepress: `make build` sets up a fresh machine and builds outputs/; `make test` runs the tests.
# Every set-up step is idempotent: it skips what is already there.
SHELL := /bin/bash
.DEFAULT_GOAL := build

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := chromium libharfbuzz-subset0 poppler-utils default-jre-headless
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

export PUPPETEER_SKIP_DOWNLOAD := 1
export PUPPETEER_EXECUTABLE_PATH := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: build test bench deps apt venv npm pyc schema clean

deps: apt venv npm pyc

# Debian packages: Chromium (axe-core, Ace, WebVTT checks), HarfBuzz subsetting (7x faster
# WeasyPrint), poppler (pdftoppm/pdftotext), Java (EPUBCheck, Nu HTML Checker).
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

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
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
