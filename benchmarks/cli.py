"""`stackserve bench [run flags] | compare | ingress | plot DIR`: the benchmark commands behind one entry point.

    stackserve bench --base-url URL ...      the load generator (benchmarks/bench.py)
    stackserve bench compare ...             vLLM vs stackserve vs Ray Serve LLM on this machine (benchmarks/compare.py)
    stackserve bench ingress ...             ingress overhead: full graph vs plain uvicorn vs DeploymentHandle
    stackserve bench plot DIR                redraw the plots of a results directory
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command == "compare":
        from benchmarks import compare

        return compare.main(argv[1:])
    if command == "ingress":
        from benchmarks import ingress_overhead

        return ingress_overhead.main(argv[1:])
    if command == "plot":
        from benchmarks import report

        if len(argv) != 2 or not (Path(argv[1]) / "runs.json").is_file():
            print("usage: stackserve bench plot RESULTS_DIR  (a directory holding a runs.json)", file=sys.stderr)
            return 2
        print("wrote " + ", ".join(str(p) for p in report.plot(Path(argv[1]))))
        return 0
    if command in ("-h", "--help") and len(argv) == 1:
        print(__doc__)
    from benchmarks import bench

    return bench.main(argv[1:] if command == "run" else argv)
