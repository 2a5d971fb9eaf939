# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 7860

.PHONY: install run test test-slow eval bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# milvus: the test suite runs the core tests on a Milvus Lite store too.
	$(PY) -m pip install -q -e '.[test,milvus]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/assistant index --corpus corpus
	$(BIN)/assistant serve --corpus corpus --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -q -m "not slow and not bench"

test-slow: install
	$(PY) -m pytest -q -m "slow"

eval: install
	$(BIN)/assistant eval ../shared/eval/questions.jsonl --corpus ../shared/corpus --index .eval-index/dev

clean:
	rm -rf $(VENV) .eval-index .pytest_cache
