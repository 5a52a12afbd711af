# kmeweb: `make run` serves the console with a worker and the KME simulator;
# `make test` runs the whole suite on SQLite and PostgreSQL with real Redis and Chromium.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench vendor clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	@bash scripts/run.sh

test: $(STAMP)
	@bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(VENV)/bin/python $$f; done

# Refresh htmx, Bootstrap and Bootstrap Icons in static/vendor/ from the npm registry.
vendor:
	@bash scripts/vendor.sh

clean:
	rm -rf $(VENV) .run .pytest_cache
