"""GPU check for the meta-reference engine: a Llama-3.1-8B-shaped model with random bf16 weights on one GPU.

Needs only torch (and this repository). Runs the real engine (scheduler, paged KV cache, sampler) at batch 1 and
64 (128 prompt tokens, 128 output tokens) twice: eager decode, then decode replayed from CUDA graphs
(engine.cuda_graphs). Prints decode tokens/s next to the memory-bandwidth bound (bytes of weights read per decode
step / measured copy bandwidth), checks that the graphs' greedy tokens equal the eager ones, and saves the JSON
under benchmarks/results/. Each batch runs once untimed first (kernels, graph capture). A few minutes on an
H100/H200.

    python benchmarks/gpu_engine_check.py                      # -> results/gpu_engine_check_<gpu>_<date>.json
    python benchmarks/gpu_engine_check.py --tiny --device cpu  # a smoke run anywhere; "graphs" = padded buffers
                                                               # without capture (no CUDA graphs on CPU)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.inference.engine import EngineRequest  # noqa: E402
from deployments.inference.meta_reference.decode_runner import DecodeRunner  # noqa: E402
from deployments.inference.meta_reference.engine import MetaReferenceEngine, torch_thread  # noqa: E402
from deployments.inference.meta_reference.loader import build_model  # noqa: E402
from deployments.inference.meta_reference.model import LlamaArgs  # noqa: E402
from deployments.inference.sampling import SamplingParams  # noqa: E402

LLAMA_31_8B = LlamaArgs(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072,
    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192},
)
TINY = LlamaArgs(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, max_position_embeddings=2048)


@dataclass
class EngineArgs:
    """The engine's settings as plain attributes (the server builds the same from its pydantic config)."""

    device: str
    dtype: str = "bfloat16"
    max_num_seqs: int = 64
    max_model_len: int = 2048
    kv_cache_tokens: int = 64 * 512
    kv_block_size: int = 16
    max_prefill_tokens: int = 8192
    prefill_chunk_tokens: int | None = 512
    max_queued_requests: int = 1024
    num_threads: int | None = None
    enable_prefix_caching: bool = True
    cpu_packed_linear: bool = True
    cuda_graphs: bool | None = None
    type: str = "meta-reference"


def random_model(args: LlamaArgs, device: str, dtype: str):
    torch.manual_seed(0)
    model = build_model(args, device, dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    model.fuse_projections()
    return model


def copy_bandwidth(device: str, gib: float = 4.0) -> float:
    """Device memory bandwidth in bytes/s, from a large device-to-device copy (reads + writes)."""
    if not device.startswith("cuda"):
        return float("nan")
    n = int(gib * 2**30) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    torch.cuda.synchronize()
    t = time.perf_counter()
    reps = 10
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    secs = (time.perf_counter() - t) / reps
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 2 / secs


async def run_batch(engine: MetaReferenceEngine, batch: int, prompt_len: int, output_len: int, vocab: int) -> dict:
    gen = torch.Generator().manual_seed(batch)
    firsts: list[float] = []
    ends: list[float] = []

    prompts = [torch.randint(0, vocab, (prompt_len,), generator=gen).tolist() for _ in range(batch)]

    async def one(i: int) -> list[int]:
        params = SamplingParams(max_tokens=output_len, temperature=0.0, ignore_eos=True)
        toks: list[int] = []
        async for out in engine.generate(EngineRequest(str(i), prompts[i], params)):
            if not toks:
                firsts.append(time.perf_counter())
            toks += [t.token_id for t in out.tokens]
        ends.append(time.perf_counter())
        return toks

    t0 = time.perf_counter()
    tokens = await asyncio.gather(*[one(i) for i in range(batch)])
    decode_secs = max(ends) - max(firsts)
    decode_tokens = sum(len(t) - 1 for t in tokens)
    return {"batch": batch, "prompt_len": prompt_len, "output_len": output_len,
            "ttft_s_max": max(firsts) - t0, "decode_s": decode_secs,
            "decode_tok_s": decode_tokens / decode_secs, "total_s": max(ends) - t0,
            "steps_per_s": (output_len - 1) / decode_secs, "tokens": list(tokens)}


async def profile_decode(engine: MetaReferenceEngine, executor, device: str, batch: int, steps: int = 8) -> str:
    """A torch profile of decode steps. The profiler records the thread that starts it, so it starts and stops on
    the engine's torch thread (`executor`, where each step's model work runs)."""
    from torch.profiler import ProfilerActivity, profile

    from deployments.inference.meta_reference.scheduler import Sequence

    seqs = []
    for i in range(batch):
        params = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True)
        seqs.append(Sequence(EngineRequest(f"profile-{i}", list(range(1, 129)), params), params.make_generator()))
    engine.scheduler.waiting.extend(seqs)
    await engine.step()  # prefill
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    prof = profile(activities=acts)
    executor.submit(prof.__enter__).result()
    t = time.perf_counter()
    for _ in range(steps):
        await engine.step()
    per_step = (time.perf_counter() - t) / steps
    executor.submit(prof.__exit__, None, None, None).result()
    for seq in seqs:
        engine.scheduler.finish(seq)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
    return f"profiled decode step: {per_step * 1000:.2f} ms\n{table}"


