"""`stackserve batch run`: an offline batch job on a local (or RAY_ADDRESS) Ray cluster, with a progress bar."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from serve.config import ConfigError, EmbeddingModelConfig, ModelConfig, StackConfig, load_config


def find_model(model_id: str, config: StackConfig | None) -> ModelConfig | EmbeddingModelConfig:
    """The config's entry for `model_id`, or a default one treating the id as a built-in name or checkpoint path."""
    for m in [*(config.models if config else []), *(config.embedding_models if config else [])]:
        if m.model_id == model_id:
            return m
    return ModelConfig(model_id=model_id, source=model_id)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stackserve batch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a batch file offline on Ray Data")
    run.add_argument("input", type=Path, help="OpenAI batch JSONL, or Parquet with a prompt column")
    run.add_argument("-o", "--output", type=Path, required=True, help="output file (OpenAI batch output JSONL)")
    run.add_argument("--errors", type=Path, default=None, help="error file (default: OUTPUT with .errors.jsonl)")
    run.add_argument("--model", required=True, help="model id: from --config, a built-in name or a checkpoint dir")
    run.add_argument("--config", default=None, help="stackserve config naming the model's engine and resources")
    run.add_argument("--endpoint", default=None, help="default: the lines' url; /v1/chat/completions for Parquet")
    run.add_argument("--prompt-column", default="prompt")
    run.add_argument("--max-tokens", type=int, default=None, help="max_tokens for Parquet prompts")
    run.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 2 x max_num_seqs)")
    run.add_argument("--lines-per-batch", type=int, default=4)
    run.add_argument("--num-actors", type=int, default=1, help="model copies (engine actors)")
    run.add_argument("--num-cpus", type=float, default=None,
                     help="CPUs Ray reserves per engine actor (default: the model's deployment.ray_actor_options)")
    run.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster (default: start one)")
    run.add_argument("--no-progress", action="store_true")
    return p


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="req", disable=not enabled, dynamic_ncols=True)

    def update(p) -> None:
        bar.n = p.completed + p.failed
        bar.set_postfix_str(f"ok={p.completed} failed={p.failed} {p.output_tokens / max(p.elapsed_s, 1e-6):.1f} tok/s",
                            refresh=False)
        bar.refresh()

    return bar, update


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.input.is_file():
        print(f"error: no such input file: {args.input}", file=sys.stderr)
        return 2
    model = find_model(args.model, config)
    cache = (config or StackConfig.model_construct()).resolved_model_cache_dir()
    errors = args.errors or args.output.with_name(args.output.name.removesuffix(".jsonl") + ".errors.jsonl")

    import ray

    from deployments.batches.offline import read_input, run_offline

    try:
        endpoint, parsed = read_input(args.input, model.model_id, args.endpoint, args.prompt_column, args.max_tokens)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ray.init(address=args.address, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    bar, update = _progress_bar(parsed.total, not args.no_progress)
    try:
        summary = run_offline(endpoint, parsed, args.output, errors, model, cache, concurrency=args.concurrency,
                              lines_per_batch=args.lines_per_batch, num_actors=args.num_actors,
                              num_cpus=args.num_cpus, on_progress=update)
    finally:
        bar.close()
        ray.shutdown()
    print(json.dumps({"input": str(args.input), **summary}, indent=2))
    return 0
