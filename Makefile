# The two commands of the README: `make demo` and `make test`. Both set up .venv first (make test also
# .venv-blender, for the add-on tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BLENDER_VENV ?= .venv-blender
BLENDER_BIN := $(BLENDER_VENV)/bin
# The oldest Blender the extension supports (4.2 LTS: Action.fcurves, SequenceEditor.sequences), tested too.
BLENDER_LTS_VENV ?= .venv-blender-4.2
BLENDER_LTS_BIN := $(BLENDER_LTS_VENV)/bin
DEMO_OUT ?= demo-output/demo.mp4

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed $(BLENDER_VENV)/.installed $(BLENDER_LTS_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ml,server,dev]'
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

bench: setup
	$(BIN)/mtvcrafter bench motion

clean:
	rm -rf $(VENV) $(BLENDER_VENV) $(BLENDER_LTS_VENV) demo-output .pytest_cache
