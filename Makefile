# The two commands: `make demo` (the main job, end to end) and `make test` (the suite).
# Each installs what it needs first, idempotently: Debian packages that are missing, the
# Python venv (torch from the local CPU wheel first), and the pinned npm toolchain.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
STAMP_SYS := $(VENV)/.system-deps

.PHONY: demo test lint checks typecheck pytest deps clean-run mutation

# The venv (pip) and node_modules (npm ci) install side by side after the Debian packages.
MAKEFLAGS += --jobs=2

deps: $(STAMP_SYS) $(STAMP_PY) $(STAMP_NODE)

$(STAMP_SYS): deploy/install-system-deps.sh
	bash deploy/install-system-deps.sh
	@mkdir -p $(VENV) && touch $@

# pip compiles each package's byte-code itself, on one core, after unpacking it. Here torch's
# compiles on the other core while pip installs the rest, and the rest's on both cores after.
# (Byte-code is needed: with PYTHONDONTWRITEBYTECODE set, as on CI, every process would compile
# the modules it imports again.) The one file left out is a test helper of torch in Python 3.12
# syntax, which pip skips too.
NOT_311 := py312_intrinsics
$(STAMP_PY): pyproject.toml | $(STAMP_SYS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile torch==2.13.0
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	$(PY) -m compileall -q -x $(NOT_311) "$$site/torch" & torch_compile=$$!; \
	$(PY) -m pip install --quiet --no-compile -e '.[dev]' || { kill $$torch_compile; exit 1; }; \
	wait $$torch_compile && $(PY) -m compileall -q -j 0 -x $(NOT_311) "$$site"
	touch $@

$(STAMP_NODE): package.json package-lock.json | $(STAMP_SYS)
	npm ci --no-audit --no-fund
	touch $@

# `make demo ARGS=--serve` leaves the coordinator (portal) and the chain running at the end.
demo: deps
	$(PY) -m deploy demo $(ARGS)

# The checks that take seconds: style, the packages' import rules, compiled contracts up to date.
checks: deps
	$(VENV)/bin/ruff check .
	$(PY) -m tests.import_rules
	$(PY) -m contracts.build --check

# Type checking: one core for about 40 s on a cold cache.
typecheck: deps
	$(VENV)/bin/mypy contracts deploy benchmarks raw_data node coordinator tasks audit

lint: checks typecheck

# The suite's processes (services, CLIs, Flower's apps: hundreds of interpreters) keep the byte-code
# of this repository's modules, which PYTHONDONTWRITEBYTECODE (set on CI) would have each of them
# compile again; __pycache__ is ignored by git and left out of the apps Flower packs.
pytest: checks
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest

# The suite starts once the quick checks pass; mypy runs beside it on the core that would otherwise
# wait. A failure of either fails `make test` (make lets the other job finish first).
test: typecheck pytest

# Mutation testing of the trust-critical modules (a benchmark, not part of `make test`):
# writes benchmarks/results/mutation.json and the table in benchmarks/README.md.
mutation: deps
	$(PY) -m benchmarks.mutation

clean-run:
	rm -rf run
