"""`stackserve` command line: run a config locally in the foreground, or deploy it to a running Ray cluster."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from serve.config import ConfigError, load_config

DEFAULT_CONFIG = "configs/local.yaml"


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.port is not None:
        cfg.server.port = args.port
    if args.host is not None:
        cfg.server.host = args.host
    import ray
    from ray import serve

    from serve.graph import build_graph

    t0 = time.time()
    port = cfg.telemetry.metrics_export_port  # a local Ray's Prometheus endpoint; a cluster sets its own
    metrics = {"_metrics_export_port": port} if port and args.address is None else {}
    ray.init(address=args.address, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}, **metrics)
    serve.start(http_options={"host": cfg.server.host, "port": cfg.server.port})
    serve.run(build_graph(cfg), name="stackserve", route_prefix="/")
    url = f"http://{cfg.server.host}:{cfg.server.port}"
    print(f"stackserve ready at {url} (OpenAI base_url {url}/v1) in {time.time() - t0:.1f}s. Ctrl-C stops it.",
          flush=True)
    if args.address is not None:
        return 0  # deployed onto an existing cluster: it keeps running there

    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    # Explicit handlers: a shell that starts us in the background ignores SIGINT, and Ctrl-C must still stop us.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.5)
    print("stopping stackserve ...", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stackserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a local Ray and serve a config in the foreground")
    run.add_argument("--config", default=os.environ.get("STACKSERVE_CONFIG", DEFAULT_CONFIG))
    run.add_argument("--port", type=int, default=None)
    run.add_argument("--host", default=None)
    run.add_argument("--address", default=None, help=argparse.SUPPRESS)
    deploy = sub.add_parser("deploy", help="deploy a config onto a running Ray cluster (ray up cluster.yaml)")
    deploy.add_argument("--config", required=True)
    deploy.add_argument("--address", default="auto")
    deploy.add_argument("--port", type=int, default=None)
    deploy.add_argument("--host", default=None)
    check = sub.add_parser("check-config", help="validate a config file and print it resolved")
    check.add_argument("config")
    sub.add_parser("bench", add_help=False, help="benchmarks: load generator, compare, ingress (bench --help)")
    sub.add_parser("batch", add_help=False, help="offline batch jobs on Ray Data (batch run --help)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from benchmarks.cli import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["batch"]:
        from serve.batch_cli import main as batch_main

        return batch_main(argv[1:])
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            print(load_config(args.config).model_dump_json(indent=2))
            return 0
        return _run(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
