# The two commands of the README:
#   make run    runs aegis on its embedded default (no database, webhook or Docker needed)
#   make test   installs everything and runs lint, types and the whole test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The tests run in two runs of pytest (see DEVELOPERS.md): every test but the serial ones
# on TEST_WORKERS pytest-xdist workers, each with a Docker engine and a PostgreSQL of its
# own; then the serial ones (real-time bounds, outages, fault injection) on
# SERIAL_WORKERS, with nothing else running. The serial run happens even when the first
# failed (not when it was interrupted: pytest's status 2); `make test` then exits with the
# status of the last run that failed, so any failure, "no tests ran" (5) included, fails it.
TEST_WORKERS ?= 6
SERIAL_WORKERS ?= 4

.PHONY: install run test lint typecheck unit bench docs images clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/aegis run

lint: install
	$(BIN)/ruff check aegis jobs tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

test: install
	bash tests/ensure_docker.sh
	bash tests/ensure_browser.sh
	bash tests/ensure_promtool.sh
	$(BIN)/ruff check aegis jobs tests bench
	$(BIN)/mypy
	$(BIN)/mkdocs build --strict --quiet --site-dir site
	status=0; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup -m "not serial" || status=$$?; \
	if [ $$status -eq 2 ]; then exit 2; fi; \
	$(BIN)/pytest -n $(SERIAL_WORKERS) --dist loadgroup -m serial || status=$$?; \
	exit $$status

images: install
	$(BIN)/python -m tests.images

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

bench: install
	bash tests/ensure_docker.sh
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
