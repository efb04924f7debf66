"""Reranked candidates on a GPU: the eager engine's sampling loop against the compiled engine's, same adapter.

For a workdir whose pipeline ran on this GPU (`gpu_pipeline.py`), the served method's adapter answers the
validation split's first `--n` messages one at a time (what one request to `serve` waits), prompts and references
as the evaluate stage builds them, with each engine (`evaluate.engine`) and the workdir's `evaluate.candidates`:
p50 / p95 ms after the engine's warm-up (compiled: one full-length reply per cache length the prompts need,
which compiles it, timed apart; `graph_compile_seconds`: what torch.compile spent on each graph the process
compiled), and ROUGE-L / semantic similarity of those replies against the references (the two loops draw different
candidates from the same distribution, so these differ by draws only).

    python benchmarks/gpu_pipeline.py --no-record --stages subset split rules index base train@qlora --workdir W
    python benchmarks/gpu_sampling.py          # the project's default params
    python benchmarks/gpu_sampling.py --workdir W        # a workdir's (gpu_pipeline.py --workdir W)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]
SETUP = ("on the GPU machine, first the stages subset, split, rules, index, base and train@{method} of the workdir's "
         "params (benchmarks/gpu_pipeline.py --stages ... --workdir W), whose trained adapter the command serves")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(ROOT))
    ap.add_argument("--n", type=int, default=64, help="messages answered one at a time")
    args = ap.parse_args()
    import pandas as pd
    import torch

    from supportagent.model import models
    from supportagent.inference.agent import prepare
    from supportagent.config import load_params
    from supportagent.inference.generation import load_system
    from supportagent.evaluation.metrics import score
    from supportagent.paths import pipeline_paths
    from supportagent.data.retrieval import ExampleIndex
    from supportagent.inference.serving import ready_to_serve

    work = Path(args.workdir)
    p = {k: work / v for k, v in pipeline_paths(ROOT / "dvc.yaml").items()}
    params = load_params(work / "params.yaml")
    val = pd.read_parquet(p["splits"] / "val.parquet").head(args.n)
    index = ExampleIndex(p["index"], pd.read_parquet(p["splits"] / "train.parquet"), models.embedder_id())
    embedder = models.load_embedder()
    examples, references = index.examples_and_references(embedder, val["customer"].tolist(), val["brand"].tolist(),
                                                         params.retrieval, params.evaluate.rerank_references)
    model, tok = load_system(params.method, str(p["base"]), str(p["adapters"] / params.method))
    prompts = [prepare(params, tok, r.brand, r.customer, r.context, ex)[0] for r, ex in zip(val.itertuples(), examples)]

    results = {}
    for engine in ("eager", "compiled"):
        ev = params.evaluate.model_copy(update={"engine": engine})
        gen = ready_to_serve(model, tok, ev, embedder, params.seed,  # folds QLoRA once; a second fold finds none
                             params.model.max_prompt_tokens)
        warm = gen.warm_up(prompts if engine == "compiled" else prompts[:1])
        times, replies = [], []
        for prompt, refs in zip(prompts, references):
            start = time.perf_counter()
            replies.append(gen.reply([prompt], [refs])[0].text)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000)
        quality, _ = score(replies, val["reply"].tolist(), val["customer"].tolist(), embedder)
        results[engine] = {"warm_up_seconds": round(warm, 1), "p50_ms": round(float(np.percentile(times, 50)), 1),
                           "p95_ms": round(float(np.percentile(times, 95)), 1), "rouge_l": quality["rouge_l"],
                           "semantic_similarity": quality["semantic_similarity"], "avg_words": quality["avg_words"]}
        if engine == "compiled":  # the eager engine compiles nothing: these are the compiled engine's graphs
            compiled = torch._dynamo.utils.compilation_time_metrics.get("_compile.compile_inner", [])
            results[engine]["graph_compile_seconds"] = [round(s, 1) for s in compiled]
        print(engine, results[engine], flush=True)
    record = {
        "notes": "the served method's adapter answers messages one at a time (what one request to `serve` waits), "
        "prompts and references as the evaluate stage builds them, its candidates sampled by each engine's loop",
        "command": "python benchmarks/gpu_sampling.py"
        + (" --workdir W" if work.resolve() != ROOT else "")
        + f" --n {args.n}",
        "method": params.method,
        "candidates": params.evaluate.candidates,
        "n": len(prompts),
        "results": results,
        "setup": SETUP.format(method=params.method),
        "machine": records.gpu_facts(),
        "versions": records.versions(),
    }
    records.save("gpu_sampling", record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
