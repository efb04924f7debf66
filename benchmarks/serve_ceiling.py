"""Where the server's gain from concurrent requests ends on this machine: the agent's work for one batch (what `serve`
runs per batch, HTTP aside: rules, retrieval, the candidates, the reranker, the guard) for one message and for 16
messages at once, and the share of it each phase takes: reading the prompts (prefill), decoding the candidates, the
likelihood term's read after each prompt (likelihood.after_prompt: one read per message, however many share a batch;
the past replies, and on an engine whose sampling keeps no log-probabilities the candidates too) and the reranker's
embeddings. 16 times the time of one message over the time of 16 together bounds what answering 16 concurrent
requests as one batch can gain over one at a time (benchmarks/serve_load.py measures the server itself); a phase
whose share grows with the batch is what bounds it.

    python benchmarks/serve_ceiling.py [--engine eager] [--messages 48]     # -> benchmarks/results/serve_ceiling/"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="eager", choices=["eager", "compiled", "vllm"])
    ap.add_argument("--messages", type=int, default=48, help="test messages; a multiple of 16")
    args = ap.parse_args()
    import pandas as pd

    from supportagent.inference import generation, likelihood, reranking
    from supportagent import paths
    from supportagent.reporting import records
    from supportagent.inference.agent import SupportAgent
    from supportagent.config import load_params

    p = {k: ROOT / v for k, v in paths.pipeline_paths(ROOT / "dvc.yaml").items()}
    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"engine": args.engine})})
    agent = SupportAgent(params, base_dir=p["base"], index_dir=p["index"], adapter_dir=p["adapters"] / params.method)
    test = pd.read_parquet(p["splits"] / "test.parquet").head(args.messages)
    items = [{"brand": r.brand, "text": r.customer, "context": r.context or ""} for r in test.itertuples()]
    phases = {"prefill": (generation, "shared_prefill"), "decode": (generation, "shared_decode"),
              "likelihood": (likelihood, "after_prompt"), "embeddings": (reranking, "similarities")}
    seconds_in = dict.fromkeys(phases, 0.0)

    def timed(name, call):
        def run(*a, **k):
            start = time.perf_counter()
            try:
                return call(*a, **k)
            finally:
                seconds_in[name] += time.perf_counter() - start
        return run

    for name, (module, attr) in phases.items():
        setattr(module, attr, timed(name, getattr(module, attr)))
    agent.reply_many(items[:1], batch_size=16)  # the first call's one-off costs
    result = {}
    for size in (1, 16):
        seconds = []
        seconds_in.update(dict.fromkeys(seconds_in, 0.0))
        for lo in range(0, len(items), size):
            start = time.perf_counter()
            agent.reply_many(items[lo:lo + size], batch_size=16)
            seconds.append(time.perf_counter() - start)
        total = sum(seconds)
        result[f"batch_{size}"] = {"batches": len(seconds), "p50_seconds": round(statistics.median(seconds), 2),
                                   "replies_per_s": round(len(items) / total, 3),
                                   **{f"{name}_share": round(s / total, 3) for name, s in seconds_in.items()}}
        print(size, result[f"batch_{size}"], flush=True)
    result["ceiling_speedup_16"] = round(result["batch_16"]["replies_per_s"] / result["batch_1"]["replies_per_s"], 2)
    record = {"notes": f"SupportAgent.reply_many on the test split's first {len(items)} messages, {params.method} "
                       f"served as in `serve` (evaluate.candidates {params.evaluate.candidates} reranked, the guard), "
                       "one message per batch against 16; <phase>_share: seconds in a phase over all seconds (prefill: "
                       "the candidates' shared prefill; decode: their sampling loop; likelihood: the texts read after "
                       "each prompt, the past replies and, where sampling keeps no log-probabilities, the candidates; "
                       "embeddings: the reranker's similarities)",
              "engine": args.engine, "machine": records.cpu_facts(), **result}
    records.save("serve_ceiling", record, label=args.engine)


if __name__ == "__main__":
    main()