async def measure(engine: MetaReferenceEngine, a: argparse.Namespace, vocab: int, bound_steps: float,
                  label: str) -> list[dict]:
    """Each batch size once untimed (kernel choice, graph capture at its shapes), then timed."""
    runs = []
    for b in a.batches:
        await run_batch(engine, b, a.prompt_len, a.output_len, vocab)
        r = await run_batch(engine, b, a.prompt_len, a.output_len, vocab)
        r["bound_tok_s"] = b * bound_steps
        r["fraction_of_bound"] = r["decode_tok_s"] / r["bound_tok_s"]
        runs.append(r)
        print(f"{label:6s} batch {b:3d}: decode {r['decode_tok_s']:9.1f} tok/s ({r['steps_per_s']:.1f} steps/s), "
              f"bandwidth bound {r['bound_tok_s']:9.1f} tok/s -> {100 * r['fraction_of_bound']:.1f}%, "
              f"TTFT(max) {r['ttft_s_max'] * 1000:.0f} ms", flush=True)
    return runs


def same_tokens(eager: list[dict], graphs: list[dict]) -> list[dict]:
    """Per batch: whether the graphs' greedy tokens equal the eager ones, and the first position they part."""
    out = []
    for e, g in zip(eager, graphs, strict=True):
        pairs = list(zip(e.pop("tokens"), g.pop("tokens"), strict=True))
        firsts = [next((i for i, (x, y) in enumerate(zip(te, tg, strict=True)) if x != y), None) for te, tg in pairs]
        out.append({"batch": e["batch"], "equal": all(f is None for f in firsts),
                    "rows_equal": sum(f is None for f in firsts), "rows": len(pairs),
                    "first_divergence": min((f for f in firsts if f is not None), default=None)})
    return out


async def main_async(a: argparse.Namespace) -> dict:
    shape = TINY if a.tiny else LLAMA_31_8B
    cuda = a.device.startswith("cuda")
    sizing = {"device": a.device, "dtype": a.dtype, "max_num_seqs": max(a.batches),
              "kv_cache_tokens": max(a.batches) * (a.prompt_len + a.output_len + 32)}
    t = time.perf_counter()
    executor = torch_thread(None, "engine-torch")
    model = executor.submit(random_model, shape, a.device, a.dtype).result()
    build_s = time.perf_counter() - t
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = copy_bandwidth(a.device)
    bound_steps = bandwidth / weight_bytes
    modes = {}
    for label, graphs in (("eager", False), ("graphs", True)):
        cfg = EngineArgs(**sizing, cuda_graphs=graphs)
        engine = MetaReferenceEngine(model, cfg, eos_token_ids=[], executor=executor)
        if graphs and not cuda:  # no CUDA graphs on CPU: the same padded buffers and buckets, run eagerly
            engine.decoder = DecodeRunner(model, engine.cache, cfg.max_num_seqs, engine.max_model_len,
                                          engine.device, pad=True)
        await run_batch(engine, 2, 16, 8, shape.vocab_size)  # warm-up: kernels, allocator
        modes[label] = {"runs": await measure(engine, a, shape.vocab_size, bound_steps, label),
                        "graphs_captured": engine.decoder.num_captured, "stats": vars(engine.stats())}
        if a.profile and label == "graphs":
            print(await profile_decode(engine, executor, a.device, a.profile), flush=True)
        engine._loop_task.cancel()  # the next engine shares the torch thread; this one is done
        del engine
        if cuda:
            torch.cuda.empty_cache()
    equal = same_tokens(modes["eager"]["runs"], modes["graphs"]["runs"])
    for e in equal:
        print(f"batch {e['batch']:3d}: graphs' greedy tokens equal eager: {e['equal']} "
              f"({e['rows_equal']}/{e['rows']} rows; first divergence at {e['first_divergence']})", flush=True)
    gpu = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    return {"model_shape": "tiny" if a.tiny else "llama-3.1-8b", "params_b": weight_bytes / 2 / 1e9,
            "weight_bytes": weight_bytes, "copy_bandwidth_gbs": bandwidth / 1e9, "build_s": build_s,
            "device": gpu, "torch": torch.__version__, "engine": sizing, "date": time.strftime("%Y-%m-%d %H:%M"),
            "bound_note": "bound = batch * copy bandwidth / weight bytes (weights read once per step; KV reads "
                          "not counted)", "eager": modes["eager"], "graphs": modes["graphs"],
            "graphs_equal_eager": equal,
            "graphs_speedup": {str(e["batch"]): g["decode_tok_s"] / e["decode_tok_s"]
                               for e, g in zip(modes["eager"]["runs"], modes["graphs"]["runs"], strict=True)}}


def default_out(device: str) -> Path:
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    return Path(__file__).resolve().parent / "results" / f"gpu_engine_check_{slug}_{time.strftime('%Y-%m-%d')}.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--tiny", action="store_true", help="a tiny model shape for a smoke run")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default on CUDA: benchmarks/results/gpu_engine_check_<gpu>_<date>.json)")
    p.add_argument("--profile", type=int, default=0, metavar="BATCH",
                   help="print a torch profile of decode steps at this batch size")
    a = p.parse_args()
    result = asyncio.run(main_async(a))
    text = json.dumps(result, indent=2, default=str)
    print(text)
    out = a.out or (default_out(a.device) if a.device.startswith("cuda") else None)
    if out:
        out.write_text(text)
        print(f"saved {out}")


if __name__ == "__main__":
    main()
