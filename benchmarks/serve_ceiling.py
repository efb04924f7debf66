"""Where the server's gain from concurrent requests ends on this machine: the agent's work for one batch (what
`serve` runs per batch, HTTP aside: rules, retrieval, the candidates, the reranker, the guard) for one message and
for 16 messages at once, and the share of it spent reading the prompts (prefill). 16 times the time of one message
over the time of 16 together bounds what answering 16 concurrent requests as one batch can gain over one at a time
(benchmarks/serve_load.py measures the server itself).

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

    from supportagent.inference import generation
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
    prefill = [0.0]
    read_prompts = generation.shared_prefill

    def timed_prefill(*a, **k):
        start = time.perf_counter()
        out = read_prompts(*a, **k)
        prefill[0] += time.perf_counter() - start
        return out

    generation.shared_prefill = timed_prefill
    agent.reply_many(items[:1], batch_size=16)  # the first call's one-off costs
    result = {}
    for size in (1, 16):
        prefill[0], seconds = 0.0, []
        for lo in range(0, len(items), size):
            start = time.perf_counter()
            agent.reply_many(items[lo:lo + size], batch_size=16)
            seconds.append(time.perf_counter() - start)
        result[f"batch_{size}"] = {"batches": len(seconds), "p50_seconds": round(statistics.median(seconds), 2),
                                   "replies_per_s": round(len(items) / sum(seconds), 3),
                                   "prefill_share": round(prefill[0] / sum(seconds), 3)}
        print(size, result[f"batch_{size}"], flush=True)
    result["ceiling_speedup_16"] = round(result["batch_16"]["replies_per_s"] / result["batch_1"]["replies_per_s"], 2)
    record = {"notes": f"SupportAgent.reply_many on the test split's first {len(items)} messages, {params.method} "
                       f"served as in `serve` (evaluate.candidates {params.evaluate.candidates} reranked, the guard), "
                       "one message per batch against 16; prefill_share: seconds in the candidates' shared prefill "
                       "over all seconds", "engine": args.engine, "machine": records.cpu_facts(), **result}
    records.save("serve_ceiling", record, label=args.engine)


if __name__ == "__main__":
    main()
