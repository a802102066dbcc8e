# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output/demo.mp4

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ml,server,dev]'
	touch $@

demo: setup
	$(BIN)/python -m mtvcrafter_server.demo --backend preview \
		--ref examples/human.png --motion examples/sampled_data.pkl --out $(DEMO_OUT)

lint: setup
	$(BIN)/ruff check mtvcrafter server tests
	$(BIN)/ruff format --check mtvcrafter server tests
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/mtvcrafter bench motion

clean:
	rm -rf $(VENV) demo-output .pytest_cache
