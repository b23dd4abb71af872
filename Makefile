# One command to set up and run the main job, one to set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps run typecheck test test-e2e test-slow test-all bench clean

system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing FFmpeg (needed to read m4a/mp3 voices and write M4B)"; \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get install -y ffmpeg >/dev/null 2>&1 || { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y ffmpeg >/dev/null; }; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps 'resemblyzer>=0.1.4'  # its weights only (see pyproject.toml)
	touch $(STAMP)

setup: system-deps $(STAMP)

run: setup
	$(PY) -m pipeline.run $(ARGS)

# Test tiers (markers in pyproject.toml): plain `pytest` leaves out `e2e` and `slow` (its addopts);
# a later -m on the command line replaces that selection.
typecheck: setup
	$(VENV)/bin/pyright

test: typecheck
	$(PY) -m pytest -q $(ARGS)

test-e2e: setup
	$(PY) -m pytest -q -m e2e $(ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(ARGS)

test-all: typecheck
	$(PY) -m pytest -q -m "" $(ARGS)

bench: setup
	$(PY) bench/generate.py
	$(PY) bench/codec.py
	$(PY) bench/plan.py
	$(PY) bench/narrate.py
	$(PY) bench/finish.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
