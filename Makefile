# The two commands of the README:
#   make demo   set up, start the embedded PostgreSQL, migrate, load demo data, run the jobs
#   make test   set up (with test dependencies) and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-pg-cron lint bench clean stop

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/reco demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# the suite again on PostgreSQL 15 with pg_cron (Debian packages; root): the pg_cron tests run
test-pg-cron: $(VENV)/.installed-test
	url=$$(.ci/pg-cron-server start) && RECO_TEST_DATABASE_URL=$$url $(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check app jobs tests migrations

bench: $(VENV)/.installed
	$(BIN)/reco bench ingest

stop:
	-$(BIN)/reco db stop

clean: stop
	rm -rf $(VENV) .reco
