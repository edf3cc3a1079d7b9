#!/usr/bin/env bash
# make conformance: Llama Stack v0.2.12's integration suites against a fresh `stackserve run` of $CONFIG.
#   LLAMA_STACK_SRC=/path/to/llama-stack (a git checkout; tests/ of tag $LLAMA_STACK_TAG is extracted from it)
#   or LLAMA_STACK_TESTS=/dir/holding/tests/integration
# Writes benchmarks/results/conformance-llama-stack-$LLAMA_STACK_TAG.md (table, date, commit, each failure's cause).
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${LLAMA_STACK_TAG:-v0.2.12}
CONFIG=${CONFIG:-configs/local.yaml}
PORT=${CONF_PORT:-8329}
WORK=$(mktemp -d /tmp/stackserve-conformance.XXXXXX)

if [ -n "${LLAMA_STACK_TESTS:-}" ]; then
  ROOT=$LLAMA_STACK_TESTS
elif [ -n "${LLAMA_STACK_SRC:-}" ]; then
  ROOT=$WORK/llama-stack
  mkdir -p "$ROOT"
  git -C "$LLAMA_STACK_SRC" archive "$TAG" tests | tar -x -C "$ROOT"
else
  echo "Llama Stack's integration tests ship in no sdist or wheel: set LLAMA_STACK_SRC to a llama-stack git" >&2
  echo "checkout (git clone https://github.com/llamastack/llama-stack) or LLAMA_STACK_TESTS to a directory" >&2
  echo "holding tests/integration, e.g. make conformance LLAMA_STACK_SRC=~/src/llama-stack" >&2
  exit 2
fi
test -d "$ROOT/tests/integration" || { echo "no tests/integration under $ROOT" >&2; exit 2; }

# a private Ray and data directory: nothing of another graph on this machine is touched
export RAY_TMPDIR=$WORK/ray STACKSERVE_DATA_DIR=$WORK/data
mkdir -p "$RAY_TMPDIR"
.venv/bin/stackserve run --config "$CONFIG" --port "$PORT" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { tail -20 "$WORK/server.log"; exit 1; }
  sleep 1
done
echo "stackserve ($CONFIG) up on :$PORT; running Llama Stack $TAG suites from $ROOT (log: $WORK/server.log)"
.venv-conformance/bin/python benchmarks/conformance/run_suites.py --tests-root "$ROOT" \
  --base-url "http://127.0.0.1:$PORT" --config "$CONFIG" \
  --out "benchmarks/results/conformance-llama-stack-${TAG#v}.md"
