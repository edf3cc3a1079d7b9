#!/usr/bin/env bash
# Two checkouts of stackserve, one box, one run: the ingress microbenchmark and the engine comparison (stackserve on
# meta-reference and on vLLM, chat 128/128 streamed, c=1/8/32) of each, interleaved, with the same venvs.
#
#   git worktree add /tmp/before <commit>
#   bash benchmarks/before_after.sh /tmp/before . /tmp/before-after
#
# Each tree runs its own benchmarks/ scripts and its own code (PYTHONPATH and cwd = the tree); the venvs are this
# checkout's .venv and .venv-vllm. Results: OUT/{ingress,compare}-{before,after}/ (JSON, Markdown, server logs).
set -euo pipefail
BEFORE=$(realpath "$1"); AFTER=$(realpath "$2"); OUT=$(realpath -m "${3:-/tmp/before-after}")
HERE=$(realpath "$(dirname "$0")/..")
PY=$HERE/.venv/bin/python; VLLM_PY=$HERE/.venv-vllm/bin/python
DURATION=${DURATION:-30}
mkdir -p "$OUT"

run() {  # run NAME TREE COMMAND...
  local name=$1 tree=$2; shift 2
  echo "== $name ($(git -C "$tree" rev-parse --short HEAD)) $(date -u +%H:%M:%S)"
  (cd "$tree" && PYTHONPATH=$tree "$@")
}

for side in before after; do
  tree=$BEFORE; [ $side = after ] && tree=$AFTER
  run "ingress-$side" "$tree" "$PY" benchmarks/ingress_overhead.py --duration 5 --out-dir "$OUT/ingress-$side"
done
for side in before after; do
  tree=$BEFORE; [ $side = after ] && tree=$AFTER
  run "compare-$side" "$tree" "$PY" benchmarks/compare.py --targets stackserve,stackserve-vllm \
    --baseline stackserve --vllm-python "$VLLM_PY" --workload fixed:128:128 --concurrency 1,8,32 \
    --duration "$DURATION" --warmup 2 --no-ingress --no-progress --max-total-time 1500 --out-dir "$OUT/compare-$side"
done
echo "== done $(date -u +%H:%M:%S): $OUT"
