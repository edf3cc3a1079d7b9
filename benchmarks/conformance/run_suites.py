"""Run Llama Stack's own integration suites (tests/integration of a llama-stack checkout) against a running stackserve.

    python benchmarks/conformance/run_suites.py --tests-root DIR --base-url http://127.0.0.1:8321 [--out FILE.md]

DIR holds `tests/integration/` (a llama-stack checkout at tag v0.2.12, or what `make conformance` extracts from one).
Each suite runs in its own pytest process (the python running this script: the conformance venv with
llama-stack==0.2.12), and the script prints one line per suite and the totals; `--out` also writes them as a
Markdown table with every failed test's first error line. Not part of `make test`: it takes tens of minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

# The suites the conformance figure counts (issue 15), as directories of tests/integration.
SUITES = ["inference", "vector_io", "datasets", "tools", "agents", "safety", "tool_runtime", "files", "inspect",
          "providers"]
COUNTS = ("passed", "failed", "skipped", "xfailed", "xpassed", "errors")


def run_suite(root: Path, suite: str, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".xml", delete=False) as f:
        junit = f.name
    cmd = [sys.executable, "-m", "pytest", f"tests/integration/{suite}", "-q", "-p", "no:cacheprovider",
           f"--stack-config={args.base_url}", f"--text-model={args.text_model}",
           f"--embedding-model={args.embedding_model}", f"--embedding-dimension={args.embedding_dimension}",
           f"--junitxml={junit}", f"--timeout={args.timeout}"]
    if args.safety_shield:
        cmd.append(f"--safety-shield={args.safety_shield}")
    env = {**os.environ, "LLAMA_STACK_CONFIG": args.base_url}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    return parse_junit(junit, suite, proc)


def parse_junit(path: str, suite: str, proc: subprocess.CompletedProcess) -> dict:
    result = {"suite": suite, **{k: 0 for k in COUNTS}, "failures": []}
    try:
        tree = ET.parse(path)
    except (ET.ParseError, FileNotFoundError):
        result["errors"] = 1
        result["failures"].append((suite, (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]))
        return result
    for case in tree.iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        kinds = {child.tag: child for child in case}
        if "failure" in kinds or "error" in kinds:
            node = kinds.get("failure", kinds.get("error"))
            key = "failed" if "failure" in kinds else "errors"
            result[key] += 1
            result["failures"].append((name, (node.get("message") or node.text or "").strip().splitlines()[:1]))
        elif "skipped" in kinds:
            kind = "xfailed" if kinds["skipped"].get("type") == "pytest.xfail" else "skipped"
            result[kind] += 1
        else:
            result["passed"] += 1
    os.unlink(path)
    return result


def line(r: dict) -> str:
    return f"{r['suite']:<14}" + "  ".join(f"{r[k]:>3} {k}" for k in COUNTS if k != "xpassed")


def markdown(results: list[dict], totals: dict, args: argparse.Namespace) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    head = [f"# Llama Stack v0.2.12 integration suites against stackserve ({args.config})", "",
            f"Date {datetime.date.today()}, commit {commit}, {platform.node()} ({os.cpu_count()} CPUs), "
            f"text model {args.text_model}, embedding model {args.embedding_model}.", "",
            "Command: `make conformance` (benchmarks/conformance/run_suites.py).", "",
            "| suite | " + " | ".join(k for k in COUNTS if k != "xpassed") + " |",
            "|---|" + "---|" * (len(COUNTS) - 1)]
    rows = [f"| {r['suite']} | " + " | ".join(str(r[k]) for k in COUNTS if k != "xpassed") + " |"
            for r in [*results, totals]]
    fails = ["", "## Failures", ""] + [f"- `{r['suite']}/{name}`: {' '.join(msg)[:300]}"
                                       for r in results for name, msg in r["failures"]]
    return "\n".join(head + rows + fails) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tests-root", required=True, type=Path, help="directory holding tests/integration")
    ap.add_argument("--base-url", default="http://127.0.0.1:8321")
    ap.add_argument("--text-model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--embedding-dimension", type=int, default=384)
    ap.add_argument("--safety-shield", default="llama-guard")
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test")
    ap.add_argument("--config", default="configs/local.yaml", help="the config the server runs (for the report)")
    ap.add_argument("--out", type=Path, help="also write the table and failures as Markdown here")
    args = ap.parse_args()
    results = []
    for suite in args.suites.split(","):
        r = run_suite(args.tests_root, suite, args)
        print(line(r), flush=True)
        results.append(r)
    totals = {"suite": "total", **{k: sum(r[k] for r in results) for k in COUNTS}, "failures": []}
    print(line(totals))
    if args.out:
        args.out.write_text(markdown(results, totals, args))
    return 0  # a report: failures are listed with their causes, not a verdict on the run


if __name__ == "__main__":
    sys.exit(main())
