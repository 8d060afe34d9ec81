# audiossl — the two commands the README promises.
#   make demo   set up .venv and run the main job on the embedded demo corpus
#   make test   set up .venv and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: install demo test test-all bench clean

install:
	@bash tools/install.sh

demo: install
	@bash egs/demo/run.sh --out $(DEMO_OUT)

test: install
	@$(PY) -m pytest -q -m "not gpu" $(PYTEST_ARGS)

bench: install
	@$(PY) tools/bench/kmeans.py --quick

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
