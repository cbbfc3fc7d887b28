# The two commands of the README:
#   make demo   set up, start the embedded PostgreSQL, migrate, load demo data, run the jobs
#               (and serve the REST API on port 8000; make demo PORT=8010 for another port)
#   make test   set up (with test dependencies) and run the whole test suite
# and the documentation site: make docs (generate the reference pages, build site/ offline, strict)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-pg-cron lint bench docs wheel clean stop

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/reco demo$(if $(PORT), --port $(PORT))

# headless Chromium for the console's browser tests (tests/test_console_browser.py): Debian's package,
# installed when running as root where apt-get exists; elsewhere a note, and those tests skip saying why.
# Marked done only once chromium is on PATH (else checked again on the next run; it never fails the build).
$(VENV)/.chromium:
	@if command -v chromium >/dev/null 2>&1; then \
	    echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "chromium: installing Debian's package (apt-get install chromium) for the console's browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
	    || echo "note: apt-get could not install chromium: the console's browser tests will be skipped"; \
	else \
	    echo "note: no chromium, and not root with apt-get: the console's browser tests will be skipped" \
	         "(install Debian's chromium package to run them)"; \
	fi
	@if command -v chromium >/dev/null 2>&1; then mkdir -p $(VENV) && touch $@; fi

# the suite in TEST_WORKERS parallel processes (pytest-xdist), each cloning its own databases from one
# migrated template on the one server; more workers than cores, since a test mostly waits on PostgreSQL
# (docs/testing.md has the measurements). make test TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 4
PARALLEL := -n $(TEST_WORKERS) --dist loadgroup

test: $(VENV)/.installed-test $(VENV)/.chromium
	$(BIN)/python -m pytest -q $(PARALLEL)

# the suite again on PostgreSQL 15 with pg_cron (Debian packages; root): the pg_cron tests run
test-pg-cron: $(VENV)/.installed-test
	url=$$(.ci/pg-cron-server start) && RECO_TEST_DATABASE_URL=$$url $(BIN)/python -m pytest -q $(PARALLEL)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check app jobs tests migrations docs/gen

# the documentation site in site/: the reference pages (SQL from a migrated database's COMMENTs: the
# embedded server in .reco/docs, started and stopped here, or RECO_DATABASE_URL; REST from the OpenAPI
# document; CLI; environment) are generated first, then mkdocs builds offline and fails on a broken
# link or anchor (not --quiet: it hides the warnings that --strict counts, and the build passes).
# Open site/index.html in a browser.
docs: $(VENV)/.installed-docs
	$(BIN)/python docs/gen/build.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "docs: site/index.html"

# the wheel in dist/ (sql/ and migrations/ inside: docs/operations.md, "Installing from a wheel"). build/ is
# removed first: setuptools ships whatever an earlier build left there (a file since deleted from sql/ too)
wheel: $(VENV)/.installed
	rm -rf build
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	rm -rf build
	@ls dist/pgreco-*.whl

bench: $(VENV)/.installed
	$(BIN)/reco bench ingest

stop:
	-$(BIN)/reco db stop

clean: stop
	rm -rf $(VENV) .reco site build dist
