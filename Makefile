# hostapp — the two quick-start commands (`make demo`, `make test`), the static checks
# (`make check`) and the benchmarks.
# Every target builds and uses a local virtual environment from this project's own files.
PYTHON ?= python3
BENCH_ARGS ?=
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,demo]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hostapp run examples/outbound_http.py
	$(BIN)/hostapp events --last
	@run=$$($(BIN)/hostapp runs --jsonl --limit 1 | $(BIN)/python -c "import json, sys; print(json.loads(sys.stdin.readline())['id'])"); \
	echo; echo "See this run in the web view (http://127.0.0.1:8765/runs/$$run):"; \
	echo "    $(BIN)/hostapp serve --open $$run"

test: $(STAMP)
	$(BIN)/python -m pytest

# Static checks, run once by CI (not per Python version): the layer contracts in
# pyproject.toml ([tool.importlinter]: imports go down the layers, no import cycles).
check: $(STAMP)
	@echo "== lint-imports: layer and no-cycle contracts of src/hostapp and src/hostapp_plugins"
	$(BIN)/lint-imports --no-cache

# `make bench BENCH_ARGS="--only peers --quick"` runs one suite as a smoke run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache
