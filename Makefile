# The two commands of the README: `make demo` and `make test`. Both set up .venv first (make test also
# .venv-blender, .venv-blender-4.2 and, where a Python 3.13 is found, .venv-blender-5.2, for the add-on tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BLENDER_VENV ?= .venv-blender
BLENDER_BIN := $(BLENDER_VENV)/bin
# The oldest Blender the extension supports (4.2 LTS: Action.fcurves, SequenceEditor.sequences), tested too.
BLENDER_LTS_VENV ?= .venv-blender-4.2
BLENDER_LTS_BIN := $(BLENDER_LTS_VENV)/bin
# Blender 5.2 LTS, tested too: Blender 5.1+ runs Python 3.13, so its venv is made with a Python 3.13 — python3.13 on
# PATH, else pyenv's (`pyenv prefix 3.13`). Without one, make test says so in one line and skips only this leg.
BLENDER_52_VENV ?= .venv-blender-5.2
BLENDER_52_BIN := $(BLENDER_52_VENV)/bin
BLENDER_52_BPY ?= 5.2.4
PYTHON313 ?= $(shell for p in python3.13 "$$(pyenv prefix 3.13 2>/dev/null)/bin/python3.13"; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 && { command -v "$$p"; break; }; \
	done)
NO_PYTHON313 := no Python 3.13 found (python3.13 on PATH, or pyenv's): the Blender 5.2 LTS tests are skipped
DEMO_OUT ?= demo-output/demo.mp4

.PHONY: setup demo test test-blender-5.2 lint bench clean

setup: $(VENV)/.installed $(BLENDER_VENV)/.installed $(BLENDER_LTS_VENV)/.installed
	@if [ -n "$(PYTHON313)" ]; then $(MAKE) --no-print-directory $(BLENDER_52_VENV)/.installed; \
	else echo "$(NO_PYTHON313)"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ml,server,dev,ray]'
	touch $@

# Blender's Python for the add-on tests: the real bpy wheel (it needs numpy < 2, so its own venv), and
# the motion core the add-on bundles (installed without the model stack, as inside Blender).
$(BLENDER_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BLENDER_VENV)
	$(BLENDER_BIN)/python -m pip install --quiet --disable-pip-version-check "bpy==5.0.1" pytest "httpx>=0.27"
	$(BLENDER_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(BLENDER_LTS_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BLENDER_LTS_VENV)
	$(BLENDER_LTS_BIN)/python -m pip install --quiet --disable-pip-version-check "bpy==4.2.0" "numpy<2" pytest "httpx>=0.27"
	$(BLENDER_LTS_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(BLENDER_52_VENV)/.installed: pyproject.toml
	$(PYTHON313) -m venv $(BLENDER_52_VENV)
	$(BLENDER_52_BIN)/python -m pip install --quiet --disable-pip-version-check "bpy==$(BLENDER_52_BPY)" pytest "httpx>=0.27"
	$(BLENDER_52_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m mtvcrafter_server.demo --backend preview \
		--ref examples/human.png --motion examples/sampled_data.pkl --out $(DEMO_OUT)

lint: $(VENV)/.installed
	$(BIN)/ruff check mtvcrafter server blender_addon tests
	$(BIN)/ruff format --check mtvcrafter server blender_addon tests
	PYTHONPATH=blender_addon $(BIN)/lint-imports

test: lint $(BLENDER_VENV)/.installed $(BLENDER_LTS_VENV)/.installed
	$(BIN)/python -m pytest -q
	$(BLENDER_BIN)/python -m pytest -q -p no:cacheprovider tests/blender
	$(BLENDER_LTS_BIN)/python -m pytest -q -p no:cacheprovider tests/blender
	@$(MAKE) --no-print-directory test-blender-5.2

test-blender-5.2:
	@if [ -n "$(PYTHON313)" ]; then \
		$(MAKE) --no-print-directory $(BLENDER_52_VENV)/.installed && \
		$(BLENDER_52_BIN)/python -m pytest -q -p no:cacheprovider tests/blender; \
	else echo "$(NO_PYTHON313)"; fi

bench: setup
	$(BIN)/mtvcrafter bench motion

clean:
	rm -rf $(VENV) $(BLENDER_VENV) $(BLENDER_LTS_VENV) $(BLENDER_52_VENV) demo-output .pytest_cache
