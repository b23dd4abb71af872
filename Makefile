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
	touch $(STAMP)

setup: system-deps $(STAMP)

run: setup
	$(PY) -m pipeline.run $(ARGS)

# Test tiers (markers in pyproject.toml): plain `pytest` leaves out `e2e` and `slow` and runs on every
# core (its addopts); a later -m or -n replaces that. The slower tiers run one test at a time: their
# tests start Ray, clusters and the real command themselves.
typecheck: setup
	$(VENV)/bin/pyright -p pyproject.toml  # this project's config, never a pyrightconfig.json from a folder above

test: typecheck
	$(PY) -m pytest -q $(ARGS)

test-e2e: setup
	$(PY) -m pytest -q -n 0 -m "e2e and not slow" $(ARGS)

test-slow: setup
	$(PY) -m pytest -q -n 0 -m slow $(ARGS)

test-all: test test-e2e test-slow

bench: setup
	$(PY) bench/generate.py
	$(PY) bench/codec.py
	$(PY) bench/plan.py
	$(PY) bench/narrate.py
	$(PY) bench/finish.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
